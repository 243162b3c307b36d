"""Input fuzzing through the real broker: hypothesis generates bad records (wrong types, missing fields,
huge values, NaN/inf, invalid UTF-8, oversized, deep JSON, bad/future/duplicate/out-of-order
timestamps, unknown devices, non-objects, tombstones) interleaved with good ones. Expected: 0 crashes,
every bad one in the deadletter topic with a reason, every good one predicted, and good-record
throughput within 20 % of a clean run of the same good records.

Generation uses hypothesis strategies (``@given`` with ``max_examples``, derandomized, no database);
the property is checked over the whole run after it, so hypothesis's shrinking is not applied across
the broker round trip: a failing record is reported as generated (the first few, with their reason).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hybridstream.chaos.harness import Context, edge_config
from hybridstream.chaos.result import Result, ledger
from hybridstream.chaos.stream import guarded
from hybridstream.devtools.edge import Collector, EdgeProcess, produce, wait_for
from hybridstream.servers.process import CACHE_DIR

GOOD_DEVICES = [f"g{i}" for i in range(5)]


def _floatable(text: str) -> bool:
    try:
        float(text)
    except (ValueError, OverflowError):
        return False
    return True


def strategies(columns: list[str]) -> Any:
    """One strategy of ``(category, small parameters)`` over every kind of bad record; :func:`build`
    turns them into bytes outside hypothesis (so big payloads cost nothing to generate)."""
    from hypothesis import strategies as st

    junk_text = st.text(max_size=30).filter(lambda s: not _floatable(s))
    wrong_type = st.one_of(
        junk_text,
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    column = st.sampled_from(columns)
    huge = st.floats(min_value=1e9, max_value=1e300)
    salt = st.integers(0, 10**9)  # small-space kinds get distinct examples (hypothesis skips repeats)
    cats = {
        "wrong_type": st.tuples(column, wrong_type),
        "missing_field": st.tuples(st.sampled_from([*columns, "Date_time"]), salt),
        "huge_value": st.tuples(column, huge),
        "huge_negative": st.tuples(column, huge.map(lambda v: -v)),
        "nan_inf": st.tuples(column, st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "inf", "-Infinity"]), salt),
        "huge_integer": st.tuples(column, st.integers(400, 6000)),
        "invalid_utf8": st.binary(min_size=1, max_size=100),
        "not_json": st.text(min_size=1, max_size=100).filter(lambda s: not _is_json(s)),
        "not_an_object": st.one_of(
            st.lists(st.integers(), max_size=5), st.integers(), st.text(max_size=10), st.floats(allow_nan=False)
        ),
        "oversized": st.integers(130_000, 200_000),
        "deep_json": st.integers(1_000, 30_000),
        "deep_field": st.integers(1_000, 20_000),
        "bad_timestamp": st.one_of(
            junk_text, st.booleans(), st.lists(st.integers(), max_size=2), st.floats(max_value=9e8)
        ),
        "future_timestamp": st.floats(min_value=1e10, max_value=1e15),
        "unknown_device": st.text(min_size=1, max_size=40).filter(lambda d: d not in GOOD_DEVICES),
        "missing_device": st.tuples(st.sampled_from([None, "", 0.5, True, [], {}]), salt),
        "tombstone": salt,
        "replay": st.tuples(st.integers(0, 5), salt),  # a duplicate (0) or out-of-order (k) timestamp of a good device
    }
    return st.sampled_from(sorted(cats)).flatmap(lambda c: st.tuples(st.just(c), cats[c]))


def build(category: str, params: Any, good: dict[str, Any]) -> bytes:
    """The bad record's bytes (``replay`` is resolved later, against the good stream)."""

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, allow_nan=True).encode()

    if category in ("wrong_type", "huge_value", "huge_negative", "nan_inf"):
        col, value = params[:2]
        return dumps({**good, col: value})
    if category == "missing_field":
        return dumps({k: v for k, v in good.items() if k != params[0]})
    if category == "huge_integer":
        col, digits = params
        rest = dumps({k: v for k, v in good.items() if k != col})
        return rest[:-1] + f', "{col}": 1{"0" * digits}}}'.encode()
    if category == "invalid_utf8":
        return b'{"device": "\xff\xfe' + params + b'"}'
    if category == "not_json":
        return params.encode("utf-8", "surrogatepass")
    if category == "not_an_object":
        return dumps(params)
    if category == "oversized":
        return b'{"device": "g0", "junk": "' + b"x" * params
    if category == "deep_json":
        return b"[" * params + b"]" * params
    if category == "deep_field":
        return dumps(good)[:-1] + b', "x": ' + b"[" * params + b"]" * params + b"}"
    if category in ("bad_timestamp", "future_timestamp"):
        return dumps({**good, "Date_time": params})
    if category in ("unknown_device", "missing_device"):
        device = params if category == "unknown_device" else params[0]
        return dumps({**good, "device": device}).decode("utf-8", "surrogatepass").encode("utf-8", "surrogatepass")
    if category == "tombstone":
        return b""
    raise ValueError(category)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


