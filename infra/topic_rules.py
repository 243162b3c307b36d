"""The MQTT topic contract and the IoT topic rules: plain data, no CDK imports.

ONE definition read by two interpreters: the CDK stack turns each :class:`TopicRule` into an
``AWS::IoT::TopicRule`` (:meth:`TopicRule.sql`), and the local stack's rule router evaluates the
same rule in Python (:meth:`TopicRule.match`) and performs its actions locally. The message
schemas here are also what the ``ingest`` Lambda validates against (it ships a copy of this
module in its package).

>>> rule = rule_named("window_notices")
>>> rule.sql()
"SELECT *, topic(2) AS thing, topic() AS mqtt_topic FROM 'hybridstream/+/windows' WHERE \
isUndefined(key) = false AND startswith(key, concat('windows/', topic(2), '/'))"
>>> rule.match("hybridstream/pi-1/windows", {"window_id": "w1", "key": "windows/pi-1/2026/11/26/w1.csv"})
{'window_id': 'w1', 'key': 'windows/pi-1/2026/11/26/w1.csv', 'thing': 'pi-1', 'mqtt_topic': 'hybridstream/pi-1/windows'}
>>> rule.match("hybridstream/pi-1/windows", {"window_id": "w1", "key": "windows/pi-2/x.csv"}) is None
True
>>> latency = rule_named("edge_metrics_latency_ms")
>>> latency.sql()
"SELECT *, topic(2) AS thing, topic() AS mqtt_topic FROM 'hybridstream/+/metrics' WHERE isUndefined(latency_ms) = false"
>>> latency.match("hybridstream/pi-1/metrics", {"hybrid_rmse": 0.4}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOPIC_ROOT = "hybridstream"
MAX_MESSAGE_BYTES = 128 * 1024  # IoT Core's message size limit: bulk data goes to S3
MODES = ("edge-cloud", "edge", "cloud")

# what a device publishes under hybridstream/<thing>/<kind>
DEVICE_KINDS = ("windows", "metrics", "results", "readings")

# The edge -> cloud message schemas (field -> JSON type). "number" accepts int and float.
MESSAGE_SCHEMAS: dict[str, dict[str, dict[str, str]]] = {
    "windows": {
        # what training_job.notices accepts: key required, the rest checked when present
        "required": {"key": "string"},
        "optional": {
            "window_id": "string",
            "rows": "integer",
            "bucket": "string",
            "first_ts": "string",
            "last_ts": "string",
            "sha256": "string",
        },
    },
    "metrics": {
        "required": {"timestamp": "string", "hybrid_rmse": "number", "batch_rmse": "number", "speed_rmse": "number"},
        "optional": {
            "hybrid_mae": "number",
            "batch_mae": "number",
            "speed_mae": "number",
            "latency_ms": "number",
            "records_per_s": "number",
            "models": "object",
            "weights": "object",
        },
    },
    "results": {
        "required": {"timestamp": "string", "predictions": "array"},
        "optional": {"models": "object", "device": "string"},
    },
    "readings": {
        "required": {"timestamp": "string", "readings": "array"},
        "optional": {"device": "string", "errors": "object"},
    },
}


def device_topic(thing: str, kind: str) -> str:
    """``hybridstream/<thing>/<kind>``."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    return f"{TOPIC_ROOT}/{thing}/{kind}"


def model_published_topic(model_name: str) -> str:
    """``hybridstream/models/<model-name>/published`` (cloud -> edge)."""
    return f"{TOPIC_ROOT}/models/{model_name}/published"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` (one level) and a trailing ``#`` (any levels).

    >>> topic_matches("hybridstream/+/metrics", "hybridstream/pi-1/metrics")
    True
    >>> topic_matches("hybridstream/+/metrics", "hybridstream/a/b/metrics")
    False
    """
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


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

    @property
    def topic_filter(self) -> str:
        return f"{TOPIC_ROOT}/+/{'+' if self.kind == '*' else self.kind}"

    def sql(self) -> str:
        """The IoT SQL (2016-03-23) statement for this rule."""
        sql = f"SELECT *, topic(2) AS thing, topic() AS mqtt_topic FROM '{self.topic_filter}'"
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
        return {**payload, "thing": thing, "mqtt_topic": topic}


METRIC_FIELDS = {
    "HybridRMSE": "hybrid_rmse",
    "BatchRMSE": "batch_rmse",
    "SpeedRMSE": "speed_rmse",
    "LatencyMs": "latency_ms",
    "RecordsPerSecond": "records_per_s",
}
EDGE_METRICS_NAMESPACE = "HybridStream/Edge"
# results/<thing>/<yyyy>/<MM>/<dd>/<epoch ms>-<uuid>.json (IoT substitution template)
RESULTS_KEY = "results/${topic(2)}/${parse_time('yyyy/MM/dd', timestamp())}/${timestamp()}-${newuuid()}.json"

RULES: tuple[TopicRule, ...] = (
    TopicRule(
        name="window_notices",
        description="A window was uploaded to S3: queue it for re-training.",
        kind="windows",
        required=("key",),
        prefix_guards={"key": "windows/{thing}/"},
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
