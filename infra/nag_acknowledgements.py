"""Every cdk-nag acknowledgement of the app, each with its reason, in this one module.

Each acknowledgement names one finding (``Rule[Finding]``) on one construct, so a new
wildcard elsewhere still fails the synth.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import Construct, IConstruct


def _find(root: IConstruct, path: str) -> IConstruct | None:
    node: IConstruct | None = root
    for part in path.split("/"):
        node = node.node.try_find_child(part) if node is not None else None
    return node


def _arn(stack: Stack, path: str) -> str:
    """How cdk-nag prints ``Fn::GetAtt <bucket>.Arn`` in a finding id."""
    bucket = _find(stack, path)
    return f"<{stack.get_logical_id(bucket.node.default_child)}.Arn>"


IOT = "arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>"
CUSTOM_RESOURCE_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"  # AwsCustomResource's singleton Lambda


def acknowledgements(stack: Stack) -> list[tuple[str, str, str]]:
    """(construct path, finding id, reason) for the stack as built."""
    models, windows, results = (_arn(stack, f"Storage/{b}") for b in ("Models", "Windows", "Results"))
    query_results = _arn(stack, "Storage/QueryResults")
    fleet = _find(stack, "Fleet")
    speed_own = fleet.speed_model_name.replace("{thing}", "<credentials-iot:ThingName>")
    batch = fleet.batch_model_name
    prefix_name = fleet.thing_name_prefix
    basic = "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
    acks = [
        (
            "Fleet/TokenExchangeRole",
            f"AwsSolutions-IAM5[Resource::{models}/models/{speed_own}/*]",
            "Each device reads (edge mode: also publishes) only its own speed model's versions (models/<its speed "
            "model>/<version>/...; the thing name comes from the credentials-provider policy variable); versions are "
            "content-derived.",
        ),
        (
            "Fleet/TokenExchangeRole",
            f"AwsSolutions-IAM5[Resource::{models}/models/{batch}/*]",
            "Every device reads the one shared batch model's versions (content-derived, unknown in advance).",
        ),
        (
            "Fleet/TokenExchangeRole",
            f"AwsSolutions-IAM5[Resource::{windows}/windows/<credentials-iot:ThingName>/*]",
            "Each device writes only under its own windows/<thing>/ prefix: the wildcard is the window id and the "
            "thing name comes from the credentials-provider policy variable.",
        ),
        (
            "Fleet/TokenExchangeRole",
            f"AwsSolutions-IAM5[Resource::{windows}/forecasts/<credentials-iot:ThingName>/*]",
            "Each device writes its windows' forecasts only under its own forecasts/<thing>/ prefix: the wildcard is "
            "<yyyy>/<mm>/<dd>/<window-id>.jsonl.gz and the thing name comes from the credentials-provider variable.",
        ),
        (
            "Forecasts/QueryPolicy",
            f"AwsSolutions-IAM5[Resource::{windows}/forecasts/*]",
            "Athena reads the forecasts table's objects (forecasts/<thing>/<yyyy>/<mm>/<dd>/<window-id>.jsonl.gz) "
            "with the caller's credentials: any thing and day a query selects; read only.",
        ),
        (
            "Forecasts/QueryPolicy",
            f"AwsSolutions-IAM5[Resource::{query_results}/athena/*]",
            "The workgroup writes each query's result under athena/<query-id>.csv (ids generated per query) in the "
            "query-results bucket, and the caller reads it back.",
        ),
        (
            "Enrollment/ProvisioningRole",
            f"AwsSolutions-IAM5[Resource::{IOT}:thing/{prefix_name}-*]",
            f"Fleet provisioning creates things named {prefix_name}-<serial> (only allow-listed serials, checked by "
            "the pre-provisioning hook); serials are not known in advance.",
        ),
        (
            "Enrollment/Hook/Role",
            f"AwsSolutions-IAM5[Resource::{IOT}:thing/{prefix_name}-*]",
            f"The pre-provisioning hook checks that thing {prefix_name}-<serial> does not exist yet (DescribeThing "
            "only); serials are not known in advance.",
        ),
        (
            "PolicyDetacher/Handler/Role",
            f"AwsSolutions-IAM5[Resource::{IOT}:cert/*]",
            "At stack delete the stack's IoT policies are detached from every certificate they are attached to "
            "(provisioned devices, the claim certificate): their ids are not known in advance.",
        ),
        (
            "Enrollment/ProvisioningRole",
            f"AwsSolutions-IAM5[Resource::{IOT}:cert/*]",
            "Fleet provisioning activates the certificate created for the claiming device; its id is not known "
            "in advance.",
        ),
        (
            "ModelPublished/Handler/Role",
            f"AwsSolutions-IAM5[Resource::{models}/models/*/LATEST]",
            "The announcer reads the LATEST pointer of any model name (written by the trainer) to announce it.",
        ),
        (
            "ModelPublished/Handler/Role",
            f"AwsSolutions-IAM5[Resource::{models}/models/*/manifest.json]",
            "The announcer reads only manifest.json files, of any model name and version.",
        ),
        (
            "ModelPublished/Handler/Role",
            f"AwsSolutions-IAM5[Resource::{IOT}:topic/hybridstream/models/*/published]",
            "The announcer publishes on hybridstream/models/<name>/published for any model name.",
        ),
        (
            "Rules/MetricsRole",
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; the statement is limited to one namespace by "
            "the cloudwatch:namespace condition.",
        ),
        (
            "Rules/Role",
            f"AwsSolutions-IAM5[Resource::{results}/results/*]",
            "The results rule writes results/<thing>/<date>/<id>.json: keys are generated per message.",
        ),
        (
            "Rules/Role",
            f"AwsSolutions-IAM5[Resource::{results}/metrics/*]",
            "The latest-metrics rule overwrites metrics/<thing>/latest.json: one key per device (from its topic).",
        ),
        (
            "IotDataEndpoint",
            "AwsSolutions-IAM5[Resource::*]",
            "iot:DescribeEndpoint has no resource-level permissions; it is the only action of this policy.",
        ),
        (
            CUSTOM_RESOURCE_PROVIDER,
            basic,
            "CDK's AwsCustomResource provider Lambda (IoT endpoint lookup at deploy) uses the basic execution role "
            "for its logs; it is not configurable.",
        ),
    ]
    if _find(stack, "Trainer") is not None:
        acks += [
            (
                "Trainer/Role",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
                "SSM Session Manager access to the trainers (no SSH, no inbound ports); AWS maintains this policy as "
                "the SSM agent's needs change.",
            ),
            (
                "Trainer/Role",
                f"AwsSolutions-IAM5[Resource::{windows}/windows/*]",
                "Trainers read any device's windows: a window notice names the key to train on.",
            ),
            (
                "Trainer/Role",
                f"AwsSolutions-IAM5[Resource::{models}/models/*]",
                "Trainers write new, content-versioned models/<name>/<version>/ objects (and read existing manifests).",
            ),
            (
                "Trainer/Role",
                f"AwsSolutions-IAM5[Resource::{models}/rejected/*]",
                "Trainers keep models refused by the guardrail/parity check under rejected/<name>/<version>/ "
                "for audit.",
            ),
            (
                "Trainer/Role",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:"
                f"autoScalingGroup:*:autoScalingGroupName/{_find(stack, 'Trainer').group_name}]",
                "A trainer protects itself from scale-in while it trains (autoscaling:SetInstanceProtection) in its "
                "own group only: the wildcard is the group's UUID, which exists only once the group does; the name "
                "is the group's own.",
            ),
        ]
    if getattr(fleet, "trains_on_device", False):  # edge mode: the trainer runs on the Pi
        own = fleet.speed_model_name.replace("{thing}", "<credentials-iot:ThingName>")
        acks += [
            (
                "Fleet/TokenExchangeRole",
                f"AwsSolutions-IAM5[Resource::{models}/{prefix}/{own}/*]",
                f"edge mode: a device publishes only its own speed model ({prefix}/{own}/<version>/, the thing name "
                "from the credentials-provider policy variable); versions are content-derived, unknown in advance.",
            )
            for prefix in ("rejected",)  # models/<own>/* is acknowledged above (read, and in edge mode write)
        ]
    if _find(stack, "CloudInference") is not None:
        acks += [
            (
                "CloudInference/Handler/Role",
                f"AwsSolutions-IAM5[Resource::{models}/models/*]",
                "Cloud inference loads the newest version of the batch and speed models.",
            ),
            (
                "CloudInference/Handler/Role",
                f"AwsSolutions-IAM5[Resource::{IOT}:topic/hybridstream/*/results]",
                "Cloud inference answers each device on its own hybridstream/<thing>/results topic.",
            ),
            (
                "CloudInference/Handler/Function",
                "AwsSolutions-L1",
                "Python 3.13, not 3.14: ai-edge-litert (the TFLite runtime) publishes no Python 3.14 wheels yet.",
            ),
        ]
    return acks


def acknowledge(stack: Stack) -> int:
    """Apply the acknowledgements to their constructs; returns how many."""
    acks = acknowledgements(stack)
    for path, finding, reason in acks:
        target: Construct | None = _find(stack, path)
        if target is None:
            raise LookupError(f"nag acknowledgement target {path} not found")
        Validations.of(target).acknowledge(Acknowledgment(id=finding, reason=reason))
    return len(acks)
