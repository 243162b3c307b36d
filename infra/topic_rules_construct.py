"""The CDK construct for the IoT topic rules; the rules themselves (the contract, plain data) are
:mod:`infra.topic_rules`."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topic_rules import TopicRule

Rule = iot.CfnTopicRule


class TopicRules(Construct):
    """One ``AWS::IoT::TopicRule`` per rule of the mode, each with an error action to a log group.

    Props:
        rules: the rules to deploy (``infra.topic_rules.rules_for_mode(mode)``).
        queues / buckets / functions: logical target name -> resource, for the rules' actions.
        name_prefix: rule names are ``<prefix>_<rule name>`` (default ``hybridstream``).

    Attributes: ``rules`` (rule name -> CfnTopicRule), ``role`` (what IoT assumes for the
    SQS/S3/CloudWatch actions), ``error_log_group``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rules: tuple[TopicRule, ...],
        queues: Mapping[str, sqs.IQueue],
        buckets: Mapping[str, s3.IBucket],
        functions: Mapping[str, lambda_.IFunction],
        name_prefix: str = "hybridstream",
    ) -> None:
        super().__init__(scope, construct_id)
        self.error_log_group = logs.LogGroup(
            self, "RuleErrors", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
            description="hybridstream IoT rule actions",
        )
        # the CloudWatch Logs action needs DescribeLogStreams too
        # (https://docs.aws.amazon.com/iot/latest/developerguide/cloudwatch-logs-rule-action.html)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteRuleErrors",
                actions=["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=[self.error_log_group.log_group_arn],
            )
        )
        self._queues, self._buckets, self._functions = queues, buckets, functions
        self.rules: dict[str, Rule] = {}
        for rule in rules:
            physical = f"{name_prefix}_{rule.name}".replace("-", "_")
            cfn = Rule(
                self,
                rule.name,
                rule_name=physical,
                topic_rule_payload=Rule.TopicRulePayloadProperty(
                    sql=rule.sql(),
                    aws_iot_sql_version="2016-03-23",
                    description=rule.description,
                    rule_disabled=False,
                    actions=[self._action(a.kind, a.target, a.params) for a in rule.actions],
                    error_action=Rule.ActionProperty(
                        cloudwatch_logs=Rule.CloudwatchLogsActionProperty(
                            log_group_name=self.error_log_group.log_group_name, role_arn=self.role.role_arn
                        )
                    ),
                ),
            )
            self.rules[rule.name] = cfn
            for action in rule.actions:
                if action.kind == "lambda":
                    functions[action.target].add_permission(
                        f"Invoke{rule.name.title().replace('_', '')}",
                        principal=iam.ServicePrincipal("iot.amazonaws.com"),
                        source_arn=cfn.attr_arn,
                    )

    def _action(self, kind: str, target: str, params: Mapping[str, str]) -> Rule.ActionProperty:
        role = self.role
        if kind == "sqs":
            queue = self._queues[target]
            queue.grant_send_messages(role)
            return Rule.ActionProperty(
                sqs=Rule.SqsActionProperty(queue_url=queue.queue_url, role_arn=role.role_arn, use_base64=False)
            )
        if kind == "s3":
            bucket = self._buckets[target]
            prefix = params["key"].split("/", 1)[0]  # results/..., metrics/...: the key's fixed first segment
            role.add_to_policy(
                iam.PolicyStatement(actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{prefix}/*")])
            )
            return Rule.ActionProperty(
                s3=Rule.S3ActionProperty(bucket_name=bucket.bucket_name, key=params["key"], role_arn=role.role_arn)
            )
        if kind == "cloudwatch_metric":
            return Rule.ActionProperty(
                cloudwatch_metric=Rule.CloudwatchMetricActionProperty(
                    metric_namespace=params["namespace"],
                    metric_name=params["metric_name"],
                    metric_value=params["value"],
                    metric_unit="None",
                    role_arn=self._metrics_role(params["namespace"]).role_arn,
                )
            )
        if kind == "lambda":
            return Rule.ActionProperty(
                lambda_=Rule.LambdaActionProperty(function_arn=self._functions[target].function_arn)
            )
        raise ValueError(f"unknown rule action kind {kind!r}")

    def _metrics_role(self, namespace: str) -> iam.Role:
        """PutMetricData has no resource-level permissions: limit it to one namespace instead."""
        if not hasattr(self, "_metrics"):
            self._metrics = iam.Role(
                self,
                "MetricsRole",
                assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
                description="hybridstream IoT rules: put edge metrics (one namespace)",
            )
            self._metrics.add_to_policy(
                iam.PolicyStatement(
                    # ALLOW-STAR: cloudwatch:PutMetricData supports no resource ARNs; scoped by namespace
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
                )
            )
        return self._metrics
