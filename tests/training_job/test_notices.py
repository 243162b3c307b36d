"""The worker's queue messages: window notices (the contract's parser), S3 and EventBridge events."""

from __future__ import annotations

import json

import pytest

from training_job.notices import NoticeError, parse_queue_message

KEY = "windows/pi-1/2017/06/16/T1_20170616T192000Z_300.csv"


def test_window_notice():
    body = json.dumps({"thing": "pi-1", "bucket": "w", "key": KEY, "rows": 300, "first_ts": "a", "last_ts": "b"})
    (ref,) = parse_queue_message(body)
    assert (ref.bucket, ref.key, ref.thing, ref.rows, ref.first_ts) == ("w", KEY, "pi-1", 300, "a")
    assert ref.uri == f"s3://w/{KEY}"


def test_defaults_bucket_and_thing_and_accepts_uri():
    (ref,) = parse_queue_message(json.dumps({"key": KEY, "window_id": "x"}), default_bucket="dflt")
    assert (ref.bucket, ref.thing) == ("dflt", "pi-1")
    (ref,) = parse_queue_message(json.dumps({"uri": f"s3://b2/{KEY}"}))
    assert (ref.bucket, ref.key) == ("b2", KEY)


def test_s3_and_eventbridge_events():
    s3_event = {
        "Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}, "object": {"key": "windows/a+b/x.csv"}}}]
    }
    assert [(r.bucket, r.key, r.thing) for r in parse_queue_message(json.dumps(s3_event))] == [
        ("b", "windows/a b/x.csv", "a b")
    ]
    eb = {"detail": {"bucket": {"name": "b"}, "object": {"key": KEY}}}
    assert parse_queue_message(json.dumps(eb))[0].key == KEY
    assert parse_queue_message(json.dumps({"Event": "s3:TestEvent"})) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        (json.dumps({"bucket": "b"}), "needs 'key'"),
        (json.dumps({"key": KEY}), "no 'bucket'"),
        (json.dumps({"key": KEY, "bucket": "b", "rows": "many"}), "'rows' must be"),
        (json.dumps({"uri": "http://x/y"}), "not an s3://"),
    ],
)
def test_bad_notices(body, fragment):
    with pytest.raises(NoticeError, match=fragment):
        parse_queue_message(body)
