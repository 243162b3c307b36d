"""``fleet status``: per group, its core devices with health, effective deployment, component
versions, the models they serve and their rolling accuracy, and when they were last seen; plus the
enrolled devices that have not provisioned yet."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hybridstream.fleet import deployments as dep
from hybridstream.fleet import metrics as fleet_metrics
from hybridstream.fleet.outputs import StackOutputs
from hybridstream.fleet.session import AwsContext


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


def enrolled(ctx: AwsContext, outputs: StackOutputs) -> dict[str, dict[str, str]]:
    """thingName -> enrollment item (all pages of the EnrollmentTable)."""
    table = outputs.get("EnrollmentTable")
    if not table:
        return {}
    ddb = ctx.client("dynamodb")
    out: dict[str, dict[str, str]] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for raw in page.get("Items", []):
            item = {k: next(iter(v.values())) for k, v in raw.items()}
            out[item["thingName"]] = item
        if not page.get("LastEvaluatedKey"):
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def device(ctx: AwsContext, outputs: StackOutputs, core: dict[str, Any], group_arn: str) -> dict[str, Any]:
    gg = ctx.client("greengrassv2")
    thing = core["coreDeviceThingName"]
    effective = sorted(dep.effective(gg, thing), key=lambda e: e.get("creationTimestamp") or 0, reverse=True)
    mine = next((e for e in effective if e.get("targetArn") == group_arn), effective[0] if effective else None)
    message = fleet_metrics.latest(ctx.client("s3"), outputs, thing)
    seen = [t for t in (core.get("lastStatusUpdateTimestamp"), (message or {}).get("received")) if t]
    return {
        "thing": thing,
        "health": core.get("status", ""),
        "architecture": core.get("architecture", ""),
        "deployment": {
            "id": mine.get("deploymentId"),
            "name": mine.get("deploymentName"),
            "status": mine.get("coreDeviceExecutionStatus"),
            "reason": mine.get("reason", ""),
        }
        if mine
        else None,
        "components": dep.installed(gg, thing),
        "models": (message or {}).get("models") or {},
        "metrics": {
            k: message.get(k) for k in ("hybrid_rmse", "batch_rmse", "speed_rmse", "hybrid_mae", "records_per_s")
        }
        if message
        else {},
        "metrics_at": _iso((message or {}).get("received")),
        "last_seen": _iso(max(seen)) if seen else None,
    }


def gather(ctx: AwsContext, outputs: StackOutputs) -> dict[str, Any]:
    """Everything ``fleet status --json`` prints."""
    gg = ctx.client("greengrassv2")
    allow = enrolled(ctx, outputs)
    groups: dict[str, Any] = {}
    seen: set[str] = set()
    for group, output in (("canary", "CanaryThingGroup"), ("fleet", "FleetThingGroup")):
        arn = outputs.thing_group_arn(output)
        latest = dep.latest(gg, arn)
        rows = [device(ctx, outputs, core, arn) for core in dep.core_devices(gg, arn)]
        seen.update(r["thing"] for r in rows)
        groups[group] = {
            "thing_group": outputs.require(output),
            "deployment": {"id": latest.deployment_id, "status": latest.status, "versions": latest.versions()}
            if latest
            else None,
            "devices": rows,
        }
    pending = [
        {"thing": name, "group": item.get("group"), "arch": item.get("arch"), "enrolled_at": item.get("enrolledAt")}
        for name, item in sorted(allow.items())
        if name not in seen
    ]
    return {
        "stack": outputs.stack_name,
        "groups": groups,
        "enrolled_not_connected": pending,
        "problems": problems(groups) + unsupported(allow),
    }


def problems(groups: dict[str, Any]) -> list[str]:
    """What needs an operator: a group whose deployment was cancelled or failed (an abort criterion
    fired) delivers nothing to devices added to it later, and no ``cdk deploy`` without changes
    recreates it (https://docs.aws.amazon.com/greengrass/v2/developerguide/cancel-deployments.html)."""
    out = []
    for group, info in groups.items():
        d = info.get("deployment")
        if d and d["status"] in dep.GROUP_STOPPED:
            out.append(
                f"the {group} group's deployment {d['id']} is {d['status']}: devices added to {info['thing_group']} "
                f"get nothing. Fix what failed (the DEPLOYMENT column, `hybridstream fleet status --json` has each "
                f"device's reason), then run `hybridstream fleet redeploy --group {group}`"
            )
    return out


def unsupported(allow: dict[str, dict[str, str]]) -> list[str]:
    """Devices enrolled as 32-bit Pis (``arch`` ``arm``) before 32-bit was refused: no component has a
    manifest for them, so each of their deployments fails, and in the canary group that cancels a rollout."""
    return [
        f"{name} was enrolled as a 32-bit Pi (--arch arm), which no component runs on: its deployments fail "
        f"(in the canary group that cancels every rollout). Reinstall it with 64-bit Raspberry Pi OS and enrol it "
        f"again with --arch aarch64, or remove it with `hybridstream fleet cleanup --thing {name}` "
        f'(docs/deploy.md, "Which Pi")'
        for name, item in sorted(allow.items())
        if item.get("arch") == "arm"
    ]


def only(status: dict[str, Any], thing: str) -> dict[str, Any]:
    """``status`` reduced to one thing; FleetError when the fleet does not know it."""
    from hybridstream.fleet.session import FleetError

    groups = {
        name: {**info, "devices": [d for d in info["devices"] if d["thing"] == thing]}
        for name, info in status["groups"].items()
    }
    pending = [p for p in status["enrolled_not_connected"] if p["thing"] == thing]
    if not pending and not any(info["devices"] for info in groups.values()):
        raise FleetError(f"unknown thing {thing}: not a core device of the canary or fleet group, and not enrolled")
    return {**status, "groups": groups, "enrolled_not_connected": pending}  # problems: the groups' own, kept


def table(status: dict[str, Any]) -> str:
    """A terminal table per group."""
    lines: list[str] = []
    for group, info in status["groups"].items():
        d = info["deployment"]
        versions = ", ".join(f"{n.rsplit('.', 1)[-1]} {v}" for n, v in (d or {}).get("versions", {}).items())
        lines.append(f"{group} ({info['thing_group']}): deployment {d['id'] if d else '-'} {versions}".rstrip())
        header = ("THING", "HEALTH", "DEPLOYMENT", "EDGEAPP", "SPEED MODEL", "HYBRID RMSE", "LAST SEEN")
        rows = [header]
        for r in info["devices"]:
            app = next((c["version"] for n, c in r["components"].items() if n.endswith(".EdgeApp")), "-")
            rmse = r["metrics"].get("hybrid_rmse")
            rows.append(
                (
                    r["thing"],
                    r["health"] or "-",
                    (r["deployment"] or {}).get("status") or "-",
                    app,
                    str(r["models"].get("speed") or "-"),
                    f"{rmse:.3f}" if isinstance(rmse, int | float) else "-",
                    (r["last_seen"] or "-")[:19],
                )
            )
        if len(rows) == 1:
            lines.append("  (no core devices)")
        else:
            widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
            lines += ["  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        lines.append("")
    for problem in status.get("problems", []):
        lines.append(f"PROBLEM: {problem}")
    pending = status["enrolled_not_connected"]
    if pending:
        lines.append("enrolled, not connected yet: " + ", ".join(f"{p['thing']} ({p['group']})" for p in pending))
    return "\n".join(lines).rstrip() + "\n"
