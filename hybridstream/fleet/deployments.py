"""Greengrass v2 deployments of the fleet's thing groups: read the current one, revise it with new
component versions, restore an earlier one. Shared by ``fleet rollout``, ``abort`` and ``cleanup``.

A thing group has one active deployment: a new deployment for the same target replaces the previous
one, and components it does not list are removed from the devices
(https://docs.aws.amazon.com/greengrass/v2/developerguide/revise-deployments.html). So the CLI always
REVISES: it copies the target's latest deployment (components, their configuration merges, policies,
IoT job configuration: what ``cdk deploy`` set) and changes only component versions. Its deployments
carry tags saying what they are, so ``fleet abort`` knows what to put back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from hybridstream.fleet.session import FleetError, error_code

CREATED_BY = "hybridstream:created-by"
CLI = "fleet-cli"
ACTION = "hybridstream:action"  # rollout | abort
PREVIOUS = "hybridstream:previous-deployment"
DEVICE_FAILED = {"FAILED", "TIMED_OUT", "CANCELED", "REJECTED"}
# A thing group's deployment in one of these reaches no device added to the group later ("core devices
# that you add to the group won't receive that continuous deployment":
# https://docs.aws.amazon.com/greengrass/v2/developerguide/cancel-deployments.html)
GROUP_STOPPED = {"CANCELED", "FAILED"}
DEVICE_DONE = {"SUCCEEDED", "COMPLETED"}
COMPONENT_FAILED = {"BROKEN"}
COMPONENT_OK = {"RUNNING", "FINISHED"}


@dataclass
class Deployment:
    """What get_deployment says about one deployment (the fields the CLI uses)."""

    deployment_id: str
    target_arn: str
    name: str
    status: str
    created: Any  # datetime
    components: dict[str, dict[str, Any]]
    policies: dict[str, Any] | None
    job_config: dict[str, Any] | None
    tags: dict[str, str]

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Deployment:
        return cls(
            deployment_id=d["deploymentId"],
            target_arn=d.get("targetArn", ""),
            name=d.get("deploymentName") or "",
            status=d.get("deploymentStatus", ""),
            created=d.get("creationTimestamp"),
            components=d.get("components") or {},
            policies=d.get("deploymentPolicies"),
            job_config=d.get("iotJobConfiguration"),
            tags=d.get("tags") or {},
        )

    def versions(self) -> dict[str, str]:
        return {name: spec.get("componentVersion", "") for name, spec in self.components.items()}

    @property
    def by_cli(self) -> bool:
        return self.tags.get(CREATED_BY) == CLI


def latest(gg: Any, target_arn: str) -> Deployment | None:
    """The target's latest deployment (None if it has none)."""
    page = gg.list_deployments(targetArn=target_arn, historyFilter="LATEST_ONLY")
    items = page.get("deployments") or []
    if not items:
        return None
    return Deployment.from_api(gg.get_deployment(deploymentId=items[0]["deploymentId"]))


def get(gg: Any, deployment_id: str) -> Deployment:
    return Deployment.from_api(gg.get_deployment(deploymentId=deployment_id))


def revise(
    gg: Any, base: Deployment, versions: dict[str, str], tags: dict[str, str], components: dict | None = None
) -> str:
    """Create a revision of ``base`` with ``versions`` (full component name -> version); its id.

    ``components`` replaces the whole component map instead (abort: the previous deployment's)."""
    specs = copy.deepcopy(components if components is not None else base.components)
    for name, version in versions.items():
        specs.setdefault(name, {})["componentVersion"] = version
    kwargs: dict[str, Any] = {
        "targetArn": base.target_arn,
        "deploymentName": base.name or "hybridstream",
        "components": specs,
        "tags": {CREATED_BY: CLI, **tags},
    }
    if base.policies:
        kwargs["deploymentPolicies"] = base.policies
    if base.job_config:
        kwargs["iotJobConfiguration"] = base.job_config
    return gg.create_deployment(**kwargs)["deploymentId"]


def cancel(gg: Any, deployment_id: str) -> bool:
    """Cancel a deployment; False if it was no longer active (nothing to cancel)."""
    from botocore.exceptions import ClientError

    try:
        gg.cancel_deployment(deploymentId=deployment_id)
    except ClientError as exc:
        if error_code(exc) in ("ConflictException", "ResourceNotFoundException"):
            return False
        raise
    return True


def restore(gg: Any, failed: Deployment, previous_id: str) -> str:
    """Cancel ``failed`` and deploy the components of ``previous_id`` again (a new revision); its id."""
    previous = get(gg, previous_id)
    if previous.target_arn != failed.target_arn:
        raise FleetError(f"deployment {previous_id} targets {previous.target_arn}, not {failed.target_arn}")
    cancel(gg, failed.deployment_id)
    return revise(gg, failed, {}, {ACTION: "abort", PREVIOUS: failed.deployment_id}, components=previous.components)


def list_all(gg: Any, target_arn: str) -> list[dict[str, Any]]:
    """Every deployment of a target (all revisions), oldest first."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"targetArn": target_arn, "historyFilter": "ALL"}
        if token:
            kwargs["nextToken"] = token
        page = gg.list_deployments(**kwargs)
        out.extend(page.get("deployments") or [])
        token = page.get("nextToken")
        if not token:
            break
    return sorted(out, key=lambda d: d.get("creationTimestamp") or 0)


def core_devices(gg: Any, group_arn: str) -> list[dict[str, Any]]:
    """Core devices of a thing group (all pages)."""
    out: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"thingGroupArn": group_arn}
        if token:
            kwargs["nextToken"] = token
        page = gg.list_core_devices(**kwargs)
        out.extend(page.get("coreDevices") or [])
        token = page.get("nextToken")
        if not token:
            break
    return out


def effective(gg: Any, thing: str) -> list[dict[str, Any]]:
    return gg.list_effective_deployments(coreDeviceThingName=thing).get("effectiveDeployments") or []


def installed(gg: Any, thing: str) -> dict[str, dict[str, Any]]:
    """Component name -> {version, state} installed on a core device."""
    items = gg.list_installed_components(coreDeviceThingName=thing).get("installedComponents") or []
    return {
        c["componentName"]: {"version": c.get("componentVersion", ""), "state": c.get("lifecycleState", "")}
        for c in items
        if "componentName" in c
    }


def redeploy(gg: Any, target_arn: str) -> tuple[Deployment, str]:
    """A new revision of the target's latest deployment, same components, configuration and policies
    (what recovers a thing group whose deployment was cancelled); (the copied deployment, the new id)."""
    base = latest(gg, target_arn)
    if base is None:
        raise FleetError(f"{target_arn} has no deployment to redeploy: run `cdk deploy`")
    new_id = revise(gg, base, {}, {ACTION: "redeploy", PREVIOUS: base.deployment_id})
    return base, new_id
