"""The feature spec a window carries from the edge to the trainer (model_contract.window_spec): no servers."""

from __future__ import annotations

import json

import pytest

from model_contract import FeatureSpec
from model_contract.window_spec import (
    DIGEST_KEY,
    MAX_METADATA_BYTES,
    SPEC_KEY,
    SpecMismatch,
    carried_spec,
    sidecar_metadata,
    spec_digest,
    spec_json,
    window_metadata,
)

EDGE = FeatureSpec(lags=(1, 2, 23, 24, 25), horizon=6, calendar=("day_sin1", "day_cos1"))
FLAGS = FeatureSpec()  # what a trainer started without spec flags uses


def test_the_edges_spec_wins_over_the_trainers_flags_and_survives_s3s_metadata_rules():
    meta = window_metadata(EDGE)
    assert all(v.isascii() for v in meta.values())  # S3 user metadata values are US-ASCII
    assert sum(len(k) + len(v) for k, v in meta.items()) <= MAX_METADATA_BYTES
    shouted = {k.upper(): v for k, v in meta.items()}  # metadata keys come back in any case
    assert carried_spec(shouted, FLAGS) == (EDGE, "window")
    assert carried_spec(None, FLAGS) == (FLAGS, "trainer")  # an old edge or a hand-made window: the flags
    assert carried_spec({"sha256": "ab", "rows": "3"}, FLAGS) == (FLAGS, "trainer")


def test_a_spec_too_large_for_the_metadata_travels_as_its_digest_and_the_flags_must_match_it():
    wide = FeatureSpec(columns=tuple(f"sensor_{i:03d}" for i in range(200)), target="sensor_007", lags=(1, 3))
    meta = window_metadata(wide)
    assert SPEC_KEY not in meta and meta[DIGEST_KEY] == spec_digest(wide)
    assert carried_spec(meta, wide) == (wide, "trainer")
    with pytest.raises(SpecMismatch, match="the edge recorded this window with feature spec sha256"):
        carried_spec(meta, FeatureSpec(columns=wide.columns, target="sensor_007", lags=(1, 2)))


def test_an_unreadable_or_tampered_spec_is_refused_clearly():
    with pytest.raises(SpecMismatch, match="is not a feature spec"):
        carried_spec({SPEC_KEY: "{not json"}, FLAGS)
    with pytest.raises(SpecMismatch, match="is not a feature spec"):
        carried_spec({SPEC_KEY: json.dumps({"columns": ["a"], "target": "b", "lags": [1]})}, FLAGS)
    other = window_metadata(FLAGS)[DIGEST_KEY]
    with pytest.raises(SpecMismatch, match="does not match its feature-spec-sha256"):
        carried_spec({SPEC_KEY: spec_json(EDGE), DIGEST_KEY: other}, FLAGS)
    assert sidecar_metadata(json.dumps(EDGE.to_dict())) == window_metadata(EDGE)
    with pytest.raises(SpecMismatch, match="sidecar"):
        sidecar_metadata("[]")
