"""The IoT topic rules: plain data, no CDK imports (topics, schemas and the MQTT matcher are the
wire contract's, :mod:`model_contract.topics` and :mod:`model_contract.messages`).

ONE rule definition read by two interpreters: the CDK stack turns each :class:`TopicRule` into an
``AWS::IoT::TopicRule`` (:meth:`TopicRule.sql`), and the local stack's rule router evaluates the
same rule in Python (:meth:`TopicRule.match`) and performs its actions locally.

>>> rule = rule_named("window_notices")
>>> rule.sql()
"SELECT key AS key, window_id AS window_id, rows AS rows, first_ts AS first_ts, last_ts AS last_ts, \
sha256 AS sha256, topic(2) AS thing, topic() AS mqtt_topic FROM 'hybridstream/+/windows' WHERE \
isUndefined(key) = false AND startswith(key, concat('windows/', topic(2), '/'))"
>>> rule.match("hybridstream/pi-1/windows", {"window_id": "w1", "key": "windows/pi-1/2026/11/26/w1.csv", "uri": "s3://x/y"})
{'key': 'windows/pi-1/2026/11/26/w1.csv', 'window_id': 'w1', 'thing': 'pi-1', 'mqtt_topic': 'hybridstream/pi-1/windows'}
>>> rule.match("hybridstream/pi-1/windows", {"window_id": "w1", "key": "windows/pi-2/x.csv"}) is None
True
>>> latency = rule_named("edge_metrics_latency_ms")
>>> latency.sql()
"SELECT *, topic(2) AS thing, topic() AS mqtt_topic FROM 'hybridstream/+/metrics' WHERE isUndefined(latency_ms) = false"
>>> latency.match("hybridstream/pi-1/metrics", {"hybrid_rmse": 0.4}) is None
True
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model_contract.messages import DEVICE_SCHEMAS
from model_contract.topics import DEVICE_KINDS, MAX_MESSAGE_BYTES, TOPIC_ROOT, device_filter, topic_matches

MODES = ("edge-cloud", "edge", "cloud")

# the edge -> cloud message schemas (the wire contract's; the ingest Lambda validates against them)
MESSAGE_SCHEMAS = DEVICE_SCHEMAS

__all__ = [  # DEVICE_KINDS, MAX_MESSAGE_BYTES, TOPIC_ROOT: re-exported from the wire contract
    "DEVICE_KINDS",
    "EDGE_METRICS_NAMESPACE",
    "LATEST_METRICS_KEY",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_SCHEMAS",
    "METRIC_FIELDS",
    "MODES",
    "RESULTS_KEY",
    "RULES",
    "TOPIC_ROOT",
    "Action",
    "TopicRule",
    "rule_named",
    "rules_for_mode",
]


@dataclass(frozen=True)
class Action:
    """One rule action. ``kind``: ``sqs``, ``lambda``, ``s3`` or ``cloudwatch_metric``.

    ``target`` names a logical resource (``training_queue``, ``results_bucket``, a function
    name), resolved by the CDK stack or by the local router. ``params`` holds kind-specific
    settings; values may use the IoT substitution templates ``${...}``.
    """

    kind: str
    target: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicRule:
    """A topic rule: which messages (filter + required fields + key-prefix guards) go where."""

    name: str
    description: str
    kind: str  # the device message kind (windows/metrics/results/readings) or "*" for all
    actions: tuple[Action, ...]
    required: tuple[str, ...] = ()
    # field -> prefix it must start with; "{thing}" is the topic's thing name
    prefix_guards: Mapping[str, str] = field(default_factory=dict)
    modes: tuple[str, ...] = MODES
    # the payload fields passed on (None: all, ``SELECT *``); a device's extra fields never reach
    # a target that trusts the selected ones (the window notice: no uri/bucket of another device)
    select: tuple[str, ...] | None = None
    # extra computed fields: name -> IoT SQL expression (e.g. timestamp()), evaluated locally too
    computed: Mapping[str, str] = field(default_factory=dict)

    @property
    def topic_filter(self) -> str:
        return device_filter("+" if self.kind == "*" else self.kind)

    def sql(self) -> str:
        """The IoT SQL (2016-03-23) statement for this rule."""
        # "<field> AS <field>": explicit output names (an undefined field is left out, as with *)
        fields = ", ".join(f"{f} AS {f}" for f in self.select) if self.select is not None else "*"
        computed = "".join(f", {expr} AS {name}" for name, expr in self.computed.items())
        sql = f"SELECT {fields}, topic(2) AS thing, topic() AS mqtt_topic{computed} FROM '{self.topic_filter}'"
        where = [f"isUndefined({name}) = false" for name in self.required]
        for name, prefix in self.prefix_guards.items():
            head, _, tail = prefix.partition("{thing}")
            where.append(f"startswith({name}, concat('{head}', topic(2), '{tail}'))")
        return sql + (" WHERE " + " AND ".join(where) if where else "")

    def match(self, topic: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """What the rule's SELECT yields for this message, or None when the rule does not fire."""
        if not topic_matches(self.topic_filter, topic):
            return None
        thing = topic.split("/")[1]
        if any(payload.get(name) is None for name in self.required):
            return None
        for name, prefix in self.prefix_guards.items():
            value = payload.get(name)
            if not isinstance(value, str) or not value.startswith(prefix.replace("{thing}", thing)):
                return None
        selected = dict(payload) if self.select is None else {k: payload[k] for k in self.select if k in payload}
        return {**selected, "thing": thing, "mqtt_topic": topic, **{k: _local(e) for k, e in self.computed.items()}}


