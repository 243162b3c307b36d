"""CloudFormation custom resource: on stack delete, detach the stack's IoT policies from every
target (provisioned device certificates, the claim certificate) and delete their non-default
versions, so CloudFormation's DeletePolicy that follows does not fail with
DeleteConflictException (https://docs.aws.amazon.com/iot/latest/apireference/API_DeletePolicy.html:
"a policy cannot be deleted if it has non-default versions or it is attached to any
certificate").

Properties: ``PolicyNames`` (list). Create/Update do nothing. The certificates and things
themselves survive (``hybridstream fleet cleanup`` removes them). Responds to CloudFormation's
pre-signed ``ResponseURL`` itself (no helper library).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from lambdas.shared import cached_client

_clients: dict[str, Any] = {}


def _iot() -> Any:
    return cached_client(_clients, "iot")


def release(policy_name: str) -> dict[str, int]:
    """Detach ``policy_name`` from all its targets and delete its non-default versions."""
    iot = _iot()
    detached = versions = 0
    try:
        marker = None
        while True:
            page = iot.list_targets_for_policy(policyName=policy_name, **({"marker": marker} if marker else {}))
            for target in page.get("targets", []):
                iot.detach_policy(policyName=policy_name, target=target)
                detached += 1
            marker = page.get("nextMarker")
            if not marker:
                break
        for version in iot.list_policy_versions(policyName=policy_name).get("policyVersions", []):
            if not version.get("isDefaultVersion"):
                iot.delete_policy_version(policyName=policy_name, policyVersionId=version["versionId"])
                versions += 1
    except iot.exceptions.ResourceNotFoundException:
        pass  # already gone: nothing to release
    return {"detached": detached, "versions_deleted": versions}


def _respond(event: dict[str, Any], status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": event.get("PhysicalResourceId") or f"{event['LogicalResourceId']}-iot-policies",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (CloudFormation's https URL)
        response.read()


def handler(event: dict[str, Any], context: Any = None) -> None:
    data: dict[str, Any] = {}
    try:
        if event["RequestType"] == "Delete":
            for name in event["ResourceProperties"].get("PolicyNames", []):
                data[name] = release(name)
        print(json.dumps({"request": event["RequestType"], "released": data}, sort_keys=True))
        _respond(event, "SUCCESS", "ok", {})
    except Exception as exc:
        print(json.dumps({"request": event.get("RequestType"), "error": f"{type(exc).__name__}: {exc}"}))
        # a failed detach must not block the stack delete forever: report it, CloudFormation then
        # fails the policy deletion itself with a clear message (docs/deploy.md "Destroy")
        _respond(event, "SUCCESS" if event.get("RequestType") == "Delete" else "FAILED", str(exc), {})
