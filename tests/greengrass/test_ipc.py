"""The runner's Greengrass IPC server against the real awsiotsdk IPC client (V2), over a Unix socket.

The server follows the nucleus's mqttproxy authorization (AuthorizationHandler, MQTT_STYLE look-up:
https://github.com/aws-greengrass/aws-greengrass-nucleus/blob/main/src/main/java/com/aws/greengrass/authorization/AuthorizationHandler.java
) and the event-stream RPC framing of aws-c-event-stream.
"""

from __future__ import annotations

import time

import pytest

from hybridstream.greengrass import ipc

POLICY = {
    ipc.MQTT_PROXY: {
        "pub": {"operations": [ipc.PUBLISH], "resources": ["hybridstream/+/windows"]},
        "sub": {"operations": [ipc.SUBSCRIBE], "resources": ["hybridstream/models/+/published"]},
    }
}


def test_codec_round_trip():
    raw = ipc.encode({":message-type": 0, ":stream-id": 7, "operation": "x", "flag": True}, b'{"a": 1}')
    prelude_total = int.from_bytes(raw[:4], "big")
    assert prelude_total == len(raw)
    headers_len = int.from_bytes(raw[4:8], "big")
    headers = ipc.decode_headers(raw[12 : 12 + headers_len])
    assert headers == {":message-type": 0, ":stream-id": 7, "operation": "x", "flag": True}
    assert raw[12 + headers_len : -4] == b'{"a": 1}'


def test_awsiot_client_publishes_subscribes_and_is_refused(tmp_path, monkeypatch):
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    server = ipc.IpcServer(tmp_path / "ipc.socket").start()
    try:
        token = server.register("hybridstream.EdgeApp", POLICY)
        monkeypatch.setenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", str(server.path))
        monkeypatch.setenv("SVCUID", token)
        client = GreengrassCoreIPCClientV2()
        got = []
        client.subscribe_to_iot_core(
            topic_name="hybridstream/models/speed-pi-1/published",
            qos="1",
            on_stream_event=lambda e: got.append((e.message.topic_name, e.message.payload)),
        )
        client.publish_to_iot_core(topic_name="hybridstream/pi-1/windows", qos="1", payload=b"notice")
        with pytest.raises(Exception) as refused:  # noqa: B017 (checked by name below)
            client.publish_to_iot_core(topic_name="hybridstream/models/speed-pi-1/published", qos="1", payload=b"x")
        assert type(refused.value).__name__ == "UnauthorizedError"
        assert "not authorized" in refused.value.message
        assert server.cloud.deliver("hybridstream/models/speed-pi-1/published", b"model notice") == 1
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [("hybridstream/models/speed-pi-1/published", b"model notice")]
        assert server.cloud.published == [("hybridstream.EdgeApp", "hybridstream/pi-1/windows", b"notice")]
        assert server.cloud.refused == [
            ("hybridstream.EdgeApp", ipc.PUBLISH, "hybridstream/models/speed-pi-1/published")
        ]
        client.close()
    finally:
        server.stop()


def test_unknown_token_is_refused(tmp_path, monkeypatch):
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    server = ipc.IpcServer(tmp_path / "ipc.socket").start()
    try:
        monkeypatch.setenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", str(server.path))
        monkeypatch.setenv("SVCUID", "not-a-component")
        with pytest.raises(Exception):  # noqa: B017 (the SDK raises its own connection error types)
            GreengrassCoreIPCClientV2().publish_to_iot_core(topic_name="a/b", qos="1", payload=b"x")
        assert server.cloud.published == []
    finally:
        server.stop()
