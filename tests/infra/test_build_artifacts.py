"""Issue 7 item 2: built artifacts come into the stack as props; synth imports no local-stack code,
downloads nothing, and every Lambda package holds what its handler imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.artifacts import BuildArtifacts

REPO = Path(__file__).resolve().parents[2]


def test_synth_imports_no_local_stack_code(infra_assets, tmp_path):
    """infra/ must not depend on hybridstream.servers (the dependency points the other way)."""
    script = f"""
import json, sys
from infra.app_builder import build_app
app, _ = build_app({{"promote": True, "batch_model_dir": {str(infra_assets["batch_model"])!r},
                    "kafka_libs_dir": {str(infra_assets["kafka_libs"])!r}}}, outdir={str(tmp_path / "out")!r})
app.synth()
print(json.dumps(sorted(m for m in sys.modules if m.startswith("hybridstream"))))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_DEFAULT_"))}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m.startswith("hybridstream.servers")], loaded


def test_missing_broker_jars_stop_synth_without_a_download(infra_assets, tmp_path):
    artifacts = BuildArtifacts(
        source_root=REPO,
        lambdas_dir=REPO / "lambdas",
        batch_model_dir=infra_assets["batch_model"],
        kafka_libs_dir=tmp_path / "no-jars",
    )
    with pytest.raises(FileNotFoundError, match="run `make setup`"):
        artifacts.check()
    assert not (tmp_path / "no-jars").exists()  # nothing was fetched into it


def test_every_lambda_package_holds_the_contract_and_shared_module(built):
    for mode, b in built.items():
        functions = b.resources("AWS::Lambda::Function").values()
        ours = [f for f in functions if f["Properties"].get("Handler") == "handler.handler"]
        assert len(ours) >= 4, mode  # model_published, ingest, the hook, the policy detacher (+ cloud_inference)
        for fn in ours:
            folder = b.outdir / f"asset.{fn['Properties']['Code']['S3Key'].removesuffix('.zip')}"
            assert (folder / "handler.py").is_file(), (mode, folder)
            assert (folder / "model_contract" / "topics.py").is_file(), (mode, folder)
            assert (folder / "lambdas" / "shared.py").is_file() and (folder / "lambdas" / "__init__.py").is_file()
