"""Observability: the CloudWatch dashboard and the alarms (to an encrypted SNS topic)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.topic_rules import EDGE_METRICS_NAMESPACE

TRAINING_NAMESPACE = "HybridStream/Training"
INGEST_NAMESPACE = "HybridStream/Ingest"


def _search(namespace: str, dimension: str, metric: str, stat: str, seconds: int) -> cw.MathExpression:
    """All series of one metric across a dimension's values (a CloudWatch SEARCH expression)."""
    return cw.MathExpression(
        expression=f"SEARCH('{{{namespace},{dimension}}} MetricName=\"{metric}\"', '{stat}', {seconds})",
        label=metric,
        period=Duration.seconds(seconds),
    )


class AlarmTopic(Construct):
    """The SNS topic for alarms and scaling events, encrypted with its own KMS key.

    CloudWatch cannot publish to a topic encrypted with the AWS-managed ``alias/aws/sns`` key
    (its policy cannot be changed to let the service in), and a TLS-only topic policy leaves no
    statement that allows the service: alarms would never notify. So: a customer-managed key
    (rotated) whose policy lets ``cloudwatch.amazonaws.com`` (alarms of this account) and EC2
    Auto Scaling's service-linked role use it, and a topic policy that lets this account's
    alarms publish (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).

    Attributes (read-only): ``topic``, ``key``.
    """

    def __init__(self, scope: Construct, construct_id: str = "Alarms") -> None:
        super().__init__(scope, construct_id)
        account, alarms = Aws.ACCOUNT_ID, f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
        self._key = kms.Key(
            self,
            "Key",
            description="hybridstream alarm topic (CloudWatch alarms and Auto Scaling notifications)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self._key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": alarms}},
            )
        )
        # Auto Scaling publishes with its service-linked role, which may not exist yet when the key is
        # created (a fresh account): match it by ARN instead of naming it as the principal
        self._key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AutoScalingNotifications",
                principals=[iam.AnyPrincipal()],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"kms:CallerAccount": account},
                    "ArnLike": {
                        "aws:PrincipalArn": f"arn:{Aws.PARTITION}:iam::{account}:role/aws-service-role/"
                        "autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
                    },
                },
            )
        )
        self._topic = sns.Topic(self, "Topic", master_key=self._key, enforce_ssl=True)
        self._topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self._topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": alarms}},
            )
        )

    def allow_events(self, rule_arn: str) -> None:
        """Let one EventBridge rule publish to the topic through its key (the SNS target adds the
        topic policy; https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services)."""
        self._key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeRules",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": rule_arn},
                },
            )
        )

    @property
    def topic(self) -> sns.ITopic:
        return self._topic

    @property
    def key(self) -> kms.IKey:
        return self._key


