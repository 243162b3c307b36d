"""Every topic the system uses, spelled once: MQTT (device <-> cloud) and Kafka (on the Pi).

MQTT, under :data:`TOPIC_ROOT`:

- ``hybridstream/<thing>/<kind>``: what a device publishes, ``kind`` one of :data:`DEVICE_KINDS`
  (``windows``: a :class:`~model_contract.messages.WindowNotice`; ``metrics``; ``results``;
  ``readings`` in ``cloud`` mode). :func:`device_topic`, :func:`parse_device_topic`.
- ``hybridstream/models/<name>/published``: a :class:`~model_contract.messages.ModelNotice`
  (cloud -> edge). :func:`model_notice_topic`, :data:`MODEL_NOTICES_FILTER`.

Kafka, on the Pi's broker: :data:`KAFKA_TOPICS` (role -> default name; the edge app's
``topics`` config section overrides each).

Plain Python (stdlib only): the Pi, the trainer, the Lambdas and the CDK app all import it.

>>> device_topic("pi-1", "windows"), model_notice_topic("speed-pi-1")
('hybridstream/pi-1/windows', 'hybridstream/models/speed-pi-1/published')
>>> parse_device_topic("hybridstream/pi-1/metrics")
('pi-1', 'metrics')
>>> topic_matches(MODEL_NOTICES_FILTER, model_notice_topic("speed-pi-1"))
True
"""

from __future__ import annotations

from types import MappingProxyType

TOPIC_ROOT = "hybridstream"

# what a device publishes under hybridstream/<thing>/<kind>
WINDOWS, METRICS, RESULTS, READINGS = "windows", "metrics", "results", "readings"
DEVICE_KINDS = (WINDOWS, METRICS, RESULTS, READINGS)

MODELS_LEVEL = "models"  # hybridstream/models/<name>/published: not a thing name
MODEL_NOTICES_FILTER = f"{TOPIC_ROOT}/{MODELS_LEVEL}/+/published"

MAX_MESSAGE_BYTES = 128 * 1024  # IoT Core's message size limit: bulk data goes to S3

# Kafka topics on the Pi's broker: role -> default name
KAFKA_TOPICS = MappingProxyType(
    {
        "readings": "sensor.readings",  # sensor readings in (JSON, key = device id)
        "predictions": "predictions",  # batch/speed/hybrid forecasts out
        "metrics": "metrics",  # rolling accuracy out
        "deadletter": "deadletter",  # bad readings, with a reason
        "events": "edge.events",  # drift, window uploaded, model swapped/rejected
        "notices": "models.notices",  # model notices (cloud -> edge), as on MQTT
    }
)


def _level(value: str, what: str) -> str:
    if not value or any(c in value for c in "/+#"):
        raise ValueError(f"{what} must be one non-empty MQTT topic level without / + #, got {value!r}")
    return value


def device_topic(thing: str, kind: str, root: str = TOPIC_ROOT) -> str:
    """``hybridstream/<thing>/<kind>`` (what a device publishes)."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown message kind {kind!r} (one of {', '.join(DEVICE_KINDS)})")
    return f"{root}/{_level(thing, 'thing')}/{kind}"


def device_filter(kind: str = "+", root: str = TOPIC_ROOT) -> str:
    """``hybridstream/+/<kind>``: one kind from every device (``+``: every kind)."""
    if kind != "+" and kind not in DEVICE_KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    return f"{root}/+/{kind}"


def parse_device_topic(topic: str, root: str = TOPIC_ROOT) -> tuple[str, str]:
    """(thing, kind) of ``hybridstream/<thing>/<kind>``; ValueError for any other topic.

    The kind is returned as found (callers decide what an unknown kind means).

    >>> parse_device_topic("hybridstream/models/x/published")
    Traceback (most recent call last):
    ...
    ValueError: not a device topic: 'hybridstream/models/x/published'
    """
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) != 3 or parts[0] != root or not parts[1]:
        raise ValueError(f"not a device topic: {topic!r}")
    return parts[1], parts[2]


def model_notice_topic(name: str, root: str = TOPIC_ROOT) -> str:
    """``hybridstream/models/<name>/published``: where the model notice of ``name`` goes (cloud -> edge)."""
    return f"{root}/{MODELS_LEVEL}/{_level(name, 'model name')}/published"


def validate_filter(topic_filter: str) -> str:
    """The filter itself, or ValueError if it breaks MQTT's wildcard rules (MQTT 3.1.1 section 4.7.1:
    ``#`` only as the whole last level, ``+`` only as a whole level)."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise ValueError("a topic filter must be a non-empty string")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be the whole last level of a filter: {topic_filter!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level of a filter: {topic_filter!r}")
    return topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT ``topic_filter`` (MQTT 3.1.1 section 4.7, MQTT 5 section 4.7).

    ``+`` matches exactly one level (possibly empty), a trailing ``#`` any number of levels
    including none (``a/#`` matches ``a``), and a filter starting with a wildcard never matches
    a topic starting with ``$`` (``$aws/...``, ``$SYS/...``). An invalid filter raises ValueError.

    >>> topic_matches("hybridstream/+/metrics", "hybridstream/pi-1/metrics")
    True
    >>> topic_matches("hybridstream/+/metrics", "hybridstream/a/b/metrics")
    False
    >>> topic_matches("a/#", "a"), topic_matches("#", "$SYS/x")
    (True, False)
    """
    f_parts = validate_filter(topic_filter).split("/")
    t_parts = topic.split("/")
    if topic.startswith("$") and f_parts[0] in ("+", "#"):
        return False
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)
