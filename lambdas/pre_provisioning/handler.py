"""Pre-provisioning hook: who may become a thing through fleet provisioning by claim.

IoT calls it on every ``RegisterThing`` with ``{"parameters": {"SerialNumber": ...}, ...}`` and
provisions only when it answers ``{"allowProvisioning": true}``; ``parameterOverrides`` are
merged into the template's parameters
(https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html).

Allowed only when the thing ``<THING_PREFIX>-<SerialNumber>``
1. is in the allow-list table (``hybridstream fleet enroll`` wrote it: key ``thingName``, with
   ``serial`` and ``group``), and
2. does not exist yet (a copied claim certificate cannot take over an enrolled device's name).

The answer sets ``ThingGroupName`` to the thing group of the item's ``group`` (``fleet`` or
``canary``): a device lands in exactly one group, whatever it asked for. Every decision is one
JSON log line (``decision``, ``thing``, ``reason``); any error refuses.
"""

from __future__ import annotations

import json
import os
import re
from functools import partial
from typing import Any

from lambdas.shared import cached_client

SERIAL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # thing names allow [a-zA-Z0-9:_-]; ':' is kept out
_clients: dict[str, Any] = {}
_client = partial(cached_client, _clients)


def _log(decision: str, thing: str | None, reason: str, **extra: Any) -> None:
    print(json.dumps({"decision": decision, "thing": thing, "reason": reason, **extra}, sort_keys=True))


def _deny(thing: str | None, reason: str, **extra: Any) -> dict[str, Any]:
    _log("deny", thing, reason, **extra)
    return {"allowProvisioning": False}


def decide(event: dict[str, Any]) -> dict[str, Any]:
    """The hook's answer for one RegisterThing request."""
    prefix = os.environ["THING_PREFIX"]
    groups: dict[str, str] = json.loads(os.environ["THING_GROUPS"])
    params = event.get("parameters") or {}
    serial = params.get("SerialNumber")
    if not isinstance(serial, str) or not SERIAL_RE.fullmatch(serial):
        return _deny(None, "SerialNumber missing or not [A-Za-z0-9_-]{1,64}", serial=str(serial)[:80])
    thing = f"{prefix}-{serial}"
    item = (
        _client("dynamodb")
        .get_item(TableName=os.environ["TABLE_NAME"], Key={"thingName": {"S": thing}}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return _deny(thing, "not enrolled (hybridstream fleet enroll)")
    if item.get("serial", {}).get("S") != serial:
        return _deny(thing, "allow-list item's serial does not match")
    group = item.get("group", {}).get("S")
    if group not in groups:
        return _deny(thing, f"allow-list group {group!r} is not one of {sorted(groups)}")
    iot = _client("iot")
    try:
        iot.describe_thing(thingName=thing)
    except iot.exceptions.ResourceNotFoundException:
        pass
    else:
        return _deny(thing, "thing already exists (re-enrol: hybridstream fleet cleanup first)")
    _log("allow", thing, "enrolled", group=group, claim_certificate=event.get("claimCertificateId"))
    return {"allowProvisioning": True, "parameterOverrides": {"ThingGroupName": groups[group]}}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    try:
        return decide(event)
    except Exception as exc:  # any failure refuses (IoT would answer ACCESS_DENIED anyway)
        return _deny(None, f"error: {type(exc).__name__}: {exc}")
