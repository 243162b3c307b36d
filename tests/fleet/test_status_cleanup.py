"""``fleet status`` (table and JSON) and ``fleet cleanup`` (what must run before ``cdk destroy``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from hybridstream.fleet import claim
from hybridstream.fleet.session import FleetError
from tests.fleet.conftest import (
    CANARY_ARN,
    CANARY_GROUP,
    FLEET_ARN,
    FLEET_GROUP,
    OLD,
    PREFIX,
    REGION,
    STACK,
    TABLE,
    VERSIONS,
    put_metrics,
    run_cli,
)


def enroll(ctx, capsys, tmp_path, name, *extra):
    code, _, err = run_cli(
        ["fleet", "enroll", "--thing-name", name, "--out", str(tmp_path / f"{name}.tar"), *extra],
        ctx=ctx,
        capsys=capsys,
    )
    assert code == 0, err


def status_calls(gg):
    canary = gg.deployment("canary-2", CANARY_ARN, VERSIONS)
    gg.latest(CANARY_ARN, canary)
    gg.core_devices(CANARY_ARN, [f"{PREFIX}-c1"])
    gg.effective(f"{PREFIX}-c1", "canary-2", "SUCCEEDED")
    gg.installed(f"{PREFIX}-c1", VERSIONS)
    gg.latest(FLEET_ARN, gg.deployment("fleet-1", FLEET_ARN, OLD))
    gg.core_devices(FLEET_ARN, [f"{PREFIX}-f1"], status="UNHEALTHY")
    gg.effective(f"{PREFIX}-f1", "fleet-1", "FAILED", target=FLEET_ARN, reason="EdgeApp BROKEN")
    gg.installed(f"{PREFIX}-f1", OLD, state="BROKEN")


def test_status_json_is_complete(ctx, gg, capsys, tmp_path):
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-c1", "--group", "canary")
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-later")
    put_metrics(f"{PREFIX}-c1", hybrid_rmse=0.3125)
    status_calls(gg)

    code, out, err = run_cli(["fleet", "status", "--json"], ctx=ctx, capsys=capsys)

    assert code == 0, err
    gg.stubber.assert_no_pending_responses()
    data = json.loads(out)
    c1 = data["groups"]["canary"]["devices"][0]
    assert c1["thing"] == f"{PREFIX}-c1" and c1["health"] == "HEALTHY"
    assert c1["deployment"]["status"] == "SUCCEEDED" and c1["deployment"]["id"] == "canary-2"
    assert c1["components"][f"{PREFIX}.EdgeApp"] == {"version": VERSIONS["EdgeApp"], "state": "RUNNING"}
    assert c1["models"] == {"batch": "b-1", "speed": "s-7"} and c1["metrics"]["hybrid_rmse"] == 0.3125
    assert c1["last_seen"] and c1["metrics_at"]
    f1 = data["groups"]["fleet"]["devices"][0]
    assert f1["health"] == "UNHEALTHY" and f1["deployment"]["reason"] == "EdgeApp BROKEN" and f1["metrics"] == {}
    assert data["groups"]["fleet"]["deployment"]["versions"][f"{PREFIX}.EdgeApp"] == OLD["EdgeApp"]
    assert [p["thing"] for p in data["enrolled_not_connected"]] == [f"{PREFIX}-later"]


def test_a_cancelled_group_deployment_is_flagged_and_redeploy_recovers_it(ctx, gg, capsys):
    """Issue 20, item 2. When an abort criterion cancels a thing group's deployment, "core devices that you
    add to the group won't receive that continuous deployment"
    (https://docs.aws.amazon.com/greengrass/v2/developerguide/cancel-deployments.html): ``fleet status``
    exits 4 saying so, and ``fleet redeploy --group`` creates a revision of it (same components,
    configuration, policies, job configuration), which a new device then receives."""
    from botocore.stub import ANY

    canceled = gg.deployment("fleet-1", FLEET_ARN, OLD, status="CANCELED")
    gg.latest(CANARY_ARN, gg.deployment("canary-1", CANARY_ARN, OLD, status="ACTIVE"))
    gg.core_devices(CANARY_ARN, [])
    gg.latest(FLEET_ARN, canceled)
    gg.core_devices(FLEET_ARN, [])
    code, out, _ = run_cli(["fleet", "status"], ctx=ctx, capsys=capsys)
    assert code == 4
    assert "PROBLEM: the fleet group's deployment fleet-1 is CANCELED: devices added to" in out
    assert "hybridstream fleet redeploy --group fleet" in out and "canary group" not in out

    gg.latest(FLEET_ARN, canceled)
    expected = {
        "targetArn": FLEET_ARN,
        "deploymentName": canceled["deploymentName"],
        "components": canceled["components"],
        "tags": {"hybridstream:created-by": "fleet-cli", "hybridstream:action": "redeploy",
                 "hybridstream:previous-deployment": "fleet-1"},
        "deploymentPolicies": ANY,
        "iotJobConfiguration": canceled["iotJobConfiguration"],
    }  # fmt: skip
    gg.create("fleet-2", expected)
    code, out, err = run_cli(["fleet", "redeploy", "--group", "fleet"], ctx=ctx, capsys=capsys)
    assert code == 0, err
    assert "fleet: deployment fleet-2 deploys fleet-1's components again (that one was CANCELED)" in out
    gg.stubber.assert_no_pending_responses()


def test_a_32_bit_pi_enrolled_before_32_bit_was_refused_is_a_problem(ctx, gg, capsys):
    """Since 2026-12-07 no component has an ``arm`` manifest (docs/deploy.md, "Which Pi"): a Pi enrolled with
    ``--arch arm`` before then fails every deployment, so ``fleet status`` names it and exits 4."""
    item = {"thingName": f"{PREFIX}-old32", "serial": "old32", "group": "canary", "arch": "arm",
            "provisioning": "fleet", "enrolledAt": "2026-12-01T00:00:00Z"}  # fmt: skip
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=TABLE, Item={k: {"S": v} for k, v in item.items()})
    status_calls(gg)
    code, out, _ = run_cli(["fleet", "status"], ctx=ctx, capsys=capsys)
    assert code == 4
    assert f"PROBLEM: {PREFIX}-old32 was enrolled as a 32-bit Pi (--arch arm)" in out
    assert f"hybridstream fleet cleanup --thing {PREFIX}-old32" in out


def test_status_table(ctx, gg, capsys):
    status_calls(gg)
    code, out, _ = run_cli(["fleet", "status"], ctx=ctx, capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"canary ({CANARY_GROUP}): deployment canary-2 EdgeApp 1.0.200")
    row = next(line for line in lines if line.strip().startswith(f"{PREFIX}-c1"))
    assert "HEALTHY" in row and "SUCCEEDED" in row and VERSIONS["EdgeApp"] in row
    row = next(line for line in lines if line.strip().startswith(f"{PREFIX}-f1"))
    assert "UNHEALTHY" in row and "FAILED" in row


def test_status_of_one_thing_and_an_unknown_one(ctx, gg, capsys):
    status_calls(gg)
    code, out, _ = run_cli(["fleet", "status", "--thing", f"{PREFIX}-f1", "--json"], ctx=ctx, capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert (
        data["groups"]["canary"]["devices"] == [] and data["groups"]["fleet"]["devices"][0]["thing"] == f"{PREFIX}-f1"
    )
    status_calls(gg)
    code, _, err = run_cli(["fleet", "status", "--thing", f"{PREFIX}-nope"], ctx=ctx, capsys=capsys)
    assert code == 1 and "unknown thing hybridstream-nope" in err


def test_cleanup_removes_devices_deployments_and_claim(ctx, gg, capsys, tmp_path):
    iot = boto3.client("iot", region_name=REGION)
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-p1")  # claim: creates the claim certificate
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-d1", "--device-cert", "--group", "canary")
    # a device that provisioned by claim: thing in the fleet group with its own certificate + device policy
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_thing(thingName=f"{PREFIX}-p1")
    iot.attach_thing_principal(thingName=f"{PREFIX}-p1", principal=cert["certificateArn"])
    iot.attach_policy(policyName=f"{PREFIX}-device", target=cert["certificateArn"])
    iot.add_thing_to_thing_group(thingGroupName=FLEET_GROUP, thingName=f"{PREFIX}-p1")
    iot.create_thing(thingName="someone-else")  # not ours: kept
    iot.add_thing_to_thing_group(thingGroupName=FLEET_GROUP, thingName="someone-else")
    # greengrassv2: the two core devices, then the CLI's deployments on both groups
    for thing in (f"{PREFIX}-d1", f"{PREFIX}-p1"):
        gg.stubber.add_response("delete_core_device", {}, {"coreDeviceThingName": thing})
    canary_cli = gg.deployment(
        "canary-2",
        CANARY_ARN,
        VERSIONS,
        tags={"hybridstream:created-by": "fleet-cli", "hybridstream:action": "rollout"},
    )
    canary_cdk = gg.deployment("canary-1", CANARY_ARN, OLD, created=datetime.now(UTC) - timedelta(days=1))
    gg.history(CANARY_ARN, [canary_cdk, canary_cli])
    gg.get(canary_cdk)
    gg.get(canary_cli)
    gg.cancel("canary-2")
    gg.stubber.add_response("delete_deployment", {}, {"deploymentId": "canary-2"})
    gg.history(FLEET_ARN, [])

    code, out, err = run_cli(["fleet", "cleanup", "--yes"], ctx=ctx, capsys=capsys)

    assert code == 0, err
    gg.stubber.assert_no_pending_responses()
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["someone-else"]
    assert iot.list_certificates()["certificates"] == []  # device certs and the claim certificate
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName=TABLE)["Count"] == 0
    names = [p["Name"] for p in boto3.client("ssm", region_name=REGION).describe_parameters()["Parameters"]]
    assert claim.cert_parameter(STACK) not in names and claim.key_parameter(STACK) not in names
    assert "removed deployment canary-2 (rollout)" in out and "removed thing hybridstream-p1" in out
    assert "`cdk destroy` can run now" in out
    # nothing left: a second cleanup has nothing to do and succeeds
    gg.history(CANARY_ARN, [canary_cdk])
    gg.get(canary_cdk)
    gg.history(FLEET_ARN, [])
    code, out, err = run_cli(["fleet", "cleanup", "--yes"], ctx=ctx, capsys=capsys)
    assert code == 0 and "removed" not in out, out + err


def test_cleanup_one_thing_and_unknown_thing(ctx, gg, capsys, tmp_path):
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-d2", "--device-cert")
    gg.stubber.add_client_error("delete_core_device", "ResourceNotFoundException", "no core device", 404)
    code, out, err = run_cli(["fleet", "cleanup", "--thing", f"{PREFIX}-d2", "--yes"], ctx=ctx, capsys=capsys)
    assert code == 0, err
    assert "removed thing hybridstream-d2" in out and "removed enrollment of hybridstream-d2" in out
    code, _, err = run_cli(["fleet", "cleanup", "--thing", f"{PREFIX}-ghost", "--yes"], ctx=ctx, capsys=capsys)
    assert code == 1 and "unknown thing hybridstream-ghost" in err


def test_cleanup_needs_confirmation_without_a_terminal(ctx, capsys):
    code, _, err = run_cli(["fleet", "cleanup"], ctx=ctx, capsys=capsys)
    assert code == 1 and "pass --yes" in err


def test_cleanup_failure_is_reported_and_the_rest_still_runs(ctx, gg, capsys, tmp_path):
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-d3", "--device-cert")
    gg.stubber.add_client_error("delete_core_device", "AccessDeniedException", "not allowed", 403)
    gg.history(CANARY_ARN, [])
    gg.history(FLEET_ARN, [])
    code, out, err = run_cli(["fleet", "cleanup", "--yes"], ctx=ctx, capsys=capsys)
    assert code == 1
    assert "FAILED removing hybridstream-d3: access denied to DeleteCoreDevice" in out
    assert "cleanup incomplete (1 step(s) failed, run it again)" in err
    gg.stubber.assert_no_pending_responses()  # deployments and claim were still looked at


class _PropagatingIot:
    """moto's IoT, except that a detach propagates as AWS documents it: asynchronously
    ("It might take several seconds for the detachment to propagate",
    https://docs.aws.amazon.com/iot/latest/apireference/API_DetachThingPrincipal.html). For ``lag`` reads
    after a detach, ListPrincipalThings still lists the thing, and the first DeleteCertificate after it
    answers DeleteConflictException, as IoT does for a certificate still attached to a thing."""

    def __init__(self, real, lag: int = 2) -> None:
        self._real, self._lag, self._stale, self._conflicts = real, lag, {}, set()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def detach_thing_principal(self, thingName, principal):  # noqa: N803 (boto3's names)
        self._real.detach_thing_principal(thingName=thingName, principal=principal)
        self._stale[principal] = [thingName, self._lag]
        self._conflicts.add(principal.rsplit("/", 1)[-1])

    def list_principal_things(self, principal):
        stale = self._stale.get(principal)
        if stale and stale[1] > 0:
            stale[1] -= 1
            return {"things": [stale[0]]}
        return self._real.list_principal_things(principal=principal)

    def delete_certificate(self, certificateId, forceDelete=False):  # noqa: N803
        from botocore.exceptions import ClientError

        if certificateId in self._conflicts:
            self._conflicts.discard(certificateId)
            error = {"Code": "DeleteConflictException", "Message": "Certificate is attached to one or more things"}
            raise ClientError({"Error": error}, "DeleteCertificate")
        return self._real.delete_certificate(certificateId=certificateId, forceDelete=forceDelete)


def test_one_cleanup_suffices_while_a_detach_propagates(ctx, gg, capsys, tmp_path, monkeypatch):
    """Issue 20, item 4: DeleteCertificate right after DetachThingPrincipal fails with
    DeleteConflictException until the detach has propagated; cleanup waits (polls with backoff) and
    retries the conflict, so one run removes the device."""
    sleeps: list[float] = []
    monkeypatch.setattr(claim, "_sleep", sleeps.append)
    enroll(ctx, capsys, tmp_path, f"{PREFIX}-d4", "--device-cert")
    ctx.clients["iot"] = _PropagatingIot(boto3.client("iot", region_name=REGION))
    gg.stubber.add_response("delete_core_device", {}, {"coreDeviceThingName": f"{PREFIX}-d4"})
    code, out, err = run_cli(["fleet", "cleanup", "--thing", f"{PREFIX}-d4", "--yes"], ctx=ctx, capsys=capsys)
    assert code == 0, out + err
    assert "removed certificate" in out and f"removed thing {PREFIX}-d4" in out
    iot = boto3.client("iot", region_name=REGION)
    assert iot.list_certificates()["certificates"] == [] and iot.list_things()["things"] == []
    # two stale ListPrincipalThings reads (the detach loop's, then the wait's first), then one conflict
    assert sleeps == [0.5, 0.5]


def test_a_detach_that_never_propagates_is_a_clear_error(aws, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(claim, "_clock", lambda: clock[0])
    monkeypatch.setattr(claim, "_sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    iot = _PropagatingIot(boto3.client("iot", region_name=REGION), lag=10**6)
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_thing(thingName="stuck")
    iot.attach_thing_principal(thingName="stuck", principal=cert["certificateArn"])
    iot.detach_thing_principal(thingName="stuck", principal=cert["certificateArn"])
    with pytest.raises(FleetError, match="is still attached to stuck 60 s after the detach: run the command again"):
        claim.delete_certificate(iot, cert["certificateId"], cert["certificateArn"])
    assert clock[0] <= claim.DETACH_TIMEOUT
