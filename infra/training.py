"""Training: the SQS training queue (with a redrive DLQ) and the EC2 trainer Auto Scaling group."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.functions import encrypted_queue
from infra.packaging import stage

# what the trainer runs (EC2 and the Pi's Trainer component): the training job and the wire
# contract, plus the `hybridstream` CLI dispatcher alone (`hybridstream train worker`; a group
# appears only if its module ships). No infra/, edge_app/ or dev tools (tests/infra/test_shipped_artifacts.py).
TRAINER_PACKAGES = ("model_contract", "training_job")
TRAINER_FILES = ("hybridstream/__init__.py", "hybridstream/__main__.py", "hybridstream/cli.py")
AGENT_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/hybridstream.json"
AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
TRAINER_LOG = "/var/log/hybridstream/trainer.log"
SCALE_BOUNDARY = 0.5  # backlog is an integer: >= 0.5 means "at least one", <= 0.5 means "none"
# Seconds one worker (1 TensorFlow thread) takes per 1,000-row window, measured by `make bench-train`
# on the 2-core dev machine: since issue 17's fine-tune each speed model is fine-tuned from the batch model
# on the thing's last 6 windows: 2 / 0.3194 and 2 / 0.3213 (windows_per_second with 2 workers, load 1.9-3.7,
# 2026-12-07) = 6.3 s, rounded up (BENCHMARKS.md; from scratch on the window alone 5.9 s at load 0.7-1.1,
# 4.9 s in the same session as the fine-tune's 6.3; 3.2 s before instance_norm + shrink; busier machines
# measured up to 28 s).
WINDOW_SECONDS = 7.0
MAX_DELAY_SECONDS = 600  # acceptable wait of a window in the queue (the freshness the scaling aims at)
INSTANCE_WARMUP_SECONDS = 420  # boot + pip install of TensorFlow before an instance trains
# CloudWatch metric math ids: a lowercase letter first, then letters, digits, underscores
BACKLOG_PER_INSTANCE = "(visible + inflight) / IF(instances > 0, instances, 1)"


def instance_vcpus(instance_type: str) -> int:
    """vCPUs of an EC2 instance type from its size (``large`` 2, ``xlarge`` 4, ``<n>xlarge`` 4n),
    true for the compute and general purpose families (c5, c6i, c7g, m5, m6i, ...).

    >>> instance_vcpus("c5.4xlarge"), instance_vcpus("m6i.large"), instance_vcpus("c7g.xlarge")
    (16, 2, 4)
    """
    size = instance_type.rsplit(".", 1)[-1]
    if size == "large":
        return 2
    if size == "xlarge":
        return 4
    if size.endswith("xlarge") and size[: -len("xlarge")].isdigit():
        return 4 * int(size[: -len("xlarge")])
    raise ValueError(f"cannot tell the vCPUs of {instance_type!r}: set the trainer_workers context value")


def backlog_target(workers: int, window_seconds: float = WINDOW_SECONDS, max_delay: float = MAX_DELAY_SECONDS) -> float:
    """Messages one instance clears within ``max_delay``: its workers x (max_delay / seconds per
    window). AWS's "acceptable backlog per instance" for SQS-driven groups
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-using-sqs-queue.html).

    >>> backlog_target(16, 20.0, 600)
    480.0
    """
    if workers < 1 or window_seconds <= 0 or max_delay <= 0:
        raise ValueError("need workers >= 1, window_seconds > 0 and max_delay > 0")
    return float(workers * max_delay / window_seconds)


def trainer_source(source_root: Path) -> Path:
    """A staged folder with what ``pip install`` of the trainer needs (pyproject + packages) from
    the checkout at ``source_root``; also the ``Trainer`` Greengrass component's artifact in
    ``edge`` mode."""
    root = Path(source_root)
    sources = {"pyproject.toml": root / "pyproject.toml", **{p: root / p for p in TRAINER_PACKAGES + TRAINER_FILES}}
    return stage("trainer-src", sources)


def cloudwatch_agent_config(log_group: str) -> dict:
    """The CloudWatch agent's logs section: the worker's log and cloud-init's, one stream each per
    instance (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-Agent-Configuration-File-Details.html)."""
    files = [(TRAINER_LOG, "trainer"), ("/var/log/cloud-init-output.log", "cloud-init")]
    return {
        "agent": {"run_as_user": "root"},
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {"file_path": path, "log_group_name": log_group, "log_stream_name": "{instance_id}/" + stream}
                        for path, stream in files
                    ]
                }
            }
        },
    }


class TrainingQueue(Construct):
    """Window notices waiting for a trainer; failed ones move to the DLQ after ``max_receives``.

    Props:
        visibility_timeout_minutes: how long a trainer owns a notice (default 45 min: a c5.4xlarge
            trains a window in well under that).
        max_receives: deliveries before the DLQ (default 6). A trainer stopped by SIGTERM (scale-in,
            reboot) makes its message visible again at once, and SQS counts that receive too; a bad
            window fails at parsing and is made visible again at once (the worker's
            ``bad_visibility`` 0), so it still reaches the DLQ within seconds.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        visibility_timeout_minutes: int = 45,
        max_receives: int = 6,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = encrypted_queue(self, "DLQ", retention_period=Duration.days(14))
        self.queue = encrypted_queue(
            self,
            "Queue",
            visibility_timeout=Duration.minutes(visibility_timeout_minutes),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=max_receives),
        )

    def backlog(self) -> cw.IMetric:
        """Visible + in-flight messages: scaling in on 'visible' alone would stop busy trainers."""
        return cw.MathExpression(
            expression="visible + inflight",
            using_metrics={
                "visible": self.queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(1)),
                "inflight": self.queue.metric_approximate_number_of_messages_not_visible(period=Duration.minutes(1)),
            },
            label="training backlog",
            period=Duration.minutes(1),
        )


