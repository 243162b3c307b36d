"""The forecast history for Athena: a Glue table over ``forecasts/`` in the windows bucket, a workgroup, named queries.

- **Glue database + table** (JSON Lines, gzip; columns from :mod:`model_contract.forecasts`),
  partitioned by ``thing`` and ``day`` with *partition projection* (no crawler, no partition to
  add): ``thing`` is ``injected`` (a query names its things; a fleet's thing names are not known in
  advance), ``day`` is a ``date`` (``yyyy/MM/dd``, the key's path) from 2015/01/01 to NOW; the
  location template is the key layout's (:func:`model_contract.layout.forecasts_location_template`).
- **Athena workgroup** that enforces its configuration: query results in the query-results bucket,
  encrypted (SSE-S3), and a per-query scan limit (``BytesScannedCutoffPerQuery``: a query that would
  read more is cancelled, so a forgotten ``day`` filter costs at most that).
- **Named queries** (:data:`infra.forecast_queries.NAMED`): per-thing RMSE by day against
  persistence, the worst devices this week, the anomalies of one device.
- **ForecastsQueryPolicy**: a managed policy with exactly what ``hybridstream results`` needs
  (run queries in this workgroup only, read this table, read ``forecasts/`` and write the query
  results), for the operators' roles.

Partition projection: https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html;
injected: https://docs.aws.amazon.com/athena/latest/ug/partition-projection-dynamic-id-partitioning.html
"""

from __future__ import annotations

import re

from aws_cdk import Aws, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.forecast_queries import NAMED, TABLE_NAME
from model_contract.forecasts import ALL_FIELDS, PARTITIONS
from model_contract.layout import FORECASTS_DAY_FORMAT, FORECASTS_PREFIX, forecasts_location_template

DEFAULT_SCAN_LIMIT_BYTES = 1_000_000_000  # 1 GB a query (~5 M readings gzip-compressed); Athena's minimum is 10 MB
PROJECTION_START = "2015/01/01"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"


def database_name(stack_name: str) -> str:
    """A Glue database name from the stack's: lower case, ``_`` for anything else (Glue's rule).

    >>> database_name("HybridStream-dev")
    'hybridstream_dev'
    """
    return re.sub(r"[^a-z0-9_]", "_", stack_name.lower())


def projection_parameters(bucket_name: str) -> dict[str, str]:
    """The table parameters that turn on partition projection over the forecasts key layout."""
    return {
        "classification": "json",
        "compressionType": "gzip",
        "projection.enabled": "true",
        "projection.thing.type": "injected",
        "projection.day.type": "date",
        "projection.day.format": FORECASTS_DAY_FORMAT,
        "projection.day.range": f"{PROJECTION_START},NOW",
        "projection.day.interval": "1",
        "projection.day.interval.unit": "DAYS",
        "storage.location.template": forecasts_location_template(bucket_name),
    }


class Forecasts(Construct):
    """Glue database/table, Athena workgroup and named queries over ``<windows bucket>/forecasts/``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        windows_bucket: s3.IBucket,
        query_results_bucket: s3.IBucket,
        name_prefix: str,
        scan_limit_bytes: int = DEFAULT_SCAN_LIMIT_BYTES,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.database_name = database_name(stack.stack_name)
        self.table_name = TABLE_NAME
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description="hybridstream: the fleet's forecast history"
            ),
        )
        columns = [glue.CfnTable.ColumnProperty(name=n, type=t, comment=c) for n, t, c in ALL_FIELDS]
        partitions = [glue.CfnTable.ColumnProperty(name=n, type=t, comment=c) for n, t, c in PARTITIONS]
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=Aws.ACCOUNT_ID,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=self.table_name,
                description="One row per reading a Pi spooled: actual, batch/speed/dynamic forecasts made for it",
                table_type="EXTERNAL_TABLE",
                parameters=projection_parameters(windows_bucket.bucket_name),
                partition_keys=partitions,
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=columns,
                    location=f"s3://{windows_bucket.bucket_name}/{FORECASTS_PREFIX}/",
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library=JSON_SERDE, parameters={"ignore.malformed.json": "true"}
                    ),
                ),
            ),
        )
        self.table.add_dependency(self.database)

        self.workgroup_name = f"{name_prefix}-forecasts"
        results_location = f"s3://{query_results_bucket.bucket_name}/athena/"
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.workgroup_name,
            description="hybridstream results: forecast history queries (scan limit, encrypted results)",
            recursive_delete_option=True,
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=scan_limit_bytes,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=results_location,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        table_ref = f'"{self.database_name}"."{self.table_name}"'
        self.named_queries = []
        for name, description, sql in NAMED:
            query = athena.CfnNamedQuery(
                self,
                "Query-" + name.removeprefix("forecasts-"),
                name=name,
                description=description,
                database=self.database_name,
                query_string=sql(table_ref),
                work_group=self.workgroup_name,
            )
            query.add_dependency(self.workgroup)
            query.add_dependency(self.table)
            self.named_queries.append(query)

        self.query_policy = self._query_policy(stack, windows_bucket, query_results_bucket)

    def _query_policy(self, stack: Stack, windows: s3.IBucket, results: s3.IBucket) -> iam.ManagedPolicy:
        glue_arn = f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        workgroup_arn = f"arn:{Aws.PARTITION}:athena:{Aws.REGION}:{Aws.ACCOUNT_ID}:workgroup/{self.workgroup_name}"
        return iam.ManagedPolicy(
            self,
            "QueryPolicy",
            description="hybridstream results: query the forecast history in its Athena workgroup (read only)",
            statements=[
                iam.PolicyStatement(
                    sid="RunQueriesInTheWorkgroup",
                    actions=[
                        "athena:StartQueryExecution",
                        "athena:GetQueryExecution",
                        "athena:GetQueryResults",
                        "athena:StopQueryExecution",
                        "athena:GetWorkGroup",
                        "athena:GetNamedQuery",
                        "athena:ListNamedQueries",
                    ],
                    resources=[workgroup_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadTheTable",
                    actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                    resources=[
                        f"{glue_arn}:catalog",
                        f"{glue_arn}:database/{self.database_name}",
                        f"{glue_arn}:table/{self.database_name}/{self.table_name}",
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadForecasts",
                    actions=["s3:GetObject"],
                    resources=[windows.arn_for_objects(f"{FORECASTS_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    sid="ListForecasts",
                    actions=["s3:ListBucket"],
                    resources=[windows.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{FORECASTS_PREFIX}/*", f"{FORECASTS_PREFIX}/"]}},
                ),
                iam.PolicyStatement(
                    sid="LocateBuckets",
                    actions=["s3:GetBucketLocation"],
                    resources=[windows.bucket_arn, results.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="QueryResults",
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                    resources=[results.arn_for_objects("athena/*")],
                ),
                iam.PolicyStatement(
                    sid="ListQueryResults",
                    actions=["s3:ListBucket"],
                    resources=[results.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": ["athena/*", "athena/"]}},
                ),
                iam.PolicyStatement(
                    sid="FindTheStack",
                    actions=["cloudformation:DescribeStacks"],
                    resources=[stack.stack_id],
                ),
            ],
        )
