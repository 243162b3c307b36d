"""``fleet rollout`` / ``fleet abort``: component versions to the canary group, a health gate, then
the fleet group; and the way back.

1. Canary: revise the canary group's latest deployment with the new versions (a no-op if it already
   has them, e.g. after ``cdk deploy`` without ``promote``).
2. Gate: every core device of the canary group must report the deployment SUCCEEDED, run the new
   versions (RUNNING/FINISHED, none BROKEN), and send metrics received after the deployment was
   created with a finite ``hybrid_rmse`` (at most ``--max-rmse`` when given), within ``--timeout``.
   A failed device, a cancelled deployment or the timeout aborts: the canary group gets the previous
   deployment's components back, and the fleet is not touched.
3. Fleet: revise the fleet group's deployment the same way; ``--wait`` gates on it too.

Canaries are only in the canary group (the provisioning hook puts each device in exactly one group),
so the two deployments never pin two versions of one component on one device.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from hybridstream.fleet import deployments as dep
from hybridstream.fleet import metrics as fleet_metrics
from hybridstream.fleet.outputs import StackOutputs
from hybridstream.fleet.session import AwsContext, FleetError


@dataclass
class Clock:
    """Monotonic time and sleep (tests pass a fake one)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class GateResult:
    ok: bool
    reason: str = ""
    timed_out: bool = False
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RolloutResult:
    status: str  # promoted | canary-failed | canary-timeout | fleet-failed | fleet-timeout | fleet-started
    versions: dict[str, str]
    canary_deployment: str | None = None
    fleet_deployment: str | None = None
    restored: dict[str, str] = field(default_factory=dict)  # group -> restoring deployment id
    reason: str = ""
    gate: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("promoted", "fleet-started")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "versions": self.versions,
            "canary_deployment": self.canary_deployment,
            "fleet_deployment": self.fleet_deployment,
            "restored": self.restored,
            "reason": self.reason,
            "gate": self.gate,
        }


def parse_versions(specs: list[str]) -> dict[str, str]:
    """``--version`` values: ``Component=VERSION`` (short or full name) or a bare VERSION (EdgeApp).

    >>> parse_versions(["1.0.7", "hybridstream.KafkaBroker=1.0.3"])
    {'EdgeApp': '1.0.7', 'hybridstream.KafkaBroker': '1.0.3'}
    """
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, version = spec.partition("=")
        if not sep:
            name, version = "EdgeApp", spec
        if not name or not version:
            raise FleetError(f"--version {spec!r}: expected COMPONENT=VERSION or VERSION")
        out[name] = version
    return out


def resolve(outputs: StackOutputs, base: dep.Deployment, requested: dict[str, str]) -> dict[str, str]:
    """Full component name -> version: ``requested`` if given, else every ``*Version`` output."""
    wanted = requested or outputs.component_versions()
    if not wanted:
        raise FleetError(f"stack {outputs.stack_name} has no <Component>Version outputs: pass --version")
    known = {name.rsplit(".", 1)[-1]: name for name in base.components}
    prefix = next(iter(base.components), "hybridstream.x").rsplit(".", 1)[0]
    out = {}
    for name, version in wanted.items():
        full = name if "." in name else known.get(name, f"{prefix}.{name}")
        if requested and full not in base.components:
            raise FleetError(
                f"component {name} is not in the deployment of {base.target_arn.rsplit('/', 1)[-1]} "
                f"(it has {', '.join(sorted(base.components)) or 'none'})"
            )
        out[full] = version
    return out


