"""A small fleet burst through the worker pool on radosgw + ElasticMQ (hybridstream.devtools.train_fleet).

``make bench-train`` runs the large one; here 2 workers, 4 windows from 2 things (two each, so a
thing's second model meets the guardrail and LATEST's forward-only rule).
"""

from __future__ import annotations

import pytest

from hybridstream.devtools.train_fleet import FleetServers, burst

pytestmark = pytest.mark.s3


def test_a_burst_drains_with_nothing_lost_or_trained_twice(
    s3_server, sqs_server, tiny_options, turbine_rows, monkeypatch
):
    for key, value in s3_server.env().items():  # FleetServers sets them for the workers; undone after the test
        monkeypatch.setenv(key, value)
    report = burst(
        FleetServers(s3_server, sqs_server),
        turbine_rows.matrix,
        turbine_rows.timestamps,
        tiny_options,
        workers=2,
        things=2,
        windows=4,
        rows=200,
        lease=30,
    )
    assert (report["lost"], report["trained_twice"], report["queue_left"], report["dead_letters"]) == (0, 0, 0, 0)
    assert sum(report["outcomes"].get(s, 0) for s in ("published", "rejected")) == 4
    assert report["published_versions_match"]  # one version in models/ per published window, none more
    assert report["things"] == 2 and report["restarts"] == 0
    assert 0 < report["latency_seconds"]["p50"] <= report["latency_seconds"]["max"] <= report["drain_seconds"] + 1
