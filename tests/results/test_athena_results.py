"""``hybridstream results`` against a deployed stack: Athena through boto3 (start, poll, fetch), the stack's
outputs from CloudFormation and the things from S3, all with botocore's Stubber, which validates every
request and response against botocore's service models (botocore/data/athena/2017-05-18/service-2.json);
Athena gets the same SQL as the local engine and its answer prints exactly as the local one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from hybridstream.cli import main
from hybridstream.results.local import LocalEngine, local_files
from hybridstream.results.query import Request, run, utc_text
from tests.results.synthetic import edge_run, forecasts_records, window_objects

REGION = "eu-west-1"
STACK_ID = f"arn:aws:cloudformation:{REGION}:123456789012:stack/HybridStream/abc"
OUTPUTS = {
    "ForecastsWorkGroup": "hybridstream-forecasts",
    "ForecastsDatabase": "hybridstream",
    "WindowsBucket": "hs-windows",
}


class StubbedContext:
    """An AwsContext whose clients are Stubber-wrapped (the fleet CLI's test seam: args.aws_context)."""

    region = REGION

    def __init__(self) -> None:
        self.clients = {
            s: boto3.client(s, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
            for s in ("cloudformation", "s3", "athena")
        }
        self.stubs = {s: Stubber(c) for s, c in self.clients.items()}

    def client(self, service: str):
        return self.clients[service]


def _athena_rows(columns: list[str], rows: list[tuple], kinds: dict[str, str]) -> list[dict]:
    def cell(v):
        return (
            {}
            if v is None
            else {
                "VarCharValue": repr(v) if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)
            }
        )

    header = {"Data": [{"VarCharValue": c} for c in columns]}
    return [header, *({"Data": [cell(v) for v in row]} for row in rows)], [
        {
            "Name": c,
            "Label": c,
            "Type": kinds.get(c, "varchar"),
            "CatalogName": "hive",
            "SchemaName": "",
            "TableName": "",
            "Nullable": "UNKNOWN",
            "Precision": 0,
            "Scale": 0,
            "CaseSensitive": True,
        }
        for c in columns
    ]


@pytest.fixture
def local(tmp_path):
    for thing, seed in (("pi-1", 1), ("pi-2", 2)):
        for key, body in window_objects(thing, forecasts_records(edge_run(seed=seed))).items():
            (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / key).write_bytes(body)
    return LocalEngine(local_files(tmp_path))


def test_athena_gives_the_local_answer(local, capsys):
    request = Request("rmse", since=utc_text("2017-01-14"), until=utc_text("2017-01-17"))
    columns, rows = local.query(request.sql("forecasts", prune=False))
    kinds = {c: "double" for c in ("batch", "speed", "static", "dynamic", "persistence")}
    kinds |= {"readings": "bigint", "scored": "bigint"}
    data, info = _athena_rows(columns, rows, kinds)

    ctx = StubbedContext()
    now = datetime(2026, 12, 6, tzinfo=UTC)
    ctx.stubs["cloudformation"].add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "HybridStream",
                    "StackId": STACK_ID,
                    "StackStatus": "UPDATE_COMPLETE",
                    "CreationTime": now,
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()],
                }
            ]
        },
        {"StackName": "HybridStream"},
    )
    ctx.stubs["s3"].add_response(
        "list_objects_v2",
        {"CommonPrefixes": [{"Prefix": "forecasts/pi-1/"}, {"Prefix": "forecasts/pi-2/"}], "IsTruncated": False},
        {"Bucket": "hs-windows", "Prefix": "forecasts/", "Delimiter": "/"},
    )
    athena = ctx.stubs["athena"]
    sent = Request("rmse", things=["pi-1", "pi-2"], since=request.since, until=request.until)
    sql = sent.sql('"hybridstream"."forecasts"')
    assert "thing IN ('pi-1', 'pi-2') AND day BETWEEN '2017/01/13' AND '2017/01/17'" in sql  # partitions pruned
    athena.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {
            "QueryString": sql,
            "WorkGroup": "hybridstream-forecasts",
            "QueryExecutionContext": {"Database": "hybridstream"},
        },
    )
    for state in ("QUEUED", "RUNNING", "SUCCEEDED"):
        athena.add_response(
            "get_query_execution",
            {
                "QueryExecution": {
                    "QueryExecutionId": "q-1",
                    "Status": {"State": state},
                    "Statistics": {"DataScannedInBytes": 123456 if state == "SUCCEEDED" else 0},
                }
            },
            {"QueryExecutionId": "q-1"},
        )
    athena.add_response(
        "get_query_results",
        {"ResultSet": {"Rows": data[:3], "ResultSetMetadata": {"ColumnInfo": info}}, "NextToken": "t2"},
        {"QueryExecutionId": "q-1", "MaxResults": 1000},
    )
    athena.add_response(
        "get_query_results",
        {"ResultSet": {"Rows": data[3:], "ResultSetMetadata": {"ColumnInfo": info}}},
        {"QueryExecutionId": "q-1", "MaxResults": 1000, "NextToken": "t2"},
    )
    for stub in ctx.stubs.values():
        stub.activate()

    from hybridstream.results import cli as results_cli

    args = _parse("rmse", "--since", "2017-01-14", "--until", "2017-01-17", "--json")
    args.aws_context = ctx
    results_cli.POLL_S = 0.0
    capsys.readouterr()
    assert results_cli.main(args) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == run(local, request, "forecasts", prune=False)
    assert "athena q-1: RUNNING" in out.err and "athena q-1: SUCCEEDED" in out.err and "0.12 MB scanned" in out.err
    for stub in ctx.stubs.values():
        stub.assert_no_pending_responses()


def test_a_failed_query_shows_athenas_reason():
    from hybridstream.results.athena import AthenaEngine, AthenaError

    client = boto3.client("athena", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_response(
            "start_query_execution",
            {"QueryExecutionId": "q-2"},
            {"QueryString": "SELECT 1", "WorkGroup": "wg", "QueryExecutionContext": {"Database": "db"}},
        )
        reason = "Query exhausted resources: bytes scanned limit was exceeded (BytesScannedCutoffPerQuery)"
        stub.add_response(
            "get_query_execution",
            {"QueryExecution": {"QueryExecutionId": "q-2", "Status": {"State": "FAILED", "StateChangeReason": reason}}},
            {"QueryExecutionId": ANY},
        )
        with pytest.raises(AthenaError, match="bytes scanned limit"):
            AthenaEngine(client, "wg", "db", sleep=lambda s: None).query("SELECT 1")


def _parse(*argv: str):
    from hybridstream.cli import build_parser

    return build_parser().parse_args(["results", *argv])


def test_help_lists_the_queries(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["results", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(q in text for q in ("rmse", "worst", "readings", "anomalies", "--local", "--plot", "--json"))
