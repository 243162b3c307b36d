"""The S3 key layout and the LATEST pointer: one writer, one parser, one model-name rule."""

from __future__ import annotations

import json

import pytest

from model_contract.layout import (
    SPEED_MODEL_TEMPLATE,
    LatestPointer,
    latest_key,
    manifest_key,
    model_folder,
    model_key,
    parse_latest,
    parse_latest_key,
    parse_manifest_key,
    speed_model_name,
    thing_from_window_key,
    window_id_from_key,
    window_key,
)


def test_speed_model_name_is_spelled_once():
    assert SPEED_MODEL_TEMPLATE == "speed-{thing}"
    assert speed_model_name("pi-1") == "speed-pi-1"
    assert speed_model_name("pi-1", "{thing}.speed") == "pi-1.speed"
    assert speed_model_name("pi-1", "speed") == "speed"  # a fixed name
    with pytest.raises(ValueError, match="needs a thing name"):
        speed_model_name("", SPEED_MODEL_TEMPLATE)
    for bad in ("speed-{iot:thingName}", "a/b-{thing}", "speed {thing}"):
        with pytest.raises(ValueError, match="must be letters"):
            speed_model_name("pi-1", bad)


def test_every_user_derives_the_name_with_it():
    """The edge config, the trainer's worker and watcher, the recipes and the CDK defaults agree."""
    from edge_app.config import EdgeConfig
    from infra.config import AppConfig
    from infra.recipes import EdgeAppSettings

    cfg = EdgeConfig.from_dict({"thing_name": "pi-7", "models": {"batch": "b.tflite"}})
    assert cfg.models.speed_name == speed_model_name("pi-7") == "speed-pi-7"
    templated = EdgeConfig.from_dict({"thing_name": "pi-7", "models": {"batch": "b", "speed_name": "t-{thing}"}})
    assert templated.models.speed_name == "t-pi-7"
    assert AppConfig().speed_model_name == EdgeAppSettings().speed_model_name == SPEED_MODEL_TEMPLATE


def test_recipes_pass_the_template_and_patch_nothing_at_run_time():
    """The apps derive the name from their thing name: no ``sed`` over the config in the recipes."""
    from infra.recipes import EdgeAppSettings, ZipArtifact, edge_app_recipe, trainer_recipe

    art = ZipArtifact("s3://assets/a.zip", "a")
    for settings in (EdgeAppSettings(), EdgeAppSettings(speed_model_name="speed-{iot:thingName}")):
        edge = edge_app_recipe(name="hs.EdgeApp", version="1.0.0", app=art, settings=settings)
        lifecycle = edge["Manifests"][0]["Lifecycle"]
        assert "sed " not in lifecycle["Run"]["Script"]
        assert edge["ComponentConfiguration"]["DefaultConfiguration"]["models"]["speedName"] == SPEED_MODEL_TEMPLATE
    trainer = trainer_recipe(
        name="hs.Trainer", version="1.0.0", source=art, edge_app_component="hs.EdgeApp", speed_model_name="s-{thing}"
    )
    run = trainer["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    assert "sed " not in run and '--name "{configuration:/speedName}"' in run
    assert trainer["ComponentConfiguration"]["DefaultConfiguration"]["speedName"] == "s-{thing}"


def test_window_keys_round_trip():
    key = window_key("pi-1", "T1.1f9360_20170114T000000Z_2")
    assert key == "windows/pi-1/2017/01/14/T1.1f9360_20170114T000000Z_2.csv"
    assert thing_from_window_key(key) == "pi-1"
    assert window_id_from_key(key) == "T1.1f9360_20170114T000000Z_2"
    assert thing_from_window_key("models/pi-1/x.csv") == "" and thing_from_window_key("windows/x.csv") == ""
    for bad in ("stray", "a_b_c", "T1_2017011_3"):
        with pytest.raises(ValueError, match="not a window id"):
            window_key("pi-1", bad)


def test_edge_window_keys_are_the_contracts():
    from edge_app.windows import window_key as edge_window_key

    wid = "T1_20170114T000000Z_1000"
    assert edge_window_key("pi-1", wid) == window_key("pi-1", wid)


def test_model_keys_round_trip():
    assert model_folder("m", "v1") == "models/m/v1"
    assert model_key("m", "v1") == "models/m/v1/model.tflite"
    assert manifest_key("m", "v1", prefix="rejected") == "rejected/m/v1/manifest.json"
    assert parse_manifest_key(manifest_key("speed-pi-1", "0a1b")) == ("speed-pi-1", "0a1b")
    assert parse_manifest_key(manifest_key("m", "v", prefix="p/q"), prefix="p/q") == ("m", "v")
    assert parse_latest_key(latest_key("speed-pi-1")) == "speed-pi-1"
    for bad in ("models/m/v1/model.tflite", "models/m/manifest.json", "rejected/m/v1/manifest.json", "x"):
        with pytest.raises(ValueError, match="not a model manifest key"):
            parse_manifest_key(bad)
    for bad in ("models/LATEST", "models/a/b/LATEST", "rejected/x/LATEST", "models/../LATEST2"):
        with pytest.raises(ValueError, match="not a model LATEST key"):
            parse_latest_key(bad)


def test_latest_pointer_round_trips_through_its_one_writer_and_parser():
    pointer = LatestPointer.for_model(
        "speed-pi-1",
        "0a1b",
        sha256="ab" * 32,
        kind="speed",
        window_last_ts="2017-01-14T00:10:00Z",
        published_at="2026-12-01T00:00:00Z",
    )
    body = pointer.to_json()
    assert parse_latest(body, name="speed-pi-1") == pointer
    assert parse_latest(body.decode()) == pointer and parse_latest(json.loads(body)) == pointer
    # the stored form: these keys in this order, indented (what the trainer has always written)
    assert list(json.loads(body)) == [
        "name",
        "version",
        "sha256",
        "kind",
        "model_key",
        "manifest_key",
        "window_last_ts",
        "published_at",
    ]
    assert body.startswith(b'{\n  "name": "speed-pi-1",\n  "version": "0a1b"')
    other = LatestPointer.for_model("m", "v", prefix="p")
    assert parse_latest(other.to_json(), prefix="p").manifest_key == "p/m/v/manifest.json"


def test_older_pointers_get_the_canonical_keys():
    pointer = parse_latest(b'{"name": "m", "version": "v7"}', name="m")
    assert (pointer.manifest_key, pointer.model_key) == ("models/m/v7/manifest.json", "models/m/v7/model.tflite")
    assert parse_latest(b'{"version": "v7"}', name="m").name == "m"  # the name from the key


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "LATEST is not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"name": "other", "version": "v1"}', "names model 'other'"),
        (b'{"name": "m", "version": "../x"}', "valid version"),
        (b'{"name": "m"}', "valid version"),
        (b'{"name": "m", "version": "v1", "manifest_key": "models/other/v1/manifest.json"}', "manifest_key"),
        (b'{"name": "m", "version": "v1", "model_key": "windows/x/model.tflite"}', "model_key"),
    ],
)
def test_bad_pointers_are_refused(body, message):
    with pytest.raises(ValueError, match=message):
        parse_latest(body, name="m")


def test_the_trainer_writes_what_the_lambdas_parse():
    """ModelStore's LATEST is the contract's writer output; both Lambdas parse it with parse_latest."""
    import inspect

    import training_job.publish as publish

    assert "LatestPointer(" in inspect.getsource(publish.ModelStore.advance_latest)
    for folder in ("cloud_inference", "model_published"):
        from tests.lambdas.conftest import load_handler

        assert load_handler(folder).parse_latest is parse_latest
