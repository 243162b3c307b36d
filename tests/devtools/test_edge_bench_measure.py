"""``make bench-edge``'s measuring functions (no broker, nothing timed): one throughput definition for
the app and the echo, the per-thread time split, the consumer's fetch backoff setting."""

from __future__ import annotations

import os

import pytest

from edge_app.kafka_io import CONSUMER_DEFAULTS, fetch_backoff_settings
from hybridstream.devtools.edge_bench import throughput_rps
from hybridstream.devtools.thread_cpu import parse_schedstat, thread_times, times_between, total


def test_throughput_counts_from_the_first_input_to_the_last_output() -> None:
    # 150,000 records; input in hand at t=1.000 s, last output's CreateTime at t=7.000 s
    assert throughput_rps(150_000, 1_000.0, 7_000.0) == pytest.approx(25_000.0)


def test_a_late_first_output_does_not_shorten_the_span() -> None:
    # a process that had its input at 0 but emitted everything between 3.6 s and 4.0 s (its input prefetched
    # while its first output waited): first-to-last output would say 375,000/s; the pass took 4 s
    first_input, first_output, last_output = 0.0, 3_600.0, 4_000.0
    assert (150_000 - 1) / ((last_output - first_output) / 1000) > 370_000
    assert throughput_rps(150_000, first_input, last_output) == pytest.approx(37_500.0)


@pytest.mark.parametrize(("first", "last"), [(5_000.0, 5_000.0), (5_000.0, 4_000.0)])
def test_no_throughput_without_a_span(first: float, last: float) -> None:
    with pytest.raises(ValueError, match="first input to last output"):
        throughput_rps(10, first, last)


def test_thread_times_split_cpu_and_run_queue_per_thread_name() -> None:
    assert parse_schedstat("2500000000 500000000 42\n") == (2.5, 0.5)
    before = {(1, "main"): (1.0, 0.5), (2, "rdk:broker1"): (0.5, 0.0), (3, "rdk:broker1"): (0.25, 0.0)}
    after = {(1, "main"): (3.0, 0.75), (2, "rdk:broker1"): (1.0, 0.25), (3, "rdk:broker1"): (0.5, 0.0),
             (9, "python"): (0.125, 0.0)}  # fmt: skip
    split = times_between(before, after)
    assert split == {
        "main": {"cpu_s": 2.0, "runq_s": 0.25},
        "rdk:broker1": {"cpu_s": 0.75, "runq_s": 0.25},  # two threads of one name, summed
        "python": {"cpu_s": 0.125, "runq_s": 0.0},  # born meanwhile: counted from 0
    }
    assert total(split) == {"cpu_s": 2.875, "runq_s": 0.5}


def test_thread_times_of_this_process_name_its_first_thread_main() -> None:
    now = thread_times(os.getpid())
    assert (os.getpid(), "main") in now
    assert now[(os.getpid(), "main")][0] > 0
    assert thread_times(2**22 + 1) == {}  # no such process


def test_the_fetch_backoff_is_set_only_where_librdkafka_knows_it() -> None:
    assert fetch_backoff_settings(0x020200FF) == {"fetch.queue.backoff.ms": 10}  # 2.2.0: the setting's first
    assert fetch_backoff_settings(0x020002FF) == {}  # 2.0.2 (Debian 12, 32-bit ARM) would reject it
    from confluent_kafka import Consumer, libversion

    assert ("fetch.queue.backoff.ms" in CONSUMER_DEFAULTS) == (libversion()[1] >= 0x020200FF)
    Consumer({"group.id": "conf-check", **CONSUMER_DEFAULTS}).close()  # librdkafka accepts the defaults


def test_the_bench_can_run_the_edge_with_other_combiner_keys(tmp_path) -> None:
    """``--combination`` (alternating runs with and without a layer): its keys go over the edge's default combiner
    in the config the app loads; without it the config names no combiner (the edge's default)."""
    import json

    from edge_app.combiners import make_combiner
    from edge_app.config import EdgeConfig
    from edge_app.context_stacking import CorrectedContextStacking
    from hybridstream.devtools.edge_bench import bench_config, main

    def config(**kw) -> dict:
        path = bench_config(tmp_path, "127.0.0.1:9", tmp_path / "b.tflite", tmp_path / "s.tflite", 50.0, **kw)
        return json.loads(path.read_text())

    data = config(combination={"correct": True, "correct_half_life": 500})
    assert data["combination"] == {"strategy": "dynamic", "correct": True, "correct_half_life": 500}
    combination = EdgeConfig.from_dict(data, require_batch_model=False).combination
    assert type(make_combiner(combination, target_index=0)) is CorrectedContextStacking
    assert "combination" not in config()
    with pytest.raises(SystemExit):
        main(["--combination", "[1]"])
