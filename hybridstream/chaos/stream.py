"""The shape most scenarios share: a steady stream of good readings through the edge app while a
fault is injected, a supervisor that restarts the app if it exits (as Greengrass does), and the
ledger at the end (every reading predicted? duplicates only with the same key? windows?)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridstream.chaos.harness import Context, Feeder, edge_config, tally_windows
from hybridstream.chaos.result import Result, ledger
from hybridstream.devtools.edge import Collector, EdgeProcess, wait_for


@dataclass
class Run:
    """A running stream: the edge process, its feeder and collectors."""

    ctx: Context
    work: Path
    prefix: str
    cfg: dict[str, Any]
    edge: EdgeProcess
    feeder: Feeder
    predictions: Collector
    deadletter: Collector
    events: Collector
    restarts: int = 0
    supervise: bool = True
    _halt: threading.Event = field(default_factory=threading.Event)

    def supervisor(self) -> None:
        """Restart the app when it exits on its own (exit code != 0 means: replay from the last commit)."""
        while not self._halt.is_set():
            if self.supervise and self.edge.proc is not None and not self.edge.alive():
                self.edge.exit_codes.append(self.edge.proc.returncode)
                self.restarts += 1
                time.sleep(1.0)  # Greengrass's restart back-off is longer; one second keeps scenarios short
                if not self._halt.is_set():
                    self.edge.start(wait=False)
            time.sleep(0.2)

    def predicted(self) -> int:
        return len(self.predictions.records)

    def all_predicted(self) -> bool:
        want = set(self.feeder.sent)
        return bool(want) and self.feeder.finished_at is not None and want <= set(self.predictions.keys())

    def wait_predictions_grow(self, than: int, timeout: float) -> float | None:
        """Seconds until more than ``than`` predictions were seen (None on timeout)."""
        began = time.monotonic()
        if wait_for(lambda: self.predicted() > than, timeout, 0.05):
            return time.monotonic() - began
        return None


def start_stream(
    ctx: Context,
    name: str,
    devices: list[str],
    per_device: int,
    rate: float,
    start_index: int = 0,
    env: dict[str, str] | None = None,
    **cfg_extra: Any,
) -> Run:
    work, prefix = ctx.work(name)
    bootstrap = ctx.servers.kafka().bootstrap
    cfg = edge_config(work, bootstrap, prefix, ctx.models, **cfg_extra)
    topics = cfg["topics"]
    records = ctx.readings.batch(devices, start_index, per_device)
    predictions = Collector(bootstrap, topics["predictions"]).start()
    deadletter = Collector(bootstrap, topics["deadletter"]).start()
    events = Collector(bootstrap, topics["events"]).start()
    edge = EdgeProcess(work, cfg, env=env).start()
    feeder = Feeder(bootstrap, topics["readings"], records, rate)
    run = Run(ctx, work, prefix, cfg, edge, feeder, predictions, deadletter, events)
    threading.Thread(target=run.supervisor, daemon=True).start()
    feeder.start()
    return run


def finish_stream(run: Run, result: Result, timeout: float = 120, local_windows: bool = True) -> None:
    """Wait until every sent reading is predicted (or ``timeout``), stop the app gracefully, fill the ledger."""
    run.feeder.join(timeout)
    began = time.monotonic()
    done = wait_for(run.all_predicted, timeout, 0.2)
    result.figures["catch_up_s"] = round(time.monotonic() - began, 2)
    run._halt.set()
    code = run.edge.terminate(60)
    result.check("graceful exit 0 at the end", code == 0)
    time.sleep(0.5)
    for c in (run.predictions, run.deadletter, run.events):
        c.stop()
    ledger(result, run.feeder.sent, run.predictions.keys())
    result.check("every reading predicted", done and result.readings_lost == 0)
    result.check("every reading acknowledged by the broker to the feeder", not run.feeder.failed)
    result.check("duplicates carry the same key and reading", same_reading_per_key(run.predictions.records))
    result.check("no unexpected predictions", result.figures["unexpected_predictions"] == 0)
    replays = replayed_dead_letters(run.deadletter.records, set(run.predictions.keys()))
    reasons = Counter(d.get("reason") for d in run.deadletter.records)
    result.figures["deadletter_reasons"] = dict(reasons)
    result.check("dead letters are only replays of readings already predicted", replays == len(run.deadletter.records))
    result.figures["restarts_by_supervisor"] = run.restarts
    result.figures["edge_exit_codes"] = list(run.edge.exit_codes)
    result.models_rejected = sum(1 for e in run.events.records if e.get("event") == "model_rejected")
    if local_windows:
        tally = tally_windows(Path(run.cfg["state_dir"]), Path(run.cfg["windows"]["local_root"]))
        result.windows_sent, result.windows_delivered = tally.sent, tally.delivered
        result.windows_lost = tally.spooled + tally.quarantined
        missing = set(run.feeder.sent) - tally.covered
        result.figures["readings_missing_from_windows"] = len(missing)
        result.check("every reading in a delivered window", not missing)
        result.check("no window left undelivered", result.windows_lost == 0)


def replayed_dead_letters(dead: list[dict[str, Any]], predicted: set[str]) -> int:
    """How many dead letters are replays after a crash (``duplicate_timestamp``/``out_of_order`` of a
    reading whose prediction was already delivered): documented at-least-once behaviour, not a loss."""
    n = 0
    for d in dead:
        if d.get("reason") not in ("duplicate_timestamp", "out_of_order"):
            continue
        try:
            payload = json.loads(d["payload"]) if d.get("payload_encoding", "utf-8") == "utf-8" else {}
        except (ValueError, TypeError):
            continue
        if f"{payload.get('device')}|{payload.get('Date_time')}" in predicted:
            n += 1
    return n


def same_reading_per_key(predictions: list[dict[str, Any]]) -> bool:
    """Replayed outputs carry the same key for the same (device, timestamp, actual)."""
    seen: dict[str, set] = defaultdict(set)
    for p in predictions:
        seen[p["key"]].add((p["device"], p["timestamp"], p["actual"]))
    return all(len(v) == 1 for v in seen.values())


def guarded(family: str, name: str, func: Callable[[Result], None]) -> Result:
    """Run ``func(result)``; an exception becomes the result's error (the scenario fails, the runner goes on)."""
    result = Result(name, family)
    began = time.monotonic()
    try:
        func(result)
    except Exception as exc:  # a scenario that breaks is a failing scenario, reported with its reason
        import traceback

        result.error = f"{type(exc).__name__}: {exc}"[:2000]
        result.notes.append(traceback.format_exc()[-3000:])
    result.seconds = round(time.monotonic() - began, 1)
    return result
