"""The two edge <-> cloud messages: one name, one schema, one parser each; round trips and the
wire format as the other side reads it."""

from __future__ import annotations

import hashlib
import json

import pytest

from model_contract.messages import (
    DEVICE_SCHEMAS,
    MODEL_NOTICE_SCHEMA,
    WINDOW_NOTICE_SCHEMA,
    ModelNotice,
    NoticeError,
    WindowNotice,
    parse_model_notice,
    parse_window_notice,
)

KEY = "windows/pi-1/2017/01/14/T1.1f9360_20170114T000000Z_2.csv"
CSV = b"Date_time,device,x\n2017-01-14T00:00:00Z,T1,1\n2017-01-14T00:10:00Z,T1,2\n"
TYPES = {"string": str, "integer": int, "number": (int, float), "object": dict, "array": list}


def _conforms(wire: dict, schema: dict) -> None:
    for name, json_type in schema["required"].items():
        assert isinstance(wire[name], TYPES[json_type]) and not isinstance(wire[name], bool), name
    for name, json_type in schema["optional"].items():
        if wire.get(name) is not None:
            assert isinstance(wire[name], TYPES[json_type]), name


# -- WindowNotice -----------------------------------------------------------------------------


def test_window_notice_from_the_bytes():
    n = WindowNotice.for_window("pi-1", "windows-bucket", KEY, CSV)
    assert (n.thing, n.bucket, n.key, n.rows) == ("pi-1", "windows-bucket", KEY, 2)
    assert (n.first_ts, n.last_ts) == ("2017-01-14T00:00:00Z", "2017-01-14T00:10:00Z")
    assert n.window_id == "T1.1f9360_20170114T000000Z_2" and n.sha256 == hashlib.sha256(CSV).hexdigest()
    assert n.uri == f"s3://windows-bucket/{KEY}"
    empty = WindowNotice.for_window("pi-1", "b", KEY, b"Date_time,x\n")
    assert (empty.rows, empty.first_ts, empty.last_ts) == (0, "", "")


def test_window_notice_wire_format_and_round_trip():
    n = WindowNotice.for_window("pi-1", "windows-bucket", KEY, CSV)
    wire = n.to_json()
    assert wire.startswith('{"thing":"pi-1","bucket":"windows-bucket","key":"windows/pi-1/')  # compact, this order
    assert list(json.loads(wire)) == ["thing", "bucket", "key", "rows", "first_ts", "last_ts", "window_id", "sha256"]
    _conforms(json.loads(wire), WINDOW_NOTICE_SCHEMA)
    assert parse_window_notice(wire) == n
    assert parse_window_notice(wire.encode()) == n
    # what the IoT rule forwards adds fields; the parser ignores them
    assert parse_window_notice({**json.loads(wire), "mqtt_topic": "hybridstream/pi-1/windows"}) == n


def test_window_notice_defaults_and_alternatives():
    n = parse_window_notice({"key": KEY}, default_bucket="dflt")
    assert (n.bucket, n.thing, n.rows) == ("dflt", "pi-1", None)
    assert parse_window_notice({"uri": f"s3://b2/{KEY}"}).bucket == "b2"
    assert parse_window_notice({"s3_uri": f"s3://b3/{KEY}"}).key == KEY


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"bucket": "b"}), "needs 'key'"),
        (json.dumps({"key": KEY}), "no 'bucket'"),
        (json.dumps({"key": KEY, "bucket": "b", "rows": "many"}), "'rows' must be"),
        (json.dumps({"key": KEY, "bucket": "b", "rows": True}), "'rows' must be"),
        (json.dumps({"key": KEY, "bucket": "b", "rows": -1}), "'rows' must be"),
        (json.dumps({"uri": "http://x/y"}), "not an s3://"),
    ],
)
def test_bad_window_notices(body, fragment):
    with pytest.raises(NoticeError, match=fragment):
        parse_window_notice(body)


# -- ModelNotice ------------------------------------------------------------------------------

MANIFEST = {"name": "speed-pi-1", "version": "0a1b", "sha256": "ab" * 32, "kind": "speed", "metrics": {"rmse": 0.4}}
MANIFEST_KEY = "models/speed-pi-1/0a1b/manifest.json"


