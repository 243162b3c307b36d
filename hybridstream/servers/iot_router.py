"""The local IoT Core rules engine: MQTT (mosquitto) -> the project's topic rules -> local actions.

Driven by the SAME rule definitions the CDK stack deploys (``infra.topic_rules``): each rule's SQL
text (``TopicRule.sql()``) is parsed by :mod:`hybridstream.servers.iot_sql` and evaluated on
every message of ``hybridstream/+/+``; when it fires, its actions run against the local servers:

* ``sqs`` -> ``send_message`` to the ElasticMQ queue the target names (``training_queue``);
* ``lambda`` -> the function's handler from ``lambdas/<name>/handler.py``, called in-process with
  the rule's output (its boto3 clients pointed at radosgw, and an ``iot-data`` stand-in that
  publishes to mosquitto); its stdout (CloudWatch Logs) goes to the router's log file;
* ``s3`` -> ``put_object`` into the bucket the target names, the key from the substitution template;
* ``cloudwatch_metric`` -> recorded (no CloudWatch offline): counted per metric name.

The S3 -> EventBridge -> ``model_published`` trigger (writes of ``models/<name>/LATEST``) is stood in
for by a poller of the models bucket (every ``poll_s``), which calls the handler with an EventBridge
"Object Created" event for each new ETag of a ``LATEST`` object.

    hybridstream local router [--mode edge-cloud] [--stack .local/stack/stack.json]
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import logging
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridstream.servers.iot_sql import Statement, parse, substitute

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
LAMBDAS = REPO / "lambdas"
ROUTER_FILTER = "hybridstream/+/+"


RULE_MODULES = ("infra.topic_rules", "infra.topic_definitions", "infra.rule_definitions")


def rule_definitions():
    """The module holding the topic rules the CDK stack deploys (``RULES``, ``rules_for_mode``)."""
    for name in RULE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        if hasattr(module, "rules_for_mode"):
            return module
    raise RuntimeError(f"no topic rule definitions found (looked for {', '.join(RULE_MODULES)})")


def load_handler(name: str):
    """``lambdas/<name>/handler.py`` as a fresh module (each router has its own clients)."""
    path = LAMBDAS / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"hybridstream_local_lambda_{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no Lambda handler at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in a handler look their module up
    spec.loader.exec_module(module)
    return module


class LocalIotData:
    """The ``iot-data`` client the handlers call (``publish(topic=, qos=, payload=)``), over MQTT."""

    def __init__(self, mqtt: Any, timeout: float = 10.0) -> None:
        self.mqtt, self.timeout = mqtt, timeout
        self.published: Counter[str] = Counter()

    def publish(self, *, topic: str, qos: int = 1, payload: bytes | str = b"") -> dict[str, Any]:
        self.mqtt.publish(topic, payload, timeout=self.timeout)
        self.published[topic.rsplit("/", 1)[-1]] += 1
        return {}


class _ThreadStdout(io.TextIOBase):
    """sys.stdout that sends one thread's output (the Lambdas' prints) elsewhere."""

    def __init__(self, default: Any) -> None:
        self.default = default
        self.local = threading.local()

    def write(self, text: str) -> int:
        return (getattr(self.local, "target", None) or self.default).write(text)

    def flush(self) -> None:
        target = getattr(self.local, "target", None) or self.default
        target.flush()


class IotRouter:
    """Evaluates the rules of ``mode`` on every device message and performs their actions.

    ``resources`` maps a rule target to a local resource: ``training_queue`` -> queue URL,
    ``results_bucket`` -> bucket name; Lambda targets are loaded from ``lambdas/``.
    ``observers`` are called with ``(topic, payload)`` for every message (the demo counts with them).
    """

    def __init__(
        self,
        *,
        mode: str,
        mqtt: Any,
        sqs: Any,
        s3: Any,
        resources: dict[str, str],
        models_bucket: str,
        log_path: Path,
        lambda_env: dict[str, str] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        rules_mod = rule_definitions()
        self.mode = mode
        self.rules: list[tuple[Any, Statement]] = [(r, parse(r.sql())) for r in rules_mod.rules_for_mode(mode)]
        self.mqtt, self.sqs, self.s3 = mqtt, sqs, s3
        self.resources = dict(resources)
        self.models_bucket = models_bucket
        self.poll_s = poll_s
        self.iot_data = LocalIotData(mqtt)
        self.counters: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()
        self.announcements: list[tuple[float, dict[str, Any]]] = []
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        self.errors: list[str] = []
        self._lambda_env = dict(lambda_env or {})
        self._lambdas: dict[str, Any] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._etags: dict[str, str] = {}
        self._log = open(log_path, "a", buffering=1)  # noqa: SIM115 (closed in stop())
        self._stdout: _ThreadStdout | None = None
        self._lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, subscribe_timeout: float = 15.0) -> IotRouter:
        import os

        os.environ.update(self._lambda_env)  # what the stack sets on the functions
        for rule, _ in self.rules:
            for action in rule.actions:
                if action.kind == "lambda":
                    self._function(action.target)
        self._function("model_published")
        if not isinstance(sys.stdout, _ThreadStdout):
            self._stdout = _ThreadStdout(sys.stdout)
            sys.stdout = self._stdout
        self.mqtt.subscribe(ROUTER_FILTER, lambda topic, payload: self._inbox.put((topic, payload, time.time())))
        waiter = getattr(self.mqtt, "wait_subscribed", None)
        if waiter is not None and not waiter(ROUTER_FILTER, subscribe_timeout):
            raise RuntimeError(f"IoT router: could not subscribe to {ROUTER_FILTER} on the MQTT broker")
        for target, name in ((self._run_rules, "iot-rules"), (self._poll_latest, "s3-latest-events")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        for thread in self._threads:
            thread.join(30)
        if self._stdout is not None and sys.stdout is self._stdout:
            sys.stdout = self._stdout.default
        self._log.close()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every message received so far was routed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._inbox.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False

    # ---- rules -------------------------------------------------------------------------------
    def _function(self, name: str):
        if name not in self._lambdas:
            module = load_handler(name)
            clients = getattr(module, "_clients", None)
            if isinstance(clients, dict):
                clients["s3"] = self.s3
                clients["iot-data"] = self.iot_data
            self._lambdas[name] = module
        return self._lambdas[name]

    def _run_rules(self) -> None:
        while True:
            item = self._inbox.get()
            try:
                if item is None:
                    return
                topic, raw, received = item
                self.route(topic, raw, received)
            except Exception as exc:  # one bad message never stops the router
                self._error(f"routing failed: {exc}")
            finally:
                self._inbox.task_done()

    def route(self, topic: str, raw: bytes, received: float | None = None) -> list[str]:
        """Evaluate every rule on one message; returns the names of the rules that fired."""
        self.counters["messages"] += 1
        try:
            payload = json.loads(raw)
        except ValueError:
            self.counters["not_json"] += 1  # IoT Core passes non-JSON to SELECT * as binary; our rules need JSON
            return []
        if not isinstance(payload, dict):
            self.counters["not_json_object"] += 1
            return []
        for observer in self.observers:
            try:
                observer(topic, payload)
            except Exception as exc:
                self._error(f"observer failed: {exc}")
        fired = []
        for rule, statement in self.rules:
            output = statement.evaluate(topic, payload)
            if output is None:
                continue
            fired.append(rule.name)
            self.counters[f"rule:{rule.name}"] += 1
            for action in rule.actions:
                try:
                    self._act(action, topic, output)
                    self.counters[f"action:{action.kind}:{action.target}"] += 1
                except Exception as exc:  # IoT Core would run the rule's error action
                    self.counters[f"action_error:{action.kind}:{action.target}"] += 1
                    self._error(f"rule {rule.name} action {action.kind}:{action.target} failed: {exc}")
        self._write({"at": time.time(), "received": received, "topic": topic, "rules": fired})
        return fired

    def _act(self, action: Any, topic: str, output: dict[str, Any]) -> None:
        params = dict(action.params or {})
        if action.kind == "sqs":
            self.sqs.send_message(QueueUrl=self.resources[action.target], MessageBody=json.dumps(output))
        elif action.kind == "lambda":
            self._invoke(action.target, output)
        elif action.kind == "s3":
            key = substitute(params.get("key", "${newuuid()}"), topic, output)
            body = json.dumps(output).encode()
            self.s3.put_object(Bucket=self.resources[action.target], Key=key, Body=body)
        elif action.kind == "cloudwatch_metric":
            value = substitute(params.get("value", ""), topic, output)
            float(value)  # a non-numeric value fails the action, as CloudWatch would refuse it
            self.metrics[params.get("metric_name", action.target)] += 1
        else:
            raise ValueError(f"action kind {action.kind!r} has no local stand-in")

    def _invoke(self, name: str, event: dict[str, Any]) -> Any:
        module = self._function(name)
        with self._lock:
            if self._stdout is not None:
                self._stdout.local.target = self._log
            try:
                result = module.handler(event, None)
            finally:
                if self._stdout is not None:
                    self._stdout.local.target = None
        self.counters[f"lambda:{name}"] += 1
        return result

    # ---- S3 -> EventBridge -> model_published ---------------------------------------------------
    def _poll_latest(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll_latest_once()
            except Exception as exc:
                self._error(f"models bucket poll failed: {exc}")

    def poll_latest_once(self) -> int:
        """Invoke ``model_published`` for every ``models/*/LATEST`` written since the last poll."""
        events = 0
        token: dict[str, str] = {}
        while True:
            resp = self.s3.list_objects_v2(Bucket=self.models_bucket, Prefix="models/", **token)
            for obj in resp.get("Contents", []):
                key, etag = obj["Key"], obj.get("ETag", "")
                if not key.endswith("/LATEST") or self._etags.get(key) == etag:
                    continue
                self._etags[key] = etag
                event = {
                    "source": "aws.s3",
                    "detail-type": "Object Created",
                    "detail": {"bucket": {"name": self.models_bucket}, "object": {"key": key, "size": obj["Size"]}},
                }
                try:
                    result = self._invoke("model_published", event)
                    now = time.time()
                    for item in result.get("published", []):
                        self.announcements.append((now, {"model": item, "key": key}))
                    self.counters["announcements"] += len(result.get("published", []))
                    self._write({"at": now, "event": "model_published", "key": key, "result": result})
                    events += 1
                except Exception as exc:  # EventBridge -> Lambda retries, then its DLQ
                    self.counters["action_error:lambda:model_published"] += 1
                    self._error(f"model_published for {key} failed: {exc}")
            if not resp.get("IsTruncated"):
                return events
            token = {"ContinuationToken": resp["NextContinuationToken"]}

    # ---- log ---------------------------------------------------------------------------------
    def _error(self, text: str) -> None:
        log.warning("IoT router: %s", text)
        self.errors.append(text)
        self._write({"at": time.time(), "error": text})

    def _write(self, entry: dict[str, Any]) -> None:
        with contextlib.suppress(ValueError):  # closed at shutdown
            self._log.write(json.dumps(entry, default=str) + "\n")


def from_stack(stack_file: Path, mode: str, client_name: str = "iot-router") -> IotRouter:
    """A router wired to the servers ``hybridstream local up`` described in ``stack_file``."""
    import boto3

    from edge_app.mqtt import MtlsTransport
    from hybridstream.servers.mosquitto import Mosquitto

    info = json.loads(stack_file.read_text())["servers"]
    keys = json.loads(Path(info["radosgw"]["keys_file"]).read_text())
    port = int(info["mosquitto"]["port"])
    broker = Mosquitto(port=port, state_dir=stack_file.parent / f"mosquitto-{port}")
    cert = broker.client_cert(client_name)
    mqtt = MtlsTransport(
        endpoint="127.0.0.1",
        port=broker.port,
        cert=str(cert.cert),
        key=str(cert.key),
        ca=str(broker.ca),
        client_id=client_name,
        flow_control=False,
    )
    if not mqtt.connected.wait(15):
        raise RuntimeError(f"IoT router: no MQTT connection to 127.0.0.1:{broker.port}")
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=keys["endpoint"],
        aws_access_key_id=keys["access_key"],
        aws_secret_access_key=keys["secret_key"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    sqs = boto3.client(
        "sqs", endpoint_url=info["sqs"]["endpoint"], region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    buckets = info["radosgw"]["buckets"]
    return IotRouter(
        mode=mode,
        mqtt=mqtt,
        sqs=sqs,
        s3=s3,
        resources={"training_queue": info["sqs"]["queue_url"], "results_bucket": buckets[2]},
        models_bucket=buckets[1],
        log_path=stack_file.parent / "iot-router.log",
        lambda_env={
            "MODELS_BUCKET": buckets[1],
            "BATCH_MODEL": "batch",
            "SPEED_MODEL": "speed-{thing}",
            "TOPIC_ROOT": "hybridstream",
        },
    )


def run(stack_file: Path, mode: str) -> int:
    """``hybridstream local router``: route until Ctrl-C, the counters on stderr every 10 s."""
    if not stack_file.exists():
        print(f"no local stack described at {stack_file}: run `hybridstream local up` first", file=sys.stderr)
        return 1
    router = from_stack(stack_file, mode).start()
    print(f"IoT router: {len(router.rules)} rules of mode {mode}; Ctrl-C to stop", file=sys.stderr)
    try:
        while True:
            time.sleep(10)
            print(json.dumps(dict(router.counters)), file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        router.stop()
    return 0