CORPUS_VERSION = 1  # bump when the strategies change (the cached corpus is keyed by it)


def generate(n: int, good: dict[str, Any], cache: Path | None = None) -> list[tuple[str, Any]]:
    """At least ``n`` bad records from hypothesis (deterministic: seeded, no example database).

    With ``cache`` (a folder) the corpus is kept there as a pickle keyed by ``n``, the good template
    and :data:`CORPUS_VERSION`, since generating 10,000 takes a minute or two on a busy machine.
    """
    if cache is not None:
        digest = hashlib.sha256(json.dumps([n, good, CORPUS_VERSION], sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache) / f"fuzz-corpus-{digest}.pkl"
        if path.exists():
            return pickle.loads(path.read_bytes())
        corpus = generate(n, good)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(corpus))
        return corpus
    from hypothesis import HealthCheck, Phase, given, seed, settings

    out: list[tuple[str, Any]] = []
    strategy = strategies([k for k in good if k not in ("device", "Date_time")])
    rounds = 0
    while len(out) < n and rounds < 20:

        @seed(rounds)
        @settings(
            max_examples=n - len(out),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def collect(item: tuple[str, Any]) -> None:
            out.append(item)

        collect()
        rounds += 1
    return [(c, p if c == "replay" else build(c, p, good)) for c, p in out]


def build_stream(ctx: Context, bad_n: int, good_per_device: int) -> tuple[list, list[str], dict[str, str]]:
    """(records, good idempotency keys, bad key -> category): bad ones keyed ``bad-<i>``, interleaved."""
    readings = ctx.readings
    template = json.loads(readings.one("g0", 0)[1])
    bad = generate(bad_n, template, cache=CACHE_DIR / "chaos-fuzz")
    good = readings.batch(GOOD_DEVICES, 0, good_per_device)
    records: list[tuple[bytes | None, bytes]] = []
    bad_keys: dict[str, str] = {}
    ratio = len(bad) / max(len(good), 1)
    owed = 0.0
    b = 0
    for gi, (key, value, _idem) in enumerate(good):
        records.append((key, value))
        owed += ratio
        while owed >= 1 and b < len(bad):
            category, payload = bad[b]
            if category == "replay":  # an earlier reading of the device just sent: duplicate or out of order
                device = GOOD_DEVICES[gi % len(GOOD_DEVICES)]
                i = max(gi // len(GOOD_DEVICES) - payload[0], 0)
                payload = readings.one(device, i)[1]
                category = "duplicate_timestamp" if i == gi // len(GOOD_DEVICES) else "out_of_order"
            bad_keys[f"bad-{b}"] = category
            records.append((f"bad-{b}".encode(), payload))
            owed -= 1
            b += 1
    last = len(good) - 1
    for i in range(b, len(bad)):  # what rounding left over goes last
        category, payload = bad[i]
        if category == "replay":  # after every good reading: the last one sent again, a duplicate
            if last < 0:
                continue
            device = GOOD_DEVICES[last % len(GOOD_DEVICES)]
            payload = readings.one(device, last // len(GOOD_DEVICES))[1]
            category = "duplicate_timestamp"
        bad_keys[f"bad-{i}"] = category
        records.append((f"bad-{i}".encode(), payload))
    return records, [g[2] for g in good], bad_keys


def _throughput(collector: Collector) -> float:
    times = [m.timestamp()[1] for m in collector.records]
    span = (max(times) - min(times)) / 1000.0 if len(times) > 1 else 0.0
    return len(times) / span if span > 0 else 0.0


def _edge_over(ctx: Context, name: str, records: list, n_good: int) -> tuple[EdgeProcess, Collector, Collector, dict]:
    """Preload ``records``, start the app, wait for ``n_good`` predictions; return the collectors."""
    work, prefix = ctx.work(name)
    bootstrap = ctx.servers.kafka().bootstrap
    cfg = edge_config(work, bootstrap, prefix, ctx.models, devices=GOOD_DEVICES, windows={"max_records": 1000})
    topics = cfg["topics"]
    produce(bootstrap, topics["readings"], [v for _, v in records], [k for k, _ in records], timeout=120)
    preds = Collector(bootstrap, topics["predictions"], parse=False).start()
    dead = Collector(bootstrap, topics["deadletter"]).start()
    edge = EdgeProcess(work, cfg).start()
    ok = wait_for(lambda: len(preds.records) >= n_good, ctx.pick(120, 400), 0.2)
    time.sleep(1.0)
    code = edge.terminate(60)
    time.sleep(0.5)
    preds.stop()
    dead.stop()
    return edge, preds, dead, {"complete": ok, "exit": code}


def fuzz(ctx: Context) -> Result:
    def body(result: Result) -> None:
        bad_n = ctx.pick(3_000, 10_500)
        per_device = ctx.pick(6_000, 21_000)  # 5 devices: 10 good readings per bad one
        began = time.monotonic()
        records, good_keys, bad_keys = build_stream(ctx, bad_n, per_device)
        result.figures["generate_s"] = round(time.monotonic() - began, 1)
        clean_records = [r for r in records if not (r[0] or b"").startswith(b"bad-")]
        clean_edge, clean_preds, _, clean_status = _edge_over(ctx, "fuzz-clean", clean_records, len(good_keys))
        edge, preds, dead, status = _edge_over(ctx, "fuzz", records, len(good_keys))
        parsed = [json.loads(m.value()) for m in preds.records]
        ledger(result, good_keys, [p["key"] for p in parsed])
        counters = edge.counters()
        dead_by_key = {d.get("key"): d for d in dead.records}
        missing = [k for k in bad_keys if k not in dead_by_key]
        no_reason = [k for k, d in dead_by_key.items() if k in bad_keys and not d.get("reason")]
        matrix: dict[str, Counter] = {}
        for k, cat in bad_keys.items():
            matrix.setdefault(cat, Counter())[dead_by_key.get(k, {}).get("reason", "MISSING")] += 1
        # a clean run again after the fuzzed one: the machine is shared, so compare with the mean of both
        clean_runs = [_throughput(clean_preds)]
        if not ctx.quick:
            _, clean_preds2, _, _ = _edge_over(ctx, "fuzz-clean2", clean_records, len(good_keys))
            clean_runs.append(_throughput(clean_preds2))
        clean_tp, fuzz_tp = sum(clean_runs) / len(clean_runs), _throughput(preds)
        result.figures.update(
            {
                "bad_records": len(bad_keys),
                "good_records": len(good_keys),
                "categories": {c: dict(v) for c, v in sorted(matrix.items())},
                "bad_not_deadlettered_sample": [(k, bad_keys[k]) for k in missing[:5]],
                "internal_errors": counters.get("deadletter_reasons", {}).get("internal_error", 0),
                "good_throughput_rps": round(fuzz_tp),
                "clean_throughput_rps": round(clean_tp),
                "clean_throughput_rps_each": [round(c) for c in clean_runs],
                "throughput_ratio": round(fuzz_tp / clean_tp, 3) if clean_tp else None,
                "edge_exit_codes": [clean_status["exit"], status["exit"]],
            }
        )
        want = 3_000 if ctx.quick else 10_000
        result.check(
            f">= {want:,} bad records generated and sent",
            len(bad_keys) >= want,
        )
        result.check("0 crashes: the app ran through and exited 0", status["exit"] == 0 and edge.runs == 1)
        result.check("0 internal errors (every bad record had a proper reason)", result.figures["internal_errors"] == 0)
        result.check("every bad record in the deadletter topic", not missing)
        result.check("every dead letter has a reason", not no_reason)
        result.check("every good record predicted", status["complete"] and result.readings_lost == 0)
        result.check("no good record dead-lettered", not [k for k in dead_by_key if k and not k.startswith("bad-")])
        if ctx.quick:  # a few seconds of records: the ratio is noise on a shared machine (reported, not judged)
            result.notes.append(f"quick mode: throughput ratio {fuzz_tp / clean_tp if clean_tp else 0:.2f}, not judged")
        else:
            ok = clean_tp > 0 and fuzz_tp >= 0.8 * clean_tp
            result.check("good-record throughput within 20 % of a clean run (mean of two clean runs)", ok)
        del clean_edge
        result.notes.append(
            "throughput: first-to-last prediction CreateTime, records preloaded before the app starts; the clean "
            "runs (full mode: one before, one after the fuzzed one, their mean) have the same good records without "
            "the bad ones; shared 2-core machine"
        )

    return guarded("fuzz", "input fuzzing (hypothesis, bad records among good ones)", body)


SCENARIOS = [("fuzz", fuzz)]
