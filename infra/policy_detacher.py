"""At ``cdk destroy``: detach the stack's IoT policies from provisioned certificates first."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import CfnCustomResource
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from constructs import Construct

from infra.fleet import iot_arn
from infra.functions import PythonFunction


class PolicyDetacher(Construct):
    """A custom resource that depends on the IoT policies, so CloudFormation deletes it (and runs
    its Delete: detach every target, drop non-default versions) before it deletes them.

    Props:
        policies: the IoT policies to release at delete.
        source: the Lambda's folder (``<lambdas_dir>/policy_detacher``).

    ``shared_sources``: staged into the Lambda package beside the handler (default none; the app
    passes ``BuildArtifacts.lambda_shared_sources()``).

    Attributes (read-only): ``resource``, ``python``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        policies: list[iot.CfnPolicy],
        source: Path,
        shared_sources: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        names = [p.policy_name for p in policies]
        self._python = PythonFunction(
            self,
            "Handler",
            shared_sources=shared_sources,
            source=source,
            description="cdk destroy: detach the stack's IoT policies from certificates before they are deleted",
            timeout_seconds=300,
        )
        self._python.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReleasePolicies",
                actions=[
                    "iot:ListTargetsForPolicy",
                    "iot:DetachPolicy",
                    "iot:ListPolicyVersions",
                    "iot:DeletePolicyVersion",
                ],
                resources=[iot_arn(f"policy/{n}") for n in names],
            )
        )
        self._python.role.add_to_policy(
            # DetachPolicy's target: any certificate the policy is attached to (ids unknown in advance)
            iam.PolicyStatement(
                sid="DetachFromCertificates", actions=["iot:DetachPolicy"], resources=[iot_arn("cert/*")]
            )
        )
        self._resource = CfnCustomResource(self, "Resource", service_token=self._python.function.function_arn)
        self._resource.add_property_override("PolicyNames", names)
        for policy in policies:
            self._resource.node.add_dependency(policy)
        # the function, its role and its log group must outlive the resource's Delete call
        self._resource.node.add_dependency(self._python)

    @property
    def resource(self) -> CfnCustomResource:
        return self._resource

    @property
    def python(self) -> PythonFunction:
        return self._python
