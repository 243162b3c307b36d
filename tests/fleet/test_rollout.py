"""``fleet rollout`` / ``fleet abort`` against a Stubber'd greengrassv2 (real API shapes) and moto S3
(the canaries' metrics): canary success then fleet, canary failure (abort, previous versions back),
timeout (fake clock), abort of a running rollout, and the refusals that create nothing.

Greengrass rules encoded here:
- one deployment per target; a new one replaces it, and components it omits are REMOVED from the
  devices, so a rollout revises the latest deployment with all its components
  (https://docs.aws.amazon.com/greengrass/v2/developerguide/revise-deployments.html);
- a device's deployment status comes from ListEffectiveDeployments (coreDeviceExecutionStatus), its
  component states from ListInstalledComponents (lifecycleState BROKEN = failed)
  (https://docs.aws.amazon.com/greengrass/v2/APIReference/API_EffectiveDeployment.html).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import ANY

from tests.fleet.conftest import CANARY_ARN, FLEET_ARN, OLD, PREFIX, VERSIONS, FakeClock, put_metrics, run_cli

NEW = {f"{PREFIX}.{k}": v for k, v in VERSIONS.items()}
EDGE_MERGE = {"merge": '{"s3":{"windowsBucket":"hs-windows"}}'}


def expected_create(target: str, versions: dict[str, str], action: str, previous: str) -> dict:
    components = {f"{PREFIX}.{k}": {"componentVersion": v} for k, v in versions.items()}
    components[f"{PREFIX}.EdgeApp"]["configurationUpdate"] = EDGE_MERGE
    return {
        "targetArn": target,
        "deploymentName": target.rsplit("/", 1)[-1],
        "components": components,
        "tags": {
            "hybridstream:created-by": "fleet-cli",
            "hybridstream:action": action,
            "hybridstream:previous-deployment": previous,
        },
        "deploymentPolicies": ANY,
        "iotJobConfiguration": ANY,
    }


def start(gg, canary_things=("hybridstream-c1",)):
    """The calls every rollout starts with: both groups' latest deployments, the canary devices."""
    fleet = gg.deployment("fleet-1", FLEET_ARN, OLD)
    canary = gg.deployment("canary-1", CANARY_ARN, OLD)
    gg.latest(FLEET_ARN, fleet)
    gg.latest(CANARY_ARN, canary)
    gg.core_devices(CANARY_ARN, list(canary_things))
    return fleet, canary


def test_canary_success_then_fleet(ctx, gg, capsys):
    start(gg)
    gg.create("canary-2", expected_create(CANARY_ARN, VERSIONS, "rollout", "canary-1"))
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS, created=datetime.now(UTC) - timedelta(minutes=10))
    # poll 1: still installing
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "IN_PROGRESS")
    # poll 2: succeeded, running the new versions, fresh metrics (put below: after the deployment's creation)
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
    gg.installed("hybridstream-c1", VERSIONS)
    gg.create("fleet-2", expected_create(FLEET_ARN, VERSIONS, "rollout", "fleet-1"))
    put_metrics("hybridstream-c1")
    clock = FakeClock()

    code, out, err = run_cli(["fleet", "rollout", "--poll", "10", "--json"], ctx=ctx, clock=clock, capsys=capsys)

    assert code == 0, err
    gg.stubber.assert_no_pending_responses()
    assert clock.sleeps == [10]
    assert '"status": "fleet-started"' in out and '"fleet_deployment": "fleet-2"' in out
    assert "canary: 0/1 deployed, 0/1 healthy" in err and "canary: 1/1 deployed, 1/1 healthy" in err
    assert "canary gate passed" in err and "fleet: deployment fleet-2 created" in err
    assert "put the ComponentRelease output into cdk.json's context" in err  # the pin hint