class Trainer(Construct):
    """``hybridstream train worker`` on EC2, in an Auto Scaling group that follows the queue.

    Networking: a VPC over two AZs, private subnets with one NAT gateway (pip installs
    TensorFlow from PyPI at boot), an S3 gateway endpoint and SQS/SSM interface endpoints (so
    the data path never crosses the NAT), VPC flow logs.

    Props:
        source: the staged trainer package folder (:func:`trainer_source`), shipped as an asset.
        instance_type: default ``c5.4xlarge`` (16 vCPU, 32 GiB: see docs/deploy.md for cost).
        min_capacity / max_capacity: default 0 / 2; 0 lets the group scale in to zero.
        volume_gib: encrypted gp3 root volume (default 60).
        interface_endpoints: create the SQS/SSM interface endpoints (default True).
        notifications: SNS topic for scaling events (default none).
        speed_model_name: the worker's ``--name`` (default ``speed-{thing}``: one speed model per
            device, the worker fills in ``{thing}`` from each window notice).
        workers: trainings at once per instance (default: the instance type's vCPUs,
            :func:`instance_vcpus`); each worker gets one TensorFlow thread (training_job.pool).
        window_seconds / max_delay_seconds: seconds one worker takes per window and the acceptable
            wait of a window; the scaling target is :func:`backlog_target` of them.

    Scaling (issue 23): target tracking on the backlog per instance (metric math, ``(visible +
    in flight) / in-service instances``) against the messages one instance clears in
    ``max_delay_seconds``, the scheme AWS recommends for SQS-driven groups; plus one step
    policy that wakes an empty group (target tracking multiplies the current capacity, so it
    cannot leave 0): backlog >= 1 -> at least ``max(1, min_capacity)`` instances. Scale-in does not
    stop a training: each instance protects itself from scale-in while any of its workers is
    busy (training_job.protection), so the group terminates idle instances only.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: TrainingQueue,
        windows_bucket: s3.IBucket,
        models_bucket: s3.IBucket,
        source: Path,
        instance_type: str = "c5.4xlarge",
        min_capacity: int = 0,
        max_capacity: int = 2,
        volume_gib: int = 60,
        interface_endpoints: bool = True,
        notifications: sns.ITopic | None = None,
        speed_model_name: str = "speed-{thing}",
        batch_model_name: str = "batch",
        workers: int | None = None,
        window_seconds: float = WINDOW_SECONDS,
        max_delay_seconds: int = MAX_DELAY_SECONDS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.workers = workers or instance_vcpus(instance_type)
        self.backlog_target = backlog_target(self.workers, window_seconds, max_delay_seconds)
        # a name of our own: the user data tells the worker the group it protects itself in (a
        # reference to the group from its own launch template would be a circular dependency)
        self.group_name = f"{Stack.of(self).stack_name}-trainer"
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="trainer", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        # retained one month and deleted with the stack (the default group never expires and survives destroy)
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogGroup", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group))
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=self.vpc, description="trainer: no inbound, HTTPS out", allow_all_outbound=True
        )
        if interface_endpoints:
            endpoint_sg = ec2.SecurityGroup(
                self,
                "EndpointSecurityGroup",
                vpc=self.vpc,
                description="VPC endpoints: HTTPS from trainers only",
                allow_all_outbound=False,
            )
            endpoint_sg.add_ingress_rule(self.security_group, ec2.Port.tcp(443), "trainer instances")
            for name, service in (
                ("Sqs", ec2.InterfaceVpcEndpointAwsService.SQS),
                ("Ssm", ec2.InterfaceVpcEndpointAwsService.SSM),
                ("SsmMessages", ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES),
                ("Ec2Messages", ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES),
                # the CloudWatch agent ships the trainer's log through this endpoint, not the NAT
                ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
            ):
                self.vpc.add_interface_endpoint(
                    name, service=service, private_dns_enabled=True, open=False, security_groups=[endpoint_sg]
                )

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="hybridstream trainer: read windows, write models, consume the training queue",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWindows", actions=["s3:GetObject"], resources=[windows_bucket.arn_for_objects("windows/*")]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListWindows",
                actions=["s3:ListBucket"],
                # so a missing window is a 404 (the worker sends it to the DLQ at once), not a 403
                # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html). No s3:prefix
                # condition: S3 does not apply it to a GET (still 403). The bucket holds windows/ (all of
                # which the trainer may read anyway) and the edge's forecasts/<thing>/: the trainer can
                # list those keys, not read them. The worker also lists windows/<thing>/ with it: each
                # speed model trains on the thing's last K windows (training_job.recent_windows).
                resources=[windows_bucket.bucket_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteModels",
                actions=["s3:PutObject", "s3:GetObject"],
                # published models, and the ones the guardrail/parity check refused
                resources=[models_bucket.arn_for_objects("models/*"), models_bucket.arn_for_objects("rejected/*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListModels",
                actions=["s3:ListBucket"],
                # no s3:prefix condition: without ListBucket on the key's prefix S3 answers a
                # HEAD/GET of a missing key (a new version's manifest.json, a first LATEST) with
                # 403 instead of 404, which training_job.publish treats as an error. The bucket
                # holds only models/ and rejected/, both the trainer's own output.
                resources=[models_bucket.bucket_arn],
            )
        )
        queue.queue.grant_consume_messages(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ProtectSelfWhileTraining",
                actions=["autoscaling:SetInstanceProtection"],
                # the group's ARN holds a UUID known only once it exists: the name pins it
                resources=[
                    Stack.of(self).format_arn(
                        service="autoscaling",
                        resource="autoScalingGroup",
                        resource_name=f"*:autoScalingGroupName/{self.group_name}",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        # instances scale to zero: their journal dies with them, so the worker's log goes to CloudWatch
        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ShipLogs",
                actions=["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )

        source = s3_assets.Asset(self, "Source", path=str(source))
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadOwnSource",
                actions=["s3:GetObject"],
                resources=[source.bucket.arn_for_objects(source.s3_object_key)],
            )
        )
        self.source_asset = source
        user_data = self._user_data(
            source,
            queue.queue.queue_url,
            windows_bucket.bucket_name,
            models_bucket.bucket_name,
            speed_model_name,
            self.log_group.log_group_name,
            {
                "HYBRIDSTREAM_TRAINER_WORKERS": str(self.workers),
                "HYBRIDSTREAM_TRAINER_GROUP": self.group_name,
                # each speed model is fine-tuned from models/<this>/LATEST (read with WriteModels' GetObject)
                "HYBRIDSTREAM_BATCH_MODEL_NAME": batch_model_name,
            },
        )

        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            role=self.role,
            user_data=user_data,
            require_imdsv2=True,
            detailed_monitoring=True,
            security_group=self.security_group,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        volume_gib, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3, delete_on_termination=True
                    ),
                )
            ],
        )
        self.group = autoscaling.AutoScalingGroup(
            self,
            "Group",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            auto_scaling_group_name=self.group_name,
            launch_template=self.launch_template,
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            notifications=[autoscaling.NotificationConfiguration(topic=notifications)] if notifications else None,
            group_metrics=[autoscaling.GroupMetrics.all()],
        )
        self._scale_on_backlog(queue, min_capacity)

    def _scale_on_backlog(self, queue: TrainingQueue, min_capacity: int) -> None:
        """Target tracking on the backlog per instance, and the wake-up step from 0 (class docstring)."""
        # Backlog (visible + in flight, a whole number: the boundary at 0.5) >= 1 -> at least
        # max(1, min) instances; 0 for 3 minutes (nothing waiting, nothing training) -> min. "When
        # multiple scaling policies are in force at the same time, ... Amazon EC2 Auto Scaling
        # chooses the policy that provides the largest capacity for both scale out and scale in"
        # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scale-based-on-demand.html#multiple-scaling-policies):
        # this is a floor under the target tracking, never a cap.
        self.group.scale_on_metric(
            "WakeUp",
            metric=queue.backlog(),
            adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
            scaling_steps=[
                autoscaling.ScalingInterval(upper=SCALE_BOUNDARY, change=min_capacity),
                autoscaling.ScalingInterval(lower=SCALE_BOUNDARY, change=max(1, min_capacity)),
            ],
            evaluation_periods=3,
        )

        def stat(metric_id: str, namespace: str, name: str, dimension: tuple[str, str], statistic: str):
            return autoscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                id=metric_id,
                return_data=False,
                metric_stat=autoscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty(
                    metric=autoscaling.CfnScalingPolicy.MetricProperty(
                        namespace=namespace,
                        metric_name=name,
                        dimensions=[
                            autoscaling.CfnScalingPolicy.MetricDimensionProperty(name=dimension[0], value=dimension[1])
                        ],
                    ),
                    stat=statistic,
                ),
            )

        queue_name = ("QueueName", queue.queue.queue_name)
        self.scaling_policy = autoscaling.CfnScalingPolicy(
            self,
            "BacklogPerInstance",
            auto_scaling_group_name=self.group.auto_scaling_group_name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=INSTANCE_WARMUP_SECONDS,
            target_tracking_configuration=autoscaling.CfnScalingPolicy.TargetTrackingConfigurationProperty(
                target_value=self.backlog_target,
                customized_metric_specification=autoscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=[
                        stat("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible", queue_name, "Sum"),
                        stat("inflight", "AWS/SQS", "ApproximateNumberOfMessagesNotVisible", queue_name, "Sum"),
                        stat(
                            "instances",
                            "AWS/AutoScaling",
                            "GroupInServiceInstances",
                            ("AutoScalingGroupName", self.group.auto_scaling_group_name),
                            "Average",
                        ),
                        autoscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="backlog_per_instance",
                            expression=BACKLOG_PER_INSTANCE,
                            label="training backlog per in-service instance",
                            return_data=True,
                        ),
                    ]
                ),
            ),
        )
        self.scaling_policy.node.add_dependency(self.group)

    @staticmethod
    def _user_data(
        source: s3_assets.Asset,
        queue_url: str,
        windows: str,
        models: str,
        name: str,
        log_group: str,
        extra_env: dict[str, str],
    ) -> ec2.UserData:
        """Install the repo's package into a venv and run the worker with training_job's own
        hardened systemd unit (training_job/deploy/), configured by /etc/hybridstream/trainer.env.
        The CloudWatch agent (started first, so a failed install is visible too) ships the worker's
        output (a drop-in sends it to /var/log/hybridstream/trainer.log) and cloud-init's log to
        ``log_group``, one stream per instance."""
        region = Stack.of(source).region
        user_data = ec2.UserData.for_linux()
        zip_path = user_data.add_s3_download_command(
            bucket=source.bucket, bucket_key=source.s3_object_key, local_file="/opt/hybridstream/src.zip"
        )
        unit = "/etc/systemd/system/hybridstream-trainer.service"
        agent_config = json.dumps(cloudwatch_agent_config(log_group), indent=1)
        user_data.add_commands(
            "set -euxo pipefail",
            "dnf install -y amazon-cloudwatch-agent",
            f"cat > {AGENT_CONFIG} <<'AGENT'",
            agent_config,
            "AGENT",
            "mkdir -p /var/log/hybridstream",
            f"{AGENT_CTL} -a fetch-config -m ec2 -s -c file:{AGENT_CONFIG}",
            "dnf install -y python3.11 python3.11-pip unzip",
            "rm -rf /opt/hybridstream/src && mkdir -p /opt/hybridstream/src /etc/hybridstream",
            f"unzip -q -o {zip_path} -d /opt/hybridstream/src",
            "python3.11 -m venv /opt/hybridstream/venv",
            "/opt/hybridstream/venv/bin/pip install -q --upgrade pip",
            "/opt/hybridstream/venv/bin/pip install -q -r /opt/hybridstream/src/training_job/requirements.txt",
            "/opt/hybridstream/venv/bin/pip install -q --no-deps /opt/hybridstream/src",
            "cat > /etc/hybridstream/trainer.env <<'ENV'",
            f"QUEUE_URL={queue_url}",
            f"HYBRIDSTREAM_WINDOWS_BUCKET={windows}",
            f"HYBRIDSTREAM_MODELS_BUCKET={models}",
            f"AWS_REGION={region}",
            f"AWS_DEFAULT_REGION={region}",
            *(f"{key}={value}" for key, value in extra_env.items()),
            "ENV",
            "chmod 0640 /etc/hybridstream/trainer.env",
            f"install -m 0644 /opt/hybridstream/src/training_job/deploy/hybridstream-trainer.service {unit}",
            # the model name is a deploy-time setting: override ExecStart in a drop-in
            f"mkdir -p {unit}.d",
            f"cat > {unit}.d/model-name.conf <<'UNIT'",
            "[Service]",
            "ExecStart=",
            f"ExecStart=/opt/hybridstream/venv/bin/hybridstream train worker --queue ${{QUEUE_URL}} --name {name}",
            "UNIT",
            # systemd opens the file before dropping privileges: the hardened unit needs no write access
            f"cat > {unit}.d/cloudwatch-log.conf <<'UNIT'",
            "[Service]",
            f"StandardOutput=append:{TRAINER_LOG}",
            "StandardError=inherit",
            "UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now hybridstream-trainer.service",
        )
        return user_data
