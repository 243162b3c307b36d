"""Scale-in protection of this EC2 trainer while it trains (issue 23).

The trainer Auto Scaling group follows the backlog per instance (infra/training.py): when the
backlog falls, it lowers its desired capacity and terminates instances. An instance protected
from scale-in is not chosen; when every instance is protected the group lowers its desired
capacity and waits until one is unprotected ("If all instances in an Auto Scaling group are
protected from scale in, and a scale-in event occurs, its desired capacity is decremented.
However, the Auto Scaling group can't terminate the required number of instances until their
instance scale-in protection settings are disabled",
https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html).
So the worker protects its instance while any of its trainings runs and clears the protection
once all are idle: scale-in then stops only idle trainers. An idle instance may still take a
message just as it is chosen; its SIGTERM releases that message (training_job.worker).

Enabled by ``HYBRIDSTREAM_TRAINER_GROUP`` (the group's name, set by the EC2 user data); the
instance ID comes from IMDSv2. Permission needed: ``autoscaling:SetInstanceProtection`` on the group.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

GROUP_ENV = "HYBRIDSTREAM_TRAINER_GROUP"
IMDS = "http://169.254.169.254/latest"


def imds_instance_id(timeout: float = 2.0) -> str:
    """This instance's ID from the instance metadata service (IMDSv2: token first)."""
    token_req = urllib.request.Request(
        f"{IMDS}/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    with urllib.request.urlopen(token_req, timeout=timeout) as resp:  # noqa: S310 (fixed link-local URL)
        token = resp.read().decode()
    req = urllib.request.Request(f"{IMDS}/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        return resp.read().decode().strip()


class ScaleInProtection:
    """Sets and clears this instance's scale-in protection; failures are logged, never raised
    (a trainer that cannot protect itself still trains; its SIGTERM releases its message)."""

    def __init__(self, autoscaling: Any, group: str, instance_id: str) -> None:
        self.autoscaling, self.group, self.instance_id = autoscaling, group, instance_id

    def set(self, protected: bool) -> None:
        try:
            self.autoscaling.set_instance_protection(
                InstanceIds=[self.instance_id], AutoScalingGroupName=self.group, ProtectedFromScaleIn=protected
            )
            log.info("scale-in protection of %s: %s", self.instance_id, "on" if protected else "off")
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not set the scale-in protection of %s to %s: %s", self.instance_id, protected, exc)

    @classmethod
    def from_environment(cls) -> ScaleInProtection | None:
        """From ``$HYBRIDSTREAM_TRAINER_GROUP`` and IMDS; None when the variable is unset (not on EC2)."""
        group = os.environ.get(GROUP_ENV, "").strip()
        if not group:
            return None
        import boto3  # noqa: PLC0415

        try:
            instance_id = imds_instance_id()
        except OSError as exc:
            log.warning("%s is set but the instance ID is unknown (%s): no scale-in protection", GROUP_ENV, exc)
            return None
        return cls(boto3.session.Session().client("autoscaling"), group, instance_id)
