"""The outputs the fleet CLI reads exist in the synthesized stack (offline synth, the infra tests'
own builder), so a renamed output fails here and not on a user's workstation."""

from __future__ import annotations

import pytest

from hybridstream.fleet.metrics import KEY
from hybridstream.fleet.outputs import OPTIONAL, REQUIRED


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict]:
    from tests.infra.conftest import build, make_batch_model

    root = tmp_path_factory.mktemp("fleet-synth")
    built = build({"mode": "edge-cloud", "batch_model_dir": str(make_batch_model(root / "batch"))}, root / "cdk")
    return built.raw["Outputs"]


@pytest.mark.slow
def test_every_output_the_cli_reads_exists(outputs):
    missing = [name for name in REQUIRED if name not in outputs]
    assert not missing, f"the stack lacks outputs the fleet CLI needs: {missing}"
    # optional for the CLI (older stacks), but this stack has it: status and the rollout's metrics gate use it
    assert set(OPTIONAL) <= set(outputs)
    assert outputs["DeviceMetricsKey"]["Value"] == KEY == "metrics/{thing}/latest.json"


@pytest.mark.slow
def test_thing_prefix_and_claim_client_prefix_agree(outputs):
    prefix = outputs["ThingNamePrefix"]["Value"]
    assert outputs["ClaimClientIdPrefix"]["Value"] == f"{prefix}-claim-"
    assert outputs["FleetThingGroup"]["Value"] == f"{prefix}-fleet"
    assert outputs["CanaryThingGroup"]["Value"] == f"{prefix}-canary"
