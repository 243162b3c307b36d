"""Every recipe variable the project's recipes use resolves on a core, as the nucleus resolves it
(KernelConfigResolver: a placeholder it cannot resolve stays in the script as text and is logged:
https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/componentmanager/KernelConfigResolver.java
). Cross-component look-ups need a direct dependency."""

from __future__ import annotations

import json

import pytest

from hybridstream.greengrass.release import local_release
from hybridstream.greengrass.runner import LocalCore
from infra import recipes
from tests.infra.conftest import make_batch_model, make_kafka_libs


@pytest.mark.parametrize("mode", ["edge-cloud", "edge", "cloud"])
def test_every_placeholder_resolves(tmp_path, mode):
    release = local_release(
        tmp_path / "artifacts",
        batch_model_dir=make_batch_model(tmp_path / "model"),
        kafka_libs_dir=make_kafka_libs(tmp_path / "libs"),
        mode=mode,
    )
    components = list(release.components)
    if mode == "edge":  # the on-Pi trainer, with a stand-in source artifact
        from hybridstream.greengrass.release import zip_folder

        src = tmp_path / "trainer-src" / "training_job"
        src.mkdir(parents=True)
        (src / "requirements.txt").write_text("numpy\n")
        stem, path = zip_folder(src.parent, tmp_path / "artifacts")
        trainer = recipes.trainer_recipe(
            name="hybridstream.Trainer",
            version="1.0.0",
            source=recipes.ZipArtifact(uri=f"s3://local-artifacts/{stem}.zip", stem=stem),
            edge_app_component=release["EdgeApp"].name,
            prerequisites_component=release["Prerequisites"].name,
        )
        components.append(type(components[0])(trainer, {f"s3://local-artifacts/{stem}.zip": path}))
    with LocalCore(tmp_path / "gg", "pi-1") as core:
        for c in components:
            core.deploy(c.recipe, c.artifacts, c.merge)
        for c in components:
            lifecycle = core._lifecycle(core.components[c.name])
            text = json.dumps(lifecycle)
            assert "{configuration:" not in text and "{artifacts:" not in text and "{work:" not in text, c.name
            assert "{iot:" not in text and ":artifacts:" not in text and ":work:" not in text, c.name
        assert core.interpolator.unresolved == []
        edge_work = core.components[release["EdgeApp"].name].context.work_path
        run = core.components[release["EdgeApp"].name].lifecycle["Run"]["Script"]
        assert '"thing_name": "pi-1"' in run and '"speed_name": "speed-{thing}"' in run
        if mode == "edge":
            trainer_run = core.components["hybridstream.Trainer"].lifecycle["Run"]["Script"]
            assert f'--watch "{edge_work}/windows"' in trainer_run
            assert '--name "speed-{thing}"' in trainer_run