def test_canary_failure_aborts_and_restores_previous(ctx, gg, capsys):
    _, canary1 = start(gg)
    gg.create("canary-2", expected_create(CANARY_ARN, VERSIONS, "rollout", "canary-1"))
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS, tags={"hybridstream:created-by": "fleet-cli"})
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "FAILED", reason="hybridstream.EdgeApp BROKEN: install failed")
    # abort: the failed deployment, the previous one, cancel, the previous components back
    gg.get(canary2)
    gg.get(canary1)
    gg.cancel("canary-2")
    gg.create("canary-3", expected_create(CANARY_ARN, OLD, "abort", "canary-2"))

    code, out, err = run_cli(["fleet", "rollout", "--poll", "5"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 1
    gg.stubber.assert_no_pending_responses()  # and no fleet deployment was created (the Stubber would refuse it)
    assert "rollout: canary-failed" in out and "install failed" in out
    assert "previous versions back in deployment canary-3" in err


def test_canary_timeout_aborts(ctx, gg, capsys):
    _, canary1 = start(gg)
    gg.create("canary-2")
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS)
    for _ in range(3):  # t = 0, 20, 40 (>= 40: timed out)
        gg.get(canary2)
        gg.effective("hybridstream-c1", "canary-2", "IN_PROGRESS")
    gg.get(canary2)
    gg.get(canary1)
    gg.cancel("canary-2", error="ConflictException")  # already inactive: still restored
    gg.create("canary-3", expected_create(CANARY_ARN, OLD, "abort", "canary-2"))
    clock = FakeClock()

    code, out, err = run_cli(
        ["fleet", "rollout", "--timeout", "40", "--poll", "20"], ctx=ctx, clock=clock, capsys=capsys
    )

    assert code == 3
    gg.stubber.assert_no_pending_responses()
    assert clock.t == 40
    assert "timed out after 40s waiting for hybridstream-c1 (IN_PROGRESS)" in out
    assert "[40s / 40s]" in err


def test_stale_metrics_keep_the_gate_closed(ctx, gg, capsys):
    """Metrics older than the deployment do not count: the canary must report after it."""
    start(gg)
    gg.create("canary-2")
    future = datetime.now(UTC) + timedelta(hours=1)  # the deployment is newer than any metrics object
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS, created=future)
    for _ in range(2):  # t = 0, 1
        gg.get(canary2)
        gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
        gg.installed("hybridstream-c1", VERSIONS)
    gg.get(canary2)
    gg.get(gg.deployment("canary-1", CANARY_ARN, OLD))
    gg.cancel("canary-2")
    gg.create("canary-3")
    put_metrics("hybridstream-c1")

    code, out, _ = run_cli(
        ["fleet", "rollout", "--timeout", "1", "--poll", "1"], ctx=ctx, clock=FakeClock(), capsys=capsys
    )

    assert code == 3
    assert "no fresh metrics" in out
    gg.stubber.assert_no_pending_responses()


