"""Bad speed models announced while readings flow: each rejected with its reason, the old model keeps
serving, 0 records dropped; a model that passes every check but forecasts absurd values after the
swap must be noticed and rolled back to the previous speed model; replayed and late notices never
swap an older model back in."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

from edge_app.swap import SwapGuard
from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import finish_stream, guarded, start_stream
from hybridstream.devtools.edge import absurd_manifest, produce, wait_for

# the speed forecasts a swapped-in model is on probation for (the edge's SwapGuard, built with its default)
GUARD_WINDOW: int = inspect.signature(SwapGuard).parameters["window"].default


def _manifest(model: Path):
    from model_contract import Manifest

    return Manifest.load(model.with_name("manifest.json"))


def _save(root: Path, label: str, tflite: bytes, manifest_dict: dict[str, Any]) -> Path:
    from model_contract import Manifest

    folder = root / label
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(tflite)
    Manifest.from_dict(manifest_dict).save(folder / "manifest.json")
    return folder / "model.tflite"


def _notice(model: Path, published_at: float, **override: Any) -> dict[str, Any]:
    m = _manifest(model)
    notice = {
        "name": m.name,
        "kind": "speed",
        "version": m.version,
        "model": model.resolve().as_uri(),
        "manifest": model.with_name("manifest.json").resolve().as_uri(),
        "sha256": m.sha256,
        "published_at": published_at,
    }
    notice.update(override)
    return notice


def bad_models(ctx: Context, root: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """label -> (notice, expected reason fragment); published_at increases in this order."""
    from model_contract import FeatureSpec, sha256_bytes

    models = ctx.models
    good = _manifest(models.speed2).to_dict()
    now = time.time()
    content = models.speed2.read_bytes()
    truncated = content[: len(content) // 3]
    shape = models.lags3.read_bytes()
    other_spec = {**good, "version": "otherspec", "feature_spec": {**FeatureSpec().to_dict(), "lags": [1, 3]}}
    out = {
        "wrong sha256": (_notice(models.speed2, now, sha256="0" * 64), "sha256 mismatch"),
        "truncated file": (
            _notice(_save(root, "cut", truncated, {**good, "version": "cut", "sha256": sha256_bytes(truncated)}), now),
            "not a loadable TFLite model",
        ),
        "wrong input shape": (
            _notice(_save(root, "shape", shape, {**good, "version": "shape", "sha256": sha256_bytes(shape)}), now + 2),
            "input shape",
        ),
        "wrong feature spec": (_notice(_save(root, "spec", content, other_spec), now + 3), "feature spec differs"),
        "not a notice": ({"this is": "not a notice"}, "no model location"),
    }
    absurd = absurd_manifest(models.speed2).to_dict()  # every forecast ~1,000 scales off: finite, the probe passes
    out["absurd outputs after swap"] = (_notice(_save(root, "absurd", content, absurd), now + 20), "")
    return out


def model_faults(ctx: Context) -> Result:
    def body(result: Result) -> None:
        devices = ["d0", "d1"]
        per_device = ctx.pick(1500, 4000)
        run = start_stream(ctx, "model-faults", devices, per_device, 200.0)
        topic = run.cfg["topics"]["notices"]
        bootstrap = ctx.servers.kafka().bootstrap
        v1, v2 = _manifest(ctx.models.speed).version, _manifest(ctx.models.speed2).version
        faults = bad_models(ctx, run.work / "bad")
        if not wait_for(lambda: run.predicted() > 200, 60):
            raise RuntimeError(f"no predictions:\n{run.edge.tail()}")

        def rejected() -> list[dict[str, Any]]:
            return [e for e in list(run.events.records) if e.get("event") == "model_rejected"]

        def send(notice: dict[str, Any]) -> None:
            produce(bootstrap, topic, [json.dumps(notice).encode()])

        # 1. the bad ones, while the configured v1 serves
        plain = [k for k in faults if k != "absurd outputs after swap"]
        for label in plain:
            send(faults[label][0])
        wait_for(lambda: len(rejected()) >= len(plain), 60)
        got = {json.dumps(e["notice"], sort_keys=True): e["reason"] for e in rejected()}
        for label in plain:
            notice, fragment = faults[label]
            reason = next((r for n, r in got.items() if json.loads(n).get("version") == notice.get("version")
                           and json.loads(n).get("sha256") == notice.get("sha256")), "")  # fmt: skip
            if label == "not a notice":
                reason = next((r for r in got.values() if fragment in r), "")
            result.check(f"{label}: rejected ({fragment})", fragment in reason)
        # 2. a good newer model swaps in; its notice replayed is ignored; an older (late) one is refused
        t_good = time.time() + 10
        send(_notice(ctx.models.speed2, t_good))
        swapped = wait_for(lambda: any(e.get("event") == "model_swapped" for e in run.events.records), 60)
        result.check("a good newer model swapped in", swapped)
        send(_notice(ctx.models.speed2, t_good))  # replayed
        send(_notice(ctx.models.speed, t_good - 100))  # out of order: older than the one serving
        late = wait_for(lambda: any("older than the serving" in e["reason"] for e in rejected()), 60)
        result.check("a late notice for an older model: rejected (older than the serving model)", late)
        # 3. absurd outputs after the swap: the edge must notice and roll back to v2
        notice, _ = faults["absurd outputs after swap"]
        send({**notice, "published_at": time.time() + 100})  # newer than the good one that serves now
        wait_for(lambda: sum(e.get("event") == "model_swapped" for e in run.events.records) >= 2, 30)
        time.sleep(ctx.pick(5.0, 10.0))
        finish_stream(run, result)
        preds = run.predictions.records
        versions = [p["models"]["speed"] for p in preds]
        swaps = [e for e in run.events.records if e.get("event") == "model_swapped"]
        rollbacks = [e for e in run.events.records if "roll" in str(e.get("event", ""))]
        result.figures["speed_versions_in_order"] = _runs(versions)
        result.figures["swaps"] = [(e.get("old_version"), e.get("new_version")) for e in swaps]
        result.figures["rollback_events"] = rollbacks[:3]
        result.figures["rejections"] = {e["reason"][:80]: 1 for e in rejected()}
        result.check("the old model kept serving until the good swap", versions[0] == v1)
        result.check("the replayed notice did not swap again", sum(1 for s in swaps if s.get("new_version") == v2) == 1)
        absurd_served = sum(1 for v in versions if v == "absurd")
        result.figures["predictions_by_absurd_model"] = absurd_served
        result.check(
            "absurd outputs after the swap: noticed, rolled back to the previous speed model and reported",
            bool(rollbacks) and versions[-1] == v2,
        )
        result.check(
            f"rolled back within the guard's first {GUARD_WINDOW} forecasts (each absurd one is out of range)",
            0 < absurd_served <= GUARD_WINDOW,
        )

    return guarded("model_faults", "model faults (bad files, bad notices, absurd outputs)", body)


def _runs(values: list[str]) -> list[tuple[str, int]]:
    """Run-length encoding: [(value, count), ...].

    >>> _runs(["a", "a", "b", "a"])
    [('a', 2), ('b', 1), ('a', 1)]
    """
    out: list[tuple[str, int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


SCENARIOS = [("model-faults", model_faults)]
