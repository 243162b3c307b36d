"""Kafka broker SIGKILLed mid-stream and restarted on the same data: every reading predicted,
duplicates only with the same idempotency key; how long until predictions flow again."""

from __future__ import annotations

import time

from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import finish_stream, guarded, start_stream
from hybridstream.devtools.edge import wait_for


def broker_sigkill(ctx: Context) -> Result:
    def body(result: Result) -> None:
        devices = [f"d{i}" for i in range(ctx.pick(3, 5))]
        per_device = ctx.pick(1500, 6000)
        rate = ctx.pick(300.0, 500.0)
        down_s = ctx.pick(3.0, 20.0)
        run = start_stream(ctx, "broker-sigkill", devices, per_device, rate)
        total = len(devices) * per_device
        if not wait_for(lambda: run.predicted() >= total // 5, 90):
            raise RuntimeError(f"no progress before the kill:\n{run.edge.tail()}")
        broker = ctx.servers.kafka()
        broker.kill()  # SIGKILL: no clean shutdown, its log is recovered at the next start
        result.check("the broker was killed mid-stream", run.feeder.is_alive())
        time.sleep(down_s)
        began = time.monotonic()
        broker.start(timeout=90)  # the same ports and data
        restart_s = time.monotonic() - began
        before = run.predicted()
        grew = run.wait_predictions_grow(before, 120)
        result.recovery_s = round(restart_s + grew, 2) if grew is not None else None
        result.figures.update({"down_s": down_s, "broker_restart_s": round(restart_s, 2), "rate_rps": rate})
        result.check("predictions flowed again after the restart", grew is not None)
        finish_stream(run, result, timeout=180)
        result.notes.append(
            "recovery_s = broker start (same ports and log dirs) + time to the first new prediction; "
            "the feeder's producer buffers while the broker is down (message.timeout.ms 300 s)"
        )

    return guarded("broker", "Kafka broker SIGKILL + restart", body)


SCENARIOS = [("broker-sigkill", broker_sigkill)]