def test_max_rmse_fails_the_gate(ctx, gg, capsys):
    start(gg)
    gg.create("canary-2")
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS, created=datetime.now(UTC) - timedelta(minutes=5))
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
    gg.installed("hybridstream-c1", VERSIONS)
    gg.get(canary2)
    gg.get(gg.deployment("canary-1", CANARY_ARN, OLD))
    gg.cancel("canary-2")
    gg.create("canary-3")
    put_metrics("hybridstream-c1", hybrid_rmse=4.2)

    code, out, _ = run_cli(["fleet", "rollout", "--max-rmse", "1.0"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 1 and "hybrid_rmse 4.200 > 1.0" in out
    gg.stubber.assert_no_pending_responses()


def test_broken_component_fails_the_gate(ctx, gg, capsys):
    start(gg)
    gg.create("canary-2")
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS)
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
    gg.installed("hybridstream-c1", VERSIONS, state="BROKEN")
    gg.get(canary2)
    gg.get(gg.deployment("canary-1", CANARY_ARN, OLD))
    gg.cancel("canary-2")
    gg.create("canary-3")

    code, out, _ = run_cli(["fleet", "rollout", "--no-metrics-gate"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 1 and "is BROKEN" in out
    gg.stubber.assert_no_pending_responses()


def test_wait_gates_the_fleet_too_and_pins_versions(ctx, gg, capsys):
    start(gg)
    gg.create("canary-2")
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS)
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
    gg.installed("hybridstream-c1", VERSIONS)
    gg.create("fleet-2", expected_create(FLEET_ARN, VERSIONS, "rollout", "fleet-1"))
    gg.core_devices(FLEET_ARN, ["hybridstream-f1", "hybridstream-f2"])
    fleet2 = gg.deployment("fleet-2", FLEET_ARN, VERSIONS)
    gg.get(fleet2)
    for thing in ("hybridstream-f1", "hybridstream-f2"):
        gg.effective(thing, "fleet-2", "SUCCEEDED", target=FLEET_ARN)
        gg.installed(thing, VERSIONS)

    code, out, err = run_cli(
        ["fleet", "rollout", "--wait", "--no-metrics-gate"], ctx=ctx, clock=FakeClock(), capsys=capsys
    )

    assert code == 0, err
    assert "rollout: promoted" in out
    assert "fleet: 2/2 deployed, 2/2 healthy" in err
    gg.stubber.assert_no_pending_responses()


def test_canary_already_on_the_versions_is_not_redeployed(ctx, gg, capsys):
    """After `cdk deploy` without promote the canary deployment already has the new versions."""
    fleet = gg.deployment("fleet-1", FLEET_ARN, OLD)
    canary = gg.deployment("canary-5", CANARY_ARN, VERSIONS)
    gg.latest(FLEET_ARN, fleet)
    gg.latest(CANARY_ARN, canary)
    gg.core_devices(CANARY_ARN, ["hybridstream-c1"])
    gg.history(CANARY_ARN, [gg.deployment("canary-4", CANARY_ARN, OLD), canary])
    gg.get(canary)
    gg.effective("hybridstream-c1", "canary-5", "SUCCEEDED")
    gg.installed("hybridstream-c1", VERSIONS)
    gg.create("fleet-2")

    code, _, err = run_cli(["fleet", "rollout", "--no-metrics-gate"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 0, err
    assert "canary: deployment canary-5 already has these versions" in err
    gg.stubber.assert_no_pending_responses()


def test_explicit_version_changes_only_that_component(ctx, gg, capsys):
    start(gg)
    only_app = {**OLD, "EdgeApp": "1.0.300"}
    gg.create("canary-2", expected_create(CANARY_ARN, only_app, "rollout", "canary-1"))
    canary2 = gg.deployment("canary-2", CANARY_ARN, only_app)
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
    gg.installed("hybridstream-c1", only_app)
    gg.create("fleet-2", expected_create(FLEET_ARN, only_app, "rollout", "fleet-1"))

    code, _, err = run_cli(
        ["fleet", "rollout", "--version", "EdgeApp=1.0.300", "--no-metrics-gate"],
        ctx=ctx,
        clock=FakeClock(),
        capsys=capsys,
    )

    assert code == 0, err
    gg.stubber.assert_no_pending_responses()


def test_no_canary_devices_refuses_and_creates_nothing(ctx, gg, capsys):
    start(gg, canary_things=())

    code, _, err = run_cli(["fleet", "rollout"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 1
    assert "has no core devices" in err and "--no-canary" in err
    gg.stubber.assert_no_pending_responses()  # no create_deployment was stubbed: none was made


def test_no_canary_deploys_both_groups_without_gate(ctx, gg, capsys):
    gg.latest(FLEET_ARN, gg.deployment("fleet-1", FLEET_ARN, OLD))
    gg.latest(CANARY_ARN, gg.deployment("canary-1", CANARY_ARN, OLD))
    gg.create("canary-2", expected_create(CANARY_ARN, VERSIONS, "rollout", "canary-1"))
    gg.create("fleet-2", expected_create(FLEET_ARN, VERSIONS, "rollout", "fleet-1"))

    code, _, err = run_cli(["fleet", "rollout", "--no-canary"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 0, err
    assert "without a gate" in err
    gg.stubber.assert_no_pending_responses()


def test_unknown_component_and_bad_version_are_refused(ctx, gg, capsys):
    start(gg)
    code, _, err = run_cli(["fleet", "rollout", "--version", "Nope=1.0.0"], ctx=ctx, clock=FakeClock(), capsys=capsys)
    assert code == 1 and "component Nope is not in the deployment" in err

    code, _, err = run_cli(["fleet", "rollout", "--version", "EdgeApp="], ctx=ctx, capsys=capsys)
    assert code == 1 and "expected COMPONENT=VERSION" in err


def test_group_without_deployment_is_a_clear_error(ctx, gg, capsys):
    gg.latest(FLEET_ARN, None)
    code, _, err = run_cli(["fleet", "rollout"], ctx=ctx, clock=FakeClock(), capsys=capsys)
    assert code == 1 and "the fleet group has no deployment yet: run `cdk deploy` first" in err


def test_abort_restores_the_running_rollout(ctx, gg, capsys):
    cli_tags = {
        "hybridstream:created-by": "fleet-cli",
        "hybridstream:action": "rollout",
        "hybridstream:previous-deployment": "fleet-1",
    }
    fleet2 = gg.deployment("fleet-2", FLEET_ARN, VERSIONS, tags=cli_tags)
    gg.latest(FLEET_ARN, fleet2)
    gg.get(gg.deployment("fleet-1", FLEET_ARN, OLD))
    gg.cancel("fleet-2")
    gg.create("fleet-3", expected_create(FLEET_ARN, OLD, "abort", "fleet-2"))
    gg.latest(CANARY_ARN, gg.deployment("canary-1", CANARY_ARN, VERSIONS))  # made by cdk deploy: left alone

    code, out, err = run_cli(["fleet", "abort"], ctx=ctx, capsys=capsys)

    assert code == 0, err
    assert "abort: fleet -> fleet-3" in out
    assert "canary: no rollout by this CLI to abort" in err
    gg.stubber.assert_no_pending_responses()


def test_abort_twice_is_a_no_op(ctx, gg, capsys):
    restored = gg.deployment(
        "fleet-3", FLEET_ARN, OLD, tags={"hybridstream:created-by": "fleet-cli", "hybridstream:action": "abort"}
    )
    gg.latest(FLEET_ARN, restored)
    gg.latest(CANARY_ARN, None)
    code, out, _ = run_cli(["fleet", "abort"], ctx=ctx, capsys=capsys)
    assert code == 0 and "abort: nothing to abort" in out
    gg.stubber.assert_no_pending_responses()


def test_throttling_is_a_clear_error(ctx, gg, capsys):
    gg.stubber.add_client_error("list_deployments", "ThrottlingException", "Rate exceeded", 429)
    code, _, err = run_cli(["fleet", "rollout"], ctx=ctx, capsys=capsys)
    assert code == 1
    assert "AWS throttled ListDeployments while rolling out" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--poll", "-1"]])
def test_bad_timeouts(ctx, capsys, argv):
    code, _, err = run_cli(["fleet", "rollout", *argv], ctx=ctx, capsys=capsys)
    assert code == 1 and "must be positive" in err


def test_stack_without_device_metrics_gates_on_deployment_only(aws, gg, capsys):
    """An older stack without the DeviceMetricsKey output: the gate says so and still works."""
    from hybridstream.fleet.session import AwsContext
    from tests.fleet.conftest import create_stack, outputs_dict

    create_stack("NoMetrics", {k: v for k, v in outputs_dict().items() if k != "DeviceMetricsKey"})
    ctx = AwsContext(region="eu-west-1")
    ctx.clients["greengrassv2"] = gg.client
    start(gg)
    gg.create("canary-2")
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS)
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "SUCCEEDED")
    gg.installed("hybridstream-c1", VERSIONS)
    gg.create("fleet-2")

    code, _, err = run_cli(["fleet", "rollout", "--stack", "NoMetrics"], ctx=ctx, clock=FakeClock(), capsys=capsys)

    assert code == 0, err
    assert "keeps no per-device metrics (no DeviceMetricsKey output)" in err
    gg.stubber.assert_no_pending_responses()


def test_ctrl_c_says_how_to_go_back(ctx, gg, capsys):
    start(gg)
    gg.create("canary-2")
    canary2 = gg.deployment("canary-2", CANARY_ARN, VERSIONS)
    gg.get(canary2)
    gg.effective("hybridstream-c1", "canary-2", "IN_PROGRESS")

    class Interrupting(FakeClock):
        def sleep(self, seconds):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cli(["fleet", "rollout"], ctx=ctx, clock=Interrupting(), capsys=None)
    assert "`hybridstream fleet abort` puts the previous versions back" in capsys.readouterr().err
    gg.stubber.assert_no_pending_responses()
