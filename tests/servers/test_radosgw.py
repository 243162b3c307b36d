"""The local S3 server the trainer's tests rely on: real round trips through Ceph radosgw."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.s3


def test_put_get_list_delete(s3_client, s3_bucket):
    for i in range(3):
        s3_client.put_object(Bucket=s3_bucket, Key=f"models/m/v{i}/model.tflite", Body=bytes([i]) * 1000)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="models/m/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [f"models/m/v{i}/model.tflite" for i in range(3)]
    assert s3_client.get_object(Bucket=s3_bucket, Key="models/m/v2/model.tflite")["Body"].read() == b"\x02" * 1000
    s3_client.delete_object(Bucket=s3_bucket, Key="models/m/v0/model.tflite")
    with pytest.raises(ClientError) as err:
        s3_client.head_object(Bucket=s3_bucket, Key="models/m/v0/model.tflite")
    assert err.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_wrong_secret_is_refused(s3_server, s3_bucket):
    import boto3

    bad = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key="not-the-secret",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as err:
        bad.put_object(Bucket=s3_bucket, Key="x", Body=b"x")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_keys_are_generated_at_run_time(s3_server):
    assert len(s3_server.access_key) >= 16 and len(s3_server.secret_key) >= 30
    assert s3_server.keys_file.stat().st_mode & 0o077 == 0


def test_a_taken_port_is_refused_clearly(s3_server, tmp_path):
    from hybridstream.servers.radosgw import RadosGateway, RadosGatewayError

    other = RadosGateway(port=s3_server.port, state_dir=tmp_path / "other")
    with pytest.raises(RadosGatewayError, match="already in use"):
        other.start()
