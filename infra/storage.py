"""Storage: the windows, models and results buckets, Athena's query-results bucket, and their access-log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


class Storage(Construct):
    """Three data buckets with secure defaults, and one bucket for their server access logs.

    Every bucket: S3-managed encryption, a TLS-only bucket policy (``aws:SecureTransport``
    deny), all public access blocked, ACLs disabled (bucket-owner enforced).

    Props:
        retain_data: keep buckets and objects on ``cdk destroy`` (default False: objects are
            auto-deleted and buckets removed).
        window_expiry_days: windows are training input, kept this long (default 30).
        results_ia_days: results move to Infrequent Access after this many days (default 30).
        model_noncurrent_days: noncurrent model object versions are kept this long (default 90).
        query_results_days: Athena query results are kept this long (default 7).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retain_data: bool = False,
        window_expiry_days: int = 30,
        results_ia_days: int = 30,
        model_noncurrent_days: int = 90,
        query_results_days: int = 7,
    ) -> None:
        super().__init__(scope, construct_id)
        self._retain = retain_data
        self.access_logs = self._bucket(
            "AccessLogs",
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(90))],
            logs=False,
        )
        self.windows = self._bucket(
            "Windows",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-windows", prefix="windows/", expiration=Duration.days(window_expiry_days)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )
        self.models = self._bucket(
            "Models",
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-noncurrent", noncurrent_version_expiration=Duration.days(model_noncurrent_days)
                ),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )
        # models/<name>/LATEST written -> EventBridge -> model_published. Set on the L1 resource: the L2
        # flag would add a notifications custom resource (an extra Lambda) for the same setting.
        cfn_models: s3.CfnBucket = self.models.node.default_child
        cfn_models.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)
        self.results = self._bucket(
            "Results",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="results-to-ia",
                    prefix="results/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(results_ia_days),
                        )
                    ],
                ),
            ],
        )

        # Athena's query results (hybridstream results): written by the workgroup, kept a week
        self.query_results = self._bucket(
            "QueryResults",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-query-results", expiration=Duration.days(query_results_days)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )

    def _bucket(self, name: str, *, logs: bool = True, **kwargs) -> s3.Bucket:
        return s3.Bucket(
            self,
            name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs if logs else None,
            server_access_logs_prefix=f"{name.lower()}/" if logs else None,
            removal_policy=RemovalPolicy.RETAIN if self._retain else RemovalPolicy.DESTROY,
            auto_delete_objects=not self._retain,
            **kwargs,
        )