class Rollout:
    """One staged rollout (or abort) against one stack."""

    def __init__(
        self,
        ctx: AwsContext,
        outputs: StackOutputs,
        *,
        clock: Clock | None = None,
        poll_seconds: float = 15.0,
        progress: TextIO | None = None,
    ) -> None:
        self.ctx = ctx
        self.outputs = outputs
        self.gg = ctx.client("greengrassv2")
        self.clock = clock or Clock()
        self.poll = poll_seconds
        self.out = progress if progress is not None else sys.stderr

    # -- helpers ----------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _base(self, group: str, arn: str) -> dep.Deployment:
        base = dep.latest(self.gg, arn)
        if base is None:
            raise FleetError(f"the {group} group has no deployment yet: run `cdk deploy` first (it creates them)")
        return base

    def _stage(self, group: str, base: dep.Deployment, versions: dict[str, str]) -> tuple[str, str | None]:
        """Revise ``base`` unless it has ``versions``: (deployment id to gate on, deployment to restore or None)."""
        if all(base.versions().get(n) == v for n, v in versions.items()):
            self._say(f"{group}: deployment {base.deployment_id} already has these versions")
            history = [d["deploymentId"] for d in dep.list_all(self.gg, base.target_arn)]
            i = history.index(base.deployment_id) if base.deployment_id in history else -1
            previous = history[i - 1] if i > 0 else None
            if base.by_cli and base.tags.get(dep.PREVIOUS):
                previous = base.tags[dep.PREVIOUS]
            return base.deployment_id, previous
        new_id = dep.revise(self.gg, base, versions, {dep.ACTION: "rollout", dep.PREVIOUS: base.deployment_id})
        old = base.versions()
        changes = ", ".join(f"{n} {old.get(n, '-')} -> {v}" for n, v in versions.items() if old.get(n) != v)
        self._say(f"{group}: deployment {new_id} created ({changes})")
        return new_id, base.deployment_id

    def _restore(self, group: str, deployment_id: str, previous: str | None) -> str | None:
        failed = dep.get(self.gg, deployment_id)
        if previous is None:
            dep.cancel(self.gg, deployment_id)
            self._say(f"{group}: cancelled {deployment_id}; no earlier deployment to put back")
            return None
        restored = dep.restore(self.gg, failed, previous)
        self._say(f"{group}: cancelled {deployment_id}, previous versions back in deployment {restored}")
        return restored

    # -- the gate ---------------------------------------------------------------------------
    def gate(
        self,
        group: str,
        arn: str,
        deployment_id: str,
        versions: dict[str, str],
        timeout: float,
        *,
        metrics_gate: bool = True,
        max_rmse: float | None = None,
        devices: list[dict[str, Any]] | None = None,
    ) -> GateResult:
        devices = devices if devices is not None else dep.core_devices(self.gg, arn)
        names = [d["coreDeviceThingName"] for d in devices]
        s3 = self.ctx.client("s3") if metrics_gate else None
        started = self.clock.now()
        while True:
            deployment = dep.get(self.gg, deployment_id)
            if deployment.status in ("CANCELED", "FAILED"):
                return GateResult(False, f"deployment {deployment_id} is {deployment.status}")
            report: dict[str, dict[str, Any]] = {}
            for thing in names:
                row: dict[str, Any] = {"deployment": "PENDING", "components": "", "metrics": ""}
                entry = next((e for e in dep.effective(self.gg, thing) if e["deploymentId"] == deployment_id), None)
                if entry is not None:
                    row["deployment"] = entry["coreDeviceExecutionStatus"]
                    if row["deployment"] in dep.DEVICE_FAILED:
                        reason = entry.get("reason") or row["deployment"]
                        return GateResult(False, f"{thing}: deployment {row['deployment']}: {reason}", devices=report)
                ready = row["deployment"] in dep.DEVICE_DONE
                if ready:
                    comps = dep.installed(self.gg, thing)
                    for name, version in versions.items():
                        have = comps.get(name, {})
                        if have.get("state") in dep.COMPONENT_FAILED:
                            return GateResult(False, f"{thing}: {name} {have.get('version')} is BROKEN", devices=report)
                        if have.get("version") != version or have.get("state") not in dep.COMPONENT_OK:
                            ready = False
                            row["components"] = f"{name} {have.get('version', '-')} {have.get('state', '-')}"
                            break
                    else:
                        row["components"] = "ok"
                if ready and s3 is not None:
                    message = fleet_metrics.latest(s3, self.outputs, thing)
                    rmse = fleet_metrics.hybrid_rmse(message)
                    if not fleet_metrics.fresh(message, deployment.created):
                        row["metrics"], ready = "no fresh metrics", False
                    elif rmse is None:
                        row["metrics"], ready = f"hybrid_rmse is {(message or {}).get('hybrid_rmse')!r}", False
                    elif max_rmse is not None and rmse > max_rmse:
                        return GateResult(False, f"{thing}: hybrid_rmse {rmse:.3f} > {max_rmse}", devices=report)
                    else:
                        row["metrics"] = "ok"
                row["ready"] = ready
                report[thing] = row
            done = sum(1 for r in report.values() if r["ready"])
            elapsed = self.clock.now() - started
            deployed = sum(1 for r in report.values() if r["deployment"] in dep.DEVICE_DONE)
            self._say(
                f"{group}: {deployed}/{len(names)} deployed, {done}/{len(names)} healthy"
                f"  [{elapsed:.0f}s / {timeout:.0f}s]"
            )
            if done == len(names):
                return GateResult(True, devices=report)
            if elapsed >= timeout:
                waiting = ", ".join(
                    f"{t} ({r['deployment']}{'; ' + r['metrics'] if r['metrics'] else ''})"
                    for t, r in report.items()
                    if not r["ready"]
                )
                return GateResult(False, f"timed out after {timeout:.0f}s waiting for {waiting}", True, report)
            self.clock.sleep(self.poll)

    # -- commands ---------------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> RolloutResult:
        """:meth:`_run`; Ctrl-C says what stays deployed and how to go back."""
        try:
            return self._run(*args, **kwargs)
        except KeyboardInterrupt:
            self._say(
                "interrupted: deployments already created stay (see `hybridstream fleet status`); "
                "`hybridstream fleet abort` puts the previous versions back"
            )
            raise

    def _run(
        self,
        requested: dict[str, str] | None = None,
        *,
        canary: bool = True,
        wait: bool = False,
        timeout: float = 1800.0,
        fleet_timeout: float = 3600.0,
        metrics_gate: bool = True,
        max_rmse: float | None = None,
    ) -> RolloutResult:
        canary_arn, fleet_arn = self.outputs.canary_group_arn, self.outputs.fleet_group_arn
        if metrics_gate and not fleet_metrics.available(self.outputs):
            self._say(
                f"stack {self.outputs.stack_name} keeps no per-device metrics (no DeviceMetricsKey output): "
                "gating on deployment status and component states only"
            )
            metrics_gate = False
        fleet_base = self._base("fleet", fleet_arn)
        canary_base = self._base("canary", canary_arn)
        versions = resolve(self.outputs, canary_base if canary else fleet_base, requested or {})
        result = RolloutResult("fleet-started", versions)
        if canary:
            devices = dep.core_devices(self.gg, canary_arn)
            if not devices:
                raise FleetError(
                    f"the canary group {self.outputs.require('CanaryThingGroup')} has no core devices: enrol one "
                    "(`hybridstream fleet enroll --group canary ...`) or roll out with --no-canary"
                )
            canary_id, previous = self._stage("canary", canary_base, versions)
            result.canary_deployment = canary_id
            gate = self.gate(
                "canary",
                canary_arn,
                canary_id,
                versions,
                timeout,
                metrics_gate=metrics_gate,
                max_rmse=max_rmse,
                devices=devices,
            )
            result.gate["canary"] = gate.devices
            if not gate.ok:
                result.status = "canary-timeout" if gate.timed_out else "canary-failed"
                result.reason = gate.reason
                self._say(f"canary gate failed: {gate.reason}")
                restored = self._restore("canary", canary_id, previous)
                if restored:
                    result.restored["canary"] = restored
                return result
            self._say("canary gate passed")
        else:
            self._say("--no-canary: canary and fleet get the new versions at once, without a gate")
            canary_id, _ = self._stage("canary", canary_base, versions)
            result.canary_deployment = canary_id
        fleet_id, fleet_previous = self._stage("fleet", fleet_base, versions)
        result.fleet_deployment = fleet_id
        if wait:
            gate = self.gate(
                "fleet", fleet_arn, fleet_id, versions, fleet_timeout, metrics_gate=metrics_gate, max_rmse=max_rmse
            )
            result.gate["fleet"] = gate.devices
            if not gate.ok and not gate.timed_out:
                result.status, result.reason = "fleet-failed", gate.reason
                self._say(f"fleet rollout failed: {gate.reason}")
                restored = self._restore("fleet", fleet_id, fleet_previous)
                if restored:
                    result.restored["fleet"] = restored
                return result
            if not gate.ok:
                result.status, result.reason = "fleet-timeout", gate.reason
                self._say(f"fleet: {gate.reason}; the rollout goes on (`hybridstream fleet abort` puts it back)")
                return result
            result.status = "promoted"
        self._pin_hint(versions)
        return result

    def _pin_hint(self, versions: dict[str, str]) -> None:
        """What to put into cdk.json so the next `cdk deploy` keeps the fleet on this release."""
        release = self.outputs.get("ComponentRelease")
        try:
            pinned = json.loads(release).get("fleet_component_versions", {}) if release else {}
        except ValueError:
            pinned = {}
        if pinned and all(pinned.get(n) == v for n, v in versions.items()):
            self._say("pin it for `cdk deploy`: put the ComponentRelease output into cdk.json's context:")
            self._say(release or "")
        else:
            self._say(
                "pin it for `cdk deploy`: fleet_component_versions below, with fleet_artifacts from the "
                "ComponentRelease output of the deploy that built these versions:"
            )
            self._say(json.dumps({"fleet_component_versions": versions}))

    def abort(self) -> dict[str, str]:
        """Cancel the CLI rollout on each group and deploy what it replaced; group -> restoring deployment."""
        restored: dict[str, str] = {}
        for group, arn in (("fleet", self.outputs.fleet_group_arn), ("canary", self.outputs.canary_group_arn)):
            current = dep.latest(self.gg, arn)
            if current is None or not current.by_cli or current.tags.get(dep.ACTION) != "rollout":
                self._say(f"{group}: no rollout by this CLI to abort")
                continue
            previous = current.tags.get(dep.PREVIOUS)
            if not previous:
                self._say(f"{group}: rollout {current.deployment_id} does not say what it replaced: cancelling only")
                dep.cancel(self.gg, current.deployment_id)
                continue
            restored[group] = dep.restore(self.gg, current, previous)
            self._say(
                f"{group}: cancelled {current.deployment_id}; {restored[group]} deploys {previous}'s versions again"
            )
        return restored
