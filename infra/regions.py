"""Regions this app cannot deploy to, refused at synth with a clear message (plain Python).

Sources (checked by tests/infra/test_regions.py against cfn-lint's bundled CloudFormation
schemas, which list the resource types and EC2 instance types of each region):
- AWS IoT Greengrass V2 endpoints: https://docs.aws.amazon.com/general/latest/gr/greengrassv2.html
  (cfn-lint E3006: ``AWS::GreengrassV2::*`` does not exist in the region);
- EC2 instance types by region: https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-regions.html
  (cfn-lint E3628/E3030: ``c5.4xlarge`` is not offered there).
"""

from __future__ import annotations

# regions without AWS::GreengrassV2::ComponentVersion / Deployment (cfn-lint 1.58 schemas)
NO_GREENGRASS_V2 = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-east-2",
        "ap-northeast-3",
        "ap-south-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-6",
        "ap-southeast-7",
        "ca-west-1",
        "cn-northwest-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "mx-central-1",
        "sa-east-1",
        "us-west-1",
    }
)
# regions whose EC2 does not offer c5.4xlarge (the trainer's default instance type)
NO_C5_4XLARGE = frozenset({"ap-east-2", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "mx-central-1"})
TRAINER_DEFAULT_INSTANCE = "c5.4xlarge"


def check_region(region: str | None, *, has_trainer: bool, instance_type: str) -> None:
    """Raise ValueError when the stack cannot work in ``region`` (None: environment-agnostic)."""
    if not region or region.startswith("${Token"):
        return
    if region in NO_GREENGRASS_V2:
        raise ValueError(
            f"region {region} has no AWS IoT Greengrass V2 (components and deployments cannot be created): "
            "deploy to a Greengrass V2 region, see https://docs.aws.amazon.com/general/latest/gr/greengrassv2.html"
        )
    if has_trainer and instance_type == TRAINER_DEFAULT_INSTANCE and region in NO_C5_4XLARGE:
        raise ValueError(
            f"region {region} has no {TRAINER_DEFAULT_INSTANCE} instances for the trainer: set "
            "-c trainer_instance_type=<a type offered there> (or use mode=edge, which has no trainer)"
        )
