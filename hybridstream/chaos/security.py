"""Security checks: MQTT clients without a certificate or with a foreign CA are refused by the broker
(mutual TLS, the local IoT Core stand-in); one device's credentials cannot publish or subscribe to
another thing's topics (the synthesized IoT device policy, evaluated offline for two thing names);
no secrets in tracked files.

IoT policy evaluation follows AWS IoT Core's documented rules (offline: IoT Core cannot be called here):
- an action is allowed if an ``Allow`` statement matches and no ``Deny`` does
  (https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html);
- ``${iot:Connection.Thing.ThingName}`` is replaced by the connected thing's name
  (https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html);
- in resources ``*`` and ``?`` are policy wildcards, MQTT's ``+`` and ``#`` are literal characters
  (https://docs.aws.amazon.com/iot/latest/developerguide/pub-sub-policy.html);
- Publish/Receive are checked against ``topic/<topic>``, Subscribe against ``topicfilter/<filter>``,
  Connect against ``client/<client id>``
  (https://docs.aws.amazon.com/iot/latest/developerguide/iot-action-resources.html).
"""

from __future__ import annotations

import fnmatch
import json
import re
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import guarded
from hybridstream.servers.process import REPO_ROOT

SNAPSHOT = REPO_ROOT / "tests" / "infra" / "snapshots" / "edge-cloud.template.json"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333"}
THING_VAR = "${iot:Connection.Thing.ThingName}"
ARN = "arn:aws:iot:eu-west-1:111122223333:"


# ---- IoT policy ----------------------------------------------------------------------------------
def resolve(value: Any) -> Any:
    """CloudFormation intrinsics the device policy uses (``Fn::Join``, ``Ref`` of pseudo parameters)."""
    if isinstance(value, dict):
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(str(resolve(p)) for p in parts)
        if "Ref" in value:
            return PSEUDO.get(value["Ref"], value["Ref"])
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def device_policy(template: Path = SNAPSHOT) -> dict[str, Any]:
    """The fleet's device IoT policy document from the synthesized template, intrinsics resolved."""
    resources = json.loads(template.read_text())["Resources"]
    docs = [
        r["Properties"]["PolicyDocument"]
        for k, r in resources.items()
        if r["Type"] == "AWS::IoT::Policy" and "DevicePolicy" in k
    ]
    if len(docs) != 1:
        raise ValueError(f"expected one device policy in {template}, found {len(docs)}")
    return resolve(docs[0])


def _listify(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def _glob(pattern: str, value: str) -> bool:
    """IoT policy wildcards: ``*`` any run, ``?`` one character; everything else literal (``[`` too).

    >>> _glob("topic/a/*", "topic/a/b/c"), _glob("topic/a/+", "topic/a/x"), _glob("topic/a/+", "topic/a/+")
    (True, False, True)
    """
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def allowed(policy: dict[str, Any], thing: str, action: str, resource: str) -> bool:
    """Whether a connection of ``thing`` may do ``action`` on ``resource`` (an ARN) under ``policy``.

    >>> doc = {"Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}topic/x/{THING_VAR}/*"}]}
    >>> allowed(doc, "a", "iot:Publish", f"{ARN}topic/x/a/w"), allowed(doc, "a", "iot:Publish", f"{ARN}topic/x/b/w")
    (True, False)
    """
    allow = deny = False
    for st in _listify(policy["Statement"]):
        if not any(fnmatch.fnmatchcase(action, a) for a in _listify(st.get("Action", []))):
            continue
        if not any(_glob(r.replace(THING_VAR, thing), resource) for r in _listify(st.get("Resource", []))):
            continue
        if st.get("Effect") == "Deny":
            deny = True
        elif st.get("Effect") == "Allow":
            allow = True
    return allow and not deny


def policy_matrix(policy: dict[str, Any], a: str = "hs-pi-0001", b: str = "hs-pi-0002") -> dict[str, bool]:
    """Expectations for thing ``a``'s connection: True = must hold. Each value is whether it holds."""

    def may(action: str, res: str) -> bool:
        return allowed(policy, a, action, ARN + res)

    return {
        f"{a} may connect as itself": may("iot:Connect", f"client/{a}"),
        f"{a} may publish its own window notices": may("iot:Publish", f"topic/hybridstream/{a}/windows"),
        f"{a} may subscribe to its own speed model": may(
            "iot:Subscribe", f"topicfilter/hybridstream/models/speed-{a}/published"
        ),
        f"{a} may NOT connect as {b}": not may("iot:Connect", f"client/{b}"),
        f"{a} may NOT publish to {b}'s topics": not may("iot:Publish", f"topic/hybridstream/{b}/windows"),
        f"{a} may NOT publish to {b}'s shadow": not may("iot:Publish", f"topic/$aws/things/{b}/shadow/update"),
        f"{a} may NOT subscribe to {b}'s topics": not may("iot:Subscribe", f"topicfilter/hybridstream/{b}/*"),
        f"{a} may NOT subscribe with a wildcard across things": not may(
            "iot:Subscribe", "topicfilter/hybridstream/+/windows"
        ),
        f"{a} may NOT receive {b}'s messages": not may("iot:Receive", f"topic/hybridstream/{b}/readings"),
        f"{a} may NOT subscribe to {b}'s speed model": not may(
            "iot:Subscribe", f"topicfilter/hybridstream/models/speed-{b}/published"
        ),
    }


# ---- secrets -------------------------------------------------------------------------------------
SECRET_PATTERNS = {
    "private key block": re.compile(r"-----BEGIN( [A-Z]+)? PRIVATE KEY-----\s*\n\s*[A-Za-z0-9+/]{40,}"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key assignment": re.compile(
        r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}['\"]?(?![A-Za-z0-9/+])"
    ),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),
}