class Observability(Construct):
    """Dashboard (hybrid/batch/speed RMSE, edge latency and records/s, forecast interval coverage and
    width per thing, training duration,
    model version per device, queue depth, Lambda errors) and alarms (any DLQ not empty,
    training failures, RMSE regression, interval coverage out of its band).

    Props:
        topic: where alarms notify.
        functions: name -> Lambda function (errors widget).
        dead_letter_queues: name -> DLQ; each gets a "not empty" alarm.
        training_queue / training_dlq: the training queue (depth widget) and its DLQ (the
            "training failures" alarm); None in ``edge`` mode.
        ingest_log_group: the ingest Lambda's log group (model versions per device).
        rmse_threshold: hybrid RMSE (target units, 15-min average) that raises the regression
            alarm (default 2.0).
        coverage_band: how far the fleet's 80 % / 95 % interval coverage (15-min average) may leave
            0.8 / 0.95 before its alarm (default 0.05 / 0.03: the edge's target is +-0.05 over any tenth).
        dashboard_name: default ``hybridstream``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: sns.ITopic,
        functions: Mapping[str, lambda_.IFunction],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        ingest_log_group: logs.ILogGroup,
        training_queue: sqs.IQueue | None = None,
        training_dlq: sqs.IQueue | None = None,
        rmse_threshold: float = 2.0,
        coverage_band: tuple[float, float] = (0.05, 0.03),
        dashboard_name: str = "hybridstream",
    ) -> None:
        super().__init__(scope, construct_id)
        action = cw_actions.SnsAction(topic)
        self.alarms: dict[str, cw.Alarm] = {}

        def edge(name: str, stat: str = "Average") -> cw.Metric:
            return cw.Metric(
                namespace=EDGE_METRICS_NAMESPACE, metric_name=name, statistic=stat, period=Duration.minutes(5)
            )

        for name, queue in dead_letter_queues.items():
            self._alarm(
                f"{name}DlqNotEmpty",
                queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(5), statistic="Maximum"),
                threshold=0,
                description=f"{name}: events failed and are waiting in the dead-letter queue",
                action=action,
            )
        if training_dlq is not None:
            self._alarm(
                "TrainingFailures",
                training_dlq.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(5), statistic="Maximum"
                ),
                threshold=0,
                description="window notices failed training max-receive times (see the trainer's journal)",
                action=action,
            )
        self._alarm(
            "RmseRegression",
            cw.Metric(
                namespace=EDGE_METRICS_NAMESPACE,
                metric_name="HybridRMSE",
                statistic="Average",
                period=Duration.minutes(15),
            ),
            threshold=rmse_threshold,
            description=f"fleet hybrid RMSE above {rmse_threshold} for 30 minutes (drift or a bad model)",
            action=action,
            periods=2,
        )
        # the edge's forecast intervals (edge_app.intervals): running coverage out of its band for 30 minutes
        for level, band in ((80, coverage_band[0]), (95, coverage_band[1])):
            self._alarm(
                f"Coverage{level}OutOfBand",
                cw.MathExpression(
                    expression=f"ABS(c - {level / 100})",
                    using_metrics={"c": edge(f"Coverage{level}", "Average").with_(period=Duration.minutes(15))},
                    label=f"|coverage {level} % - {level / 100}|",
                    period=Duration.minutes(15),
                ),
                threshold=band,
                description=f"fleet {level} % interval coverage more than {band:g} from {level / 100} for 30 minutes "
                "(the intervals no longer calibrated: see docs/edge.md, forecast intervals)",
                action=action,
                periods=2,
            )

        rows: list[list[cw.IWidget]] = [
            [
                cw.GraphWidget(
                    title="RMSE per approach (fleet)",
                    left=[edge("HybridRMSE"), edge("BatchRMSE"), edge("SpeedRMSE")],
                    width=12,
                ),
                cw.GraphWidget(
                    title="Edge latency (ms) and records/s",
                    left=[edge("LatencyMs")],
                    right=[edge("RecordsPerSecond", "Sum")],
                    width=12,
                ),
            ],
            [
                cw.GraphWidget(
                    title="Training duration (s) and holdout RMSE",
                    left=[_search(TRAINING_NAMESPACE, "Model", "TrainingSeconds", "Average", 900)],
                    right=[_search(TRAINING_NAMESPACE, "Model", "HoldoutRMSE", "Average", 900)],
                    width=12,
                ),
                cw.LogQueryWidget(
                    title="Model versions per device (latest metrics message)",
                    log_group_names=[ingest_log_group.log_group_name],
                    query_lines=[
                        "fields @timestamp, thing, model_batch, model_speed",
                        "filter model_versions = 1",
                        "stats latest(model_batch) as batch, latest(model_speed) as speed by thing",
                    ],
                    width=12,
                ),
            ],
            [
                cw.GraphWidget(
                    title="Forecast interval coverage per thing (80 % and 95 %)",
                    left=[
                        _search(INGEST_NAMESPACE, "Thing", "Coverage80", "Average", 300),
                        _search(INGEST_NAMESPACE, "Thing", "Coverage95", "Average", 300),
                    ],
                    left_annotations=[cw.HorizontalAnnotation(value=0.8), cw.HorizontalAnnotation(value=0.95)],
                    width=12,
                ),
                cw.GraphWidget(
                    title="Forecast interval mean width per thing (target units)",
                    left=[
                        _search(INGEST_NAMESPACE, "Thing", "Width80", "Average", 300),
                        _search(INGEST_NAMESPACE, "Thing", "Width95", "Average", 300),
                    ],
                    width=12,
                ),
            ],
            [
                cw.GraphWidget(
                    title="Lambda errors",
                    left=[fn.metric_errors(label=name, period=Duration.minutes(5)) for name, fn in functions.items()],
                    width=12,
                ),
                cw.GraphWidget(
                    title="Ingest rejects by kind",
                    left=[_search(INGEST_NAMESPACE, "Kind", "Rejected", "Sum", 300)],
                    width=12,
                ),
            ],
        ]
        if training_queue is not None:
            rows.append(
                [
                    cw.GraphWidget(
                        title="Training queue depth",
                        left=[
                            training_queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(1)),
                            training_queue.metric_approximate_number_of_messages_not_visible(
                                period=Duration.minutes(1)
                            ),
                        ],
                        width=12,
                    ),
                    cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=12),
                ]
            )
        else:
            rows.append([cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24)])
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name, widgets=rows)
        self.dashboard_url = (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={dashboard_name}"
        )

    def _alarm(
        self, name: str, metric: cw.IMetric, *, threshold: float, description: str, action, periods: int = 1
    ) -> None:
        alarm = cw.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(action)
        self.alarms[name] = alarm
