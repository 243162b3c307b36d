"""Buckets: encryption, TLS-only policies, public access blocked, access logs, lifecycle, destroy."""

from __future__ import annotations

from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template

from infra.app_builder import cdk_json_context
from infra.storage import Storage


def _policy_for(b, bucket_id: str) -> dict:
    for policy in b.resources("AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket_id}:
            return policy["Properties"]["PolicyDocument"]
    raise AssertionError(f"no bucket policy for {bucket_id}")


def test_every_bucket_is_encrypted_private_and_tls_only(default):
    buckets = default.resources("AWS::S3::Bucket")
    assert len(buckets) == 5  # windows, models, results, Athena query results, access logs
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        statements = _policy_for(default, logical_id)["Statement"]
        tls = [
            s
            for s in statements
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert tls and tls[0]["Action"] == "s3:*", logical_id


def test_data_buckets_log_to_the_access_log_bucket(default):
    buckets = default.resources("AWS::S3::Bucket")
    logged = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(logged) == 4
    targets = {b["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"] for b in logged}
    assert len(targets) == 1 and targets.pop().startswith("StorageAccessLogs")


def test_models_bucket_is_versioned_and_announces_to_eventbridge(default):
    default.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        },
    )
    default.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like(
                {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Created"],
                    "detail": Match.object_like({"object": {"key": [{"wildcard": "models/*/LATEST"}]}}),
                }
            )
        },
    )


def test_lifecycle_rules(default):
    default.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Id": "expire-windows", "Prefix": "windows/", "ExpirationInDays": 30})]
                )
            }
        },
    )
    default.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with([Match.object_like({"NoncurrentVersionExpiration": {"NoncurrentDays": 90}})])
            }
        },
    )


def test_default_destroys_buckets_and_their_objects(default):
    for bucket in default.resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Delete"
    assert len(default.resources("Custom::S3AutoDeleteObjects")) == 5


def test_retain_data_keeps_buckets():
    stack = Stack(App(context=cdk_json_context()), "RetainTest")
    Storage(stack, "Storage", retain_data=True)
    raw = Template.from_stack(stack).to_json()
    buckets = [r for r in raw["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    assert buckets and all(b["DeletionPolicy"] == "Retain" for b in buckets)
    assert not [r for r in raw["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"]