def _local(expression: str) -> Any:
    """The local router's value of a computed field's IoT SQL expression."""
    if expression == "timestamp()":
        return int(time.time() * 1000)
    raise ValueError(f"no local evaluation of {expression!r}")


METRIC_FIELDS = {
    "HybridRMSE": "hybrid_rmse",
    "BatchRMSE": "batch_rmse",
    "SpeedRMSE": "speed_rmse",
    "LatencyMs": "latency_ms",
    "RecordsPerSecond": "records_per_s",
    # the edge's forecast intervals (edge_app.intervals): running coverage and mean width per level
    "Coverage80": "coverage_80",
    "Coverage95": "coverage_95",
    "Width80": "width_80",
    "Width95": "width_95",
}
EDGE_METRICS_NAMESPACE = "HybridStream/Edge"
# results/<thing>/<yyyy>/<MM>/<dd>/<epoch ms>-<uuid>.json (IoT substitution template)
RESULTS_KEY = "results/${topic(2)}/${parse_time('yyyy/MM/dd', timestamp())}/${timestamp()}-${newuuid()}.json"
# metrics/<thing>/latest.json: overwritten by each metrics message (``hybridstream fleet status`` reads it)
LATEST_METRICS_KEY = "metrics/${topic(2)}/latest.json"

RULES: tuple[TopicRule, ...] = (
    TopicRule(
        name="window_notices",
        description="A window was uploaded to S3: queue it for re-training.",
        kind="windows",
        required=("key",),
        prefix_guards={"key": "windows/{thing}/"},
        # explicit fields: the trainer must not see a uri/s3_uri/bucket that points at another device's data
        select=("key", "window_id", "rows", "first_ts", "last_ts", "sha256"),
        actions=(Action("sqs", "training_queue"),),
        modes=("edge-cloud", "cloud"),
    ),
    # one rule per metric: a message without an optional field (latency_ms, records_per_s)
    # must not fire that field's CloudWatch action (which would fail into the error action)
    *(
        TopicRule(
            name=f"edge_metrics_{field_name}",
            description=f"Edge app {field_name} -> CloudWatch metric {metric} (only when the message has it).",
            kind="metrics",
            required=(field_name,),
            actions=(
                Action(
                    "cloudwatch_metric",
                    "edge_metrics",
                    {"namespace": EDGE_METRICS_NAMESPACE, "metric_name": metric, "value": "${" + field_name + "}"},
                ),
            ),
        )
        for metric, field_name in METRIC_FIELDS.items()
    ),
    TopicRule(
        name="edge_results",
        description="Prediction results -> the results bucket under results/<thing>/.",
        kind="results",
        actions=(
            Action(
                "s3",
                "results_bucket",
                {"key": RESULTS_KEY},
            ),
        ),
    ),
    TopicRule(
        name="edge_metrics_latest",
        description="Each device's latest metrics -> results bucket metrics/<thing>/latest.json (fleet status).",
        kind="metrics",
        required=("hybrid_rmse",),  # a full metrics message, not a partial one
        computed={"received_at": "timestamp()"},
        actions=(Action("s3", "results_bucket", {"key": LATEST_METRICS_KEY}),),
    ),
    TopicRule(
        name="edge_validation",
        description="Every edge message -> the ingest Lambda (schema/size checks, counts rejects).",
        kind="*",
        actions=(Action("lambda", "ingest"),),
    ),
    TopicRule(
        name="cloud_readings",
        description="cloud mode: forwarded readings -> the cloud inference Lambda.",
        kind="readings",
        required=("readings",),
        actions=(Action("lambda", "cloud_inference"),),
        modes=("cloud",),
    ),
)


def rules_for_mode(mode: str) -> tuple[TopicRule, ...]:
    """The rules deployed in a mode (``edge-cloud``, ``edge`` or ``cloud``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return tuple(rule for rule in RULES if mode in rule.modes)


def rule_named(name: str) -> TopicRule:
    for rule in RULES:
        if rule.name == name:
            return rule
    raise KeyError(name)
