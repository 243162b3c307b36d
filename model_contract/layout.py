"""The S3 key layout, spelled once: windows, model versions and the ``LATEST`` pointer.

::

    windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.csv   # the edge uploads (windows bucket)
    forecasts/<thing>/<yyyy>/<mm>/<dd>/<window-id>.jsonl.gz   # ... and the window's forecasts beside it
    models/<name>/<version>/model.tflite                # the trainer publishes (models bucket) ...
    models/<name>/<version>/manifest.json               # ... manifest second ...
    models/<name>/LATEST                                # ... and the pointer last
    rejected/<name>/<version>/model.tflite + manifest.json   # refused candidates

``LATEST`` has one writer (:meth:`LatestPointer.to_json`, used by ``training_job.publish``) and
one parser (:func:`parse_latest`, used by the trainer and both Lambdas). Model names come from
a template with ``{thing}``: :func:`speed_model_name` is the only place that fills it in.

Plain Python (stdlib only).

>>> speed_model_name("pi-1")
'speed-pi-1'
>>> window_key("pi-1", "T1_20170114T000000Z_1000")
'windows/pi-1/2017/01/14/T1_20170114T000000Z_1000.csv'
>>> thing_from_window_key("windows/pi-1/2017/01/14/T1_20170114T000000Z_1000.csv")
'pi-1'
>>> forecasts_key("pi-1", "T1_20170114T000000Z_1000")
'forecasts/pi-1/2017/01/14/T1_20170114T000000Z_1000.jsonl.gz'
>>> manifest_key("speed-pi-1", "0a1b"), latest_key("speed-pi-1")
('models/speed-pi-1/0a1b/manifest.json', 'models/speed-pi-1/LATEST')
>>> p = parse_latest(LatestPointer.for_model("m", "v1", sha256="ab", kind="speed").to_json(), name="m")
>>> p.version, p.manifest_key, p.model_key
('v1', 'models/m/v1/manifest.json', 'models/m/v1/model.tflite')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

WINDOWS_PREFIX = "windows"
FORECASTS_PREFIX = "forecasts"  # per-reading forecasts, one object per window (the Athena table's data)
FORECASTS_SUFFIX = ".jsonl.gz"
FORECASTS_DAY_FORMAT = "yyyy/MM/dd"  # the ``day`` partition as Athena's date projection spells it
MODELS_PREFIX = "models"
REJECTED_PREFIX = "rejected"
MODEL_FILE = "model.tflite"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"

THING_VARIABLE = "{thing}"
SPEED_MODEL_TEMPLATE = "speed-{thing}"  # one speed model per device
BATCH_MODEL_NAME = "batch"  # one batch model for the fleet

NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")  # model names and versions: one S3 key level, one MQTT level


def speed_model_name(thing: str, template: str = SPEED_MODEL_TEMPLATE) -> str:
    """The model name ``template`` gives for ``thing`` (``{thing}`` -> the thing name).

    A template without ``{thing}`` is a fixed name (e.g. one speed model for a test fleet).

    >>> speed_model_name("pi-1", "turbine-{thing}-speed"), speed_model_name("pi-1", "speed")
    ('turbine-pi-1-speed', 'speed')
    """
    if THING_VARIABLE in template and not thing:
        raise ValueError(f"model name template {template!r} needs a thing name")
    name = template.replace(THING_VARIABLE, thing)
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


# -- windows ----------------------------------------------------------------------------------


def window_key(thing: str, window_id: str) -> str:
    """The upload key of a window id ``<device>_<yyyymmddTHHMMSSZ>_<rows>`` (the edge's spool names).

    >>> window_key("pi-1", "stray")
    Traceback (most recent call last):
    ...
    ValueError: not a window id: 'stray'
    """
    return f"{WINDOWS_PREFIX}/{thing}/{_window_date_path(window_id)}/{window_id}.csv"


def window_id_parts(window_id: str) -> tuple[str, str, str] | None:
    """(device, start stamp ``yyyymmddTHHMMSSZ``, rows) of a window id; None for any other name.

    >>> window_id_parts("T1_20170114T000000Z_1000"), window_id_parts("stray")
    (('T1', '20170114T000000Z', '1000'), None)
    """
    parts = window_id.rsplit("_", 2)
    if len(parts) != 3 or len(parts[1]) != 16 or not parts[1][:8].isdigit():
        return None
    return parts[0], parts[1], parts[2]


def _window_date_path(window_id: str) -> str:
    parts = window_id_parts(window_id)
    if parts is None:
        raise ValueError(f"not a window id: {window_id!r}")
    stamp = parts[1]
    return f"{stamp[:4]}/{stamp[4:6]}/{stamp[6:8]}"


def forecasts_key(thing: str, window_id: str) -> str:
    """The key of a window's forecasts (one JSON object per reading, gzip): the window's key under
    ``forecasts/`` with ``.jsonl.gz``. Partitions: ``thing`` and ``day`` (the window's first reading, UTC)."""
    return f"{FORECASTS_PREFIX}/{thing}/{_window_date_path(window_id)}/{window_id}{FORECASTS_SUFFIX}"


def forecasts_partition(key: str) -> tuple[str, str]:
    """(thing, day ``yyyy/mm/dd``) of a forecasts key; ValueError for any other key.

    >>> forecasts_partition("forecasts/pi-1/2017/01/14/T1_20170114T000000Z_1000.jsonl.gz")
    ('pi-1', '2017/01/14')
    """
    parts = key.split("/")
    if len(parts) != 6 or parts[0] != FORECASTS_PREFIX or not key.endswith(FORECASTS_SUFFIX):
        raise ValueError(f"not a forecasts key: {key!r}")
    return parts[1], "/".join(parts[2:5])


def forecasts_location_template(bucket: str) -> str:
    """Athena's ``storage.location.template`` for the forecasts table (projected ``thing`` and ``day``).

    >>> forecasts_location_template("b")
    's3://b/forecasts/${thing}/${day}/'
    """
    return f"s3://{bucket}/{FORECASTS_PREFIX}/${{thing}}/${{day}}/"


def thing_from_window_key(key: str) -> str:
    """``windows/<thing>/...`` -> thing ('' for any other key)."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == WINDOWS_PREFIX else ""


def window_id_from_key(key: str) -> str:
    """The window id of a key: its file name without the extension."""
    return key.rsplit("/", 1)[-1].rsplit(".", 1)[0]


# -- models -----------------------------------------------------------------------------------


def model_folder(name: str, version: str, prefix: str = MODELS_PREFIX) -> str:
    """``<prefix>/<name>/<version>`` (``prefix``: ``models``, or ``rejected`` for refused candidates)."""
    return f"{prefix.strip('/')}/{name}/{version}"


def model_key(name: str, version: str, prefix: str = MODELS_PREFIX) -> str:
    return f"{model_folder(name, version, prefix)}/{MODEL_FILE}"


def manifest_key(name: str, version: str, prefix: str = MODELS_PREFIX) -> str:
    return f"{model_folder(name, version, prefix)}/{MANIFEST_FILE}"


def latest_key(name: str, prefix: str = MODELS_PREFIX) -> str:
    return f"{prefix.strip('/')}/{name}/{LATEST_FILE}"


def _key_re(prefix: str, tail: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix.strip('/'))}/(?P<name>[A-Za-z0-9._-]+)/{tail}$")


def parse_manifest_key(key: str, prefix: str = MODELS_PREFIX) -> tuple[str, str]:
    """(name, version) of ``models/<name>/<version>/manifest.json``; ValueError otherwise.

    >>> parse_manifest_key("models/speed-pi-1/0a1b/manifest.json")
    ('speed-pi-1', '0a1b')
    """
    match = _key_re(prefix, r"(?P<version>[A-Za-z0-9._-]+)/manifest\.json").match(key)
    if not match:
        raise ValueError(f"not a model manifest key: {key}")
    return match["name"], match["version"]


def parse_latest_key(key: str, prefix: str = MODELS_PREFIX) -> str:
    """The model name of ``models/<name>/LATEST``; ValueError otherwise."""
    match = _key_re(prefix, LATEST_FILE).match(key)
    if not match:
        raise ValueError(f"not a model LATEST key: {key}")
    return match["name"]


@dataclass(frozen=True)
class LatestPointer:
    """What ``models/<name>/LATEST`` holds: the current version of a name and where it is.

    ``window_last_ts``: the last reading of the window the model was trained on (``LATEST`` only
    moves forward in it); ``published_at``: when the pointer was written (ISO-8601 UTC).
    ``override``: set only when an operator moved ``LATEST`` back against that rule
    (``hybridstream models rollback`` / ``promote --override``): ``{action, from, reason, by, at,
    model_window_last_ts}``; such a pointer keeps the replaced model's ``window_last_ts``, so only a
    model of a newer window moves it on. Omitted from the stored JSON when None.

    >>> p = LatestPointer.for_model("m", "v1", window_last_ts="t2", override={"action": "rollback", "from": "v2"})
    >>> parse_latest(p.to_json()).override["from"], "override" in LatestPointer("m", "v1").to_dict()
    ('v2', False)
    """

    name: str
    version: str
    sha256: str = ""
    kind: str = ""
    model_key: str = ""
    manifest_key: str = ""
    window_last_ts: str = ""
    published_at: str = ""
    override: Mapping[str, Any] | None = None

    @classmethod
    def for_model(
        cls,
        name: str,
        version: str,
        *,
        sha256: str = "",
        kind: str = "",
        window_last_ts: str = "",
        published_at: str = "",
        prefix: str = MODELS_PREFIX,
        override: Mapping[str, Any] | None = None,
    ) -> LatestPointer:
        """The pointer to a published version, with its canonical keys."""
        return cls(
            name=name,
            version=version,
            sha256=sha256,
            kind=kind,
            model_key=model_key(name, version, prefix),
            manifest_key=manifest_key(name, version, prefix),
            window_last_ts=window_last_ts,
            published_at=published_at,
            override=dict(override) if override else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["override"] is None:
            del out["override"]  # the stored JSON of an ordinary pointer is unchanged
        return out

    def to_json(self) -> bytes:
        """The pointer's bytes as stored (the only writer of ``LATEST``)."""
        return json.dumps(self.to_dict(), indent=2).encode()


def parse_latest(
    body: bytes | str | Mapping[str, Any], name: str | None = None, prefix: str = MODELS_PREFIX
) -> LatestPointer:
    """The pointer in a ``LATEST`` object; ValueError when it is not one.

    Checks: a JSON object with a valid ``version``; its ``name`` (when present) equals ``name``
    (when given); ``manifest_key`` / ``model_key``, when present, are the version's canonical
    keys under ``prefix`` (a pointer never names files outside its version's folder). Missing
    keys (older pointers) are filled in with the canonical ones.

    >>> parse_latest(b'{"name": "m", "version": "v7"}').manifest_key
    'models/m/v7/manifest.json'
    >>> parse_latest(b'{"name": "other", "version": "v7"}', name="m")
    Traceback (most recent call last):
    ...
    ValueError: LATEST of m names model 'other'
    """
    if isinstance(body, Mapping):
        pointer: Any = dict(body)
    else:
        try:
            pointer = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"LATEST is not JSON: {exc}") from None
    if not isinstance(pointer, dict):
        raise ValueError("LATEST is not a JSON object")
    own = pointer.get("name") or name
    label = name or own or "?"
    if name is not None and own != name:
        raise ValueError(f"LATEST of {name} names model {pointer.get('name')!r}")
    if not isinstance(own, str) or not NAME_RE.fullmatch(own):
        raise ValueError(f"LATEST of {label} lacks a valid name")
    version = pointer.get("version")
    if not isinstance(version, str) or not NAME_RE.fullmatch(version):
        raise ValueError(f"LATEST of {label} lacks a valid version")
    canonical = {"manifest_key": manifest_key(own, version, prefix), "model_key": model_key(own, version, prefix)}
    for field_name, expected in canonical.items():
        if pointer.get(field_name) not in (None, "", expected):
            raise ValueError(f"LATEST of {label}: {field_name} {pointer[field_name]!r} is not {expected}")
    text = {k: str(pointer.get(k) or "") for k in ("sha256", "kind", "window_last_ts", "published_at")}
    override = pointer.get("override") if isinstance(pointer.get("override"), dict) else None
    return LatestPointer(name=own, version=version, **canonical, **text, override=override)
