"""The forecast history's cloud side, on the synthesized template (offline): the Glue table over the
forecasts key layout with partition projection (no crawler), the Athena workgroup's enforced, encrypted
result location and per-query scan limit, the named queries, least-privilege access.

Partition projection properties: https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html
(``injected`` for thing: https://docs.aws.amazon.com/athena/latest/ug/partition-projection-dynamic-id-partitioning.html).
"""

from __future__ import annotations

import json

from infra.forecast_queries import NAMED
from model_contract.forecasts import ALL_FIELDS, PARTITIONS


def _one(b, kind: str) -> dict:
    found = b.resources(kind)
    assert len(found) == 1, list(found)
    return next(iter(found.values()))["Properties"]


def _flat(value) -> str:
    """A CloudFormation string (maybe an Fn::Join) with the references as <LogicalId>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(_flat(v) for v in value["Fn::Join"][1])
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    return json.dumps(value)


def test_the_table_projects_thing_and_day_over_the_key_layout(default):
    table = _one(default, "AWS::Glue::Table")["TableInput"]
    db = _one(default, "AWS::Glue::Database")["DatabaseInput"]
    assert db["Name"] == "hybridstream" and table["Name"] == "forecasts"
    assert default.resources("AWS::Glue::Crawler") == {}  # projection instead of a crawler
    p = table["Parameters"]
    assert p["projection.enabled"] == "true"
    assert p["projection.thing.type"] == "injected"
    assert (p["projection.day.type"], p["projection.day.format"]) == ("date", "yyyy/MM/dd")
    assert p["projection.day.range"] == "2015/01/01,NOW" and p["projection.day.interval.unit"] == "DAYS"
    windows = next(k for k in default.resources("AWS::S3::Bucket") if k.startswith("StorageWindows"))
    assert _flat(p["storage.location.template"]) == f"s3://<{windows}>/forecasts/${{thing}}/${{day}}/"
    assert [k["Name"] for k in table["PartitionKeys"]] == [n for n, _, _ in PARTITIONS] == ["thing", "day"]
    sd = table["StorageDescriptor"]
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [(n, t) for n, t, _ in ALL_FIELDS]
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"  # columns by name
    assert _flat(sd["Location"]) == f"s3://<{windows}>/forecasts/"


def test_the_workgroup_enforces_encrypted_results_and_a_scan_limit(default):
    wg = _one(default, "AWS::Athena::WorkGroup")
    conf = wg["WorkGroupConfiguration"]
    assert wg["Name"] == "hybridstream-forecasts"
    assert conf["EnforceWorkGroupConfiguration"] is True  # a client cannot override location or encryption
    assert conf["BytesScannedCutoffPerQuery"] == 1_000_000_000
    result = conf["ResultConfiguration"]
    assert result["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    bucket = next(k for k in default.resources("AWS::S3::Bucket") if k.startswith("StorageQueryResults"))
    assert _flat(result["OutputLocation"]) == f"s3://<{bucket}>/athena/"
    props = default.raw["Resources"][bucket]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True


def test_the_named_queries(default):
    queries = {q["Properties"]["Name"]: q["Properties"] for q in default.resources("AWS::Athena::NamedQuery").values()}
    assert sorted(queries) == sorted(n for n, _, _ in NAMED)
    for q in queries.values():
        assert q["WorkGroup"] == "hybridstream-forecasts" and q["Database"] == "hybridstream"
        assert '"hybridstream"."forecasts"' in q["QueryString"] and "?" in q["QueryString"]
    assert "persistence" in queries["forecasts-rmse-by-day"]["QueryString"]
    assert "anomaly = true" in queries["forecasts-anomalies-of-a-device"]["QueryString"]


def test_the_query_policy_is_least_privilege(default):
    policy = next(
        r["Properties"] for k, r in default.resources("AWS::IAM::ManagedPolicy").items() if k.startswith("Forecasts")
    )
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert _flat(by_sid["RunQueriesInTheWorkgroup"]["Resource"]).endswith(":workgroup/hybridstream-forecasts")
    assert not any(
        a.startswith("athena:Delete") or a == "athena:*" for a in by_sid["RunQueriesInTheWorkgroup"]["Action"]
    )
    assert by_sid["ReadForecasts"]["Action"] == "s3:GetObject"
    assert _flat(by_sid["ReadForecasts"]["Resource"]).endswith("/forecasts/*")
    assert by_sid["ListForecasts"]["Condition"] == {"StringLike": {"s3:prefix": ["forecasts/*", "forecasts/"]}}
    assert _flat(by_sid["QueryResults"]["Resource"]).endswith("/athena/*")
    for statement in by_sid.values():
        assert statement["Resource"] != "*" and statement["Effect"] == "Allow"
    outputs = default.raw["Outputs"]
    assert {"ForecastsDatabase", "ForecastsTable", "ForecastsWorkGroup", "ForecastsQueryPolicy"} <= set(outputs)