def tracked_files(repo: Path = REPO_ROOT) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    return [repo / p for p in out.decode().split("\0") if p]


def scan_secrets(files: list[Path]) -> list[tuple[str, str]]:
    """(file, kind) for every tracked text file that looks like it holds a secret."""
    found = []
    for path in files:
        try:
            if path.stat().st_size > 5_000_000:
                continue
            text = path.read_text(errors="ignore")
        except (OSError, UnicodeDecodeError):
            continue
        for kind, pattern in SECRET_PATTERNS.items():
            if pattern.search(text):
                found.append((str(path.relative_to(REPO_ROOT)), kind))
    return found


# ---- mutual TLS ----------------------------------------------------------------------------------
def _connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def mqtt_handshake(host: str, port: int, ca: Path, cert: Path | None = None, key: Path | None = None) -> str:
    """Try TLS + MQTT CONNECT; ``"connack"`` if the broker accepted, else why it refused."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    try:
        with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(_connect_packet(f"probe-{port}"))
            data = s.recv(4)
            return "connack" if data[:1] == b"\x20" else f"no connack ({data!r})"
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {type(exc).__name__}: {exc}"[:200]


def foreign_client_cert(folder: Path) -> tuple[Path, Path]:
    """A client certificate signed by a CA the broker does not trust (openssl)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "fca.key",
        "-out", "fca.crt", "-days", "2", "-subj", "/CN=foreign-ca")  # fmt: skip
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "fc.key",
        "-out", "fc.csr", "-subj", "/CN=intruder")  # fmt: skip
    run("x509", "-req", "-in", "fc.csr", "-CA", "fca.crt", "-CAkey", "fca.key", "-CAcreateserial", "-out", "fc.crt",
        "-days", "2")  # fmt: skip
    return folder / "fc.crt", folder / "fc.key"


def security(ctx: Context) -> Result:
    def body(result: Result) -> None:
        broker = ctx.servers.mosquitto()
        good = broker.client_cert("sec-good")
        with tempfile.TemporaryDirectory() as tmp:
            fcert, fkey = foreign_client_cert(Path(tmp))
            outcomes = {
                "valid certificate": mqtt_handshake(broker.host, broker.port, broker.ca, good.cert, good.key),
                "no certificate": mqtt_handshake(broker.host, broker.port, broker.ca),
                "foreign CA": mqtt_handshake(broker.host, broker.port, broker.ca, fcert, fkey),
            }
        result.figures["mqtt_handshakes"] = outcomes
        ok = outcomes["valid certificate"] == "connack"
        result.check("MQTT: a client with a valid certificate connects (control)", ok)
        result.check("MQTT: a client without a certificate is refused", outcomes["no certificate"] != "connack")
        result.check("MQTT: a client with a foreign CA's certificate is refused", outcomes["foreign CA"] != "connack")
        matrix = policy_matrix(device_policy())
        for name, ok in matrix.items():
            result.check(f"IoT policy: {name}", ok)
        files = tracked_files()
        leaks = scan_secrets(files)
        result.figures["tracked_files_scanned"] = len(files)
        result.figures["secret_findings"] = leaks[:10]
        result.check("no secrets in tracked files", not leaks)

    return guarded("security", "security (mTLS refusals, IoT policy per thing, secrets)", body)


SCENARIOS = [("security", security)]