def _notice(**manifest) -> tuple[ModelNotice, bytes]:
    body = json.dumps({**MANIFEST, **manifest}).encode()
    return ModelNotice.for_manifest("models-bucket", MANIFEST_KEY, body, published_at=1700000000), body


def test_model_notice_from_a_manifest():
    n, body = _notice()
    assert (n.name, n.version, n.kind, n.sha256) == ("speed-pi-1", "0a1b", "speed", "ab" * 32)
    assert n.s3_uri == "s3://models-bucket/models/speed-pi-1/0a1b/model.tflite"
    assert n.manifest_uri == f"s3://models-bucket/{MANIFEST_KEY}"
    assert n.manifest_sha256 == hashlib.sha256(body).hexdigest()
    assert n.metrics == {"rmse": 0.4} and n.published_at == 1700000000


def test_model_notice_wire_format_and_round_trip():
    n, _ = _notice()
    wire = n.to_json()
    fields = ["name", "version", "kind", "sha256", "s3_uri", "manifest_uri", "manifest_sha256", "metrics"]
    assert list(json.loads(wire)) == [*fields, "published_at"]
    assert wire.startswith('{"name": "speed-pi-1", "version": "0a1b"') and wire.endswith('"published_at": 1700000000}')
    _conforms(json.loads(wire), MODEL_NOTICE_SCHEMA)
    assert parse_model_notice(wire) == n
    assert parse_model_notice(json.loads(wire), kind="speed") == n


def test_model_notice_parser_normalises():
    n = parse_model_notice({"name": "speed", "model": "/m/model.tflite", "sha256": "A" * 64, "published_at": True})
    assert (n.s3_uri, n.sha256, n.kind, n.published_at, n.manifest_uri) == ("/m/model.tflite", "a" * 64, "speed", 0, "")
    for alias in ("location", "uri"):
        assert (
            parse_model_notice({"name": "s", alias: "file:///m.tflite", "sha256": "a" * 64}).s3_uri
            == "file:///m.tflite"
        )
    assert parse_model_notice({"name": "s", "s3_uri": "x", "sha256": "a" * 64, "manifest": "y"}).manifest_uri == "y"
    assert (
        parse_model_notice({"name": "s", "s3_uri": "x", "sha256": "a" * 64, "published_at": float("nan")}).published_at
        == 0
    )


@pytest.mark.parametrize(
    ("notice", "fragment"),
    [
        ({"model": "file:///m.tflite", "sha256": "abc"}, "sha256"),
        ({"sha256": "a" * 64}, "no model location"),
        ({"uri": "s3://b/k", "sha256": "A" * 64}, "no model name"),
        ({"name": "speed", "uri": "s3://b/k", "sha256": "A" * 64, "manifest_sha256": "x"}, "manifest_sha256"),
        ("not json", "not JSON"),
    ],
)
def test_bad_model_notices(notice, fragment):
    with pytest.raises(NoticeError, match=fragment):
        parse_model_notice(notice)


def test_model_notice_kind_check():
    batch = {"name": "batch", "model": "/m.tflite", "sha256": "a" * 64, "kind": "batch"}
    assert parse_model_notice(batch).kind == "batch"  # the contract carries every kind
    with pytest.raises(NoticeError, match="notice is for a batch model, not a speed model"):
        parse_model_notice(batch, kind="speed")  # the edge swaps speed models only


@pytest.mark.parametrize(
    ("key", "manifest", "fragment"),
    [
        ("models/speed-pi-1/0a1b/model.tflite", {}, "not a model manifest key"),
        (MANIFEST_KEY, {"version": "other"}, "does not match key"),
        (MANIFEST_KEY, {"sha256": "not-a-digest"}, "sha256"),
        (MANIFEST_KEY, {"sha256": None}, "lacks sha256"),
    ],
)
def test_model_notice_refuses_a_manifest_that_disagrees_with_its_key(key, manifest, fragment):
    with pytest.raises(NoticeError, match=fragment):
        ModelNotice.for_manifest("b", key, json.dumps({**MANIFEST, **manifest}).encode())


def test_device_schemas_cover_every_device_kind():
    from model_contract.topics import DEVICE_KINDS

    assert set(DEVICE_SCHEMAS) == set(DEVICE_KINDS)
    assert DEVICE_SCHEMAS["windows"] is WINDOW_NOTICE_SCHEMA
