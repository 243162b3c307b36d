"""Edge app SIGKILLed mid-stream and restarted: it resumes from the committed offsets, 0 unpredicted."""

from __future__ import annotations

import time

from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import finish_stream, guarded, start_stream
from hybridstream.devtools.edge import wait_for


def edge_sigkill(ctx: Context) -> Result:
    def body(result: Result) -> None:
        devices = [f"d{i}" for i in range(ctx.pick(3, 5))]
        per_device = ctx.pick(1000, 3000)
        rate = ctx.pick(300.0, 600.0)
        kills = ctx.pick(1, 3)
        run = start_stream(ctx, "edge-sigkill", devices, per_device, rate, windows={"max_records": 150})
        run.supervise = False  # this scenario restarts the app itself, right after the kill
        total = len(devices) * per_device
        recoveries = []
        for k in range(kills):
            target = total * (k + 1) // (kills + 2)  # kill once the feeder is this far (and the app predicting)
            if not wait_for(lambda t=target: len(run.feeder.sent) >= t and run.predicted() > 50, 90):
                raise RuntimeError(f"no progress before kill {k + 1}:\n{run.edge.tail()}")
            run.edge.kill()
            before = run.predicted()
            result.check(f"kill {k + 1} was mid-stream", run.feeder.is_alive())
            t0 = time.monotonic()
            run.edge.start(wait=False)
            grew = run.wait_predictions_grow(before, 90)
            recoveries.append(round(time.monotonic() - t0, 2) if grew is not None else None)
        result.recovery_s = max((r for r in recoveries if r is not None), default=None)
        result.figures["kills"] = kills
        result.figures["recovery_s_each"] = recoveries
        result.figures["rate_rps"] = rate
        result.check("the app predicted again after every restart", None not in recoveries)
        finish_stream(run, result)

    return guarded("process", "edge app SIGKILL + restart", body)


SCENARIOS = [("edge-sigkill", edge_sigkill)]
