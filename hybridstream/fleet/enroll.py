"""``fleet enroll``: put a thing name on the stack's allow-list and write the Pi's device bundle.

The stack's pre-provisioning hook admits a device only if its thing name (``<prefix>-<serial>``, built
by the provisioning template from the ``SerialNumber`` parameter) is in the ``EnrollmentTable`` and is
not an existing thing; it puts the device into exactly one group, ``canary`` or ``fleet``, as enrolled
(a canary is never also in the fleet group: the two deployments must not pin one component twice).

Idempotent: the same name with the same options changes nothing and says so (the bundle is written
again only if it is missing). Nothing is left half-made: a failure after a step undoes the earlier ones.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridstream.fleet import bundle, claim
from hybridstream.fleet.outputs import StackOutputs
from hybridstream.fleet.session import AwsContext, FleetError, error_code, explain

log = logging.getLogger("hybridstream.fleet.enroll")

GROUPS = {"canary": "CanaryThingGroup", "fleet": "FleetThingGroup"}
# Which Pi OS each architecture works on (README "Fleet", docs/deploy.md "Which Pi"): the code the Pi runs
# needs Python >= 3.11 (pyproject.toml; tests/fleet/test_pi_python.py), which 64-bit Raspberry Pi OS 12/13
# ship (3.11/3.13, with cp311/cp313 aarch64 wheels of everything the components install). Raspberry Pi OS 11
# ships 3.9, and a 32-bit OS has no edge runtime for 3.11+ (tflite-runtime's only armv7l wheel is cp39,
# ai-edge-litert has none): both are refused before anything is made.
OS_RELEASES = ("bookworm", "trixie", "bullseye")
OS_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}  # each release's python3 package
MIN_PYTHON = "3.11"
SUPPORTED = {"aarch64": ("bookworm", "trixie"), "amd64": ("bookworm", "trixie")}
SUPPORTED_TEXT = (
    "64-bit Raspberry Pi OS 12 (bookworm) or 13 (trixie) on a Pi 4 or 5 with 2 GB (4 GB for mode edge): "
    "every mode (--arch aarch64)"
)
ARM32_REFUSAL = (
    f"32-bit Raspberry Pi OS is not supported: the edge needs Python >= {MIN_PYTHON} and tflite-runtime has no "
    "32-bit wheel for it; install 64-bit Raspberry Pi OS (bookworm or trixie) and enrol with --arch aarch64"
)
SERIAL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # as the pre-provisioning hook: [a-zA-Z0-9_-], no ":"


@dataclass
class EnrollResult:
    status: str  # enrolled | unchanged
    thing_name: str
    group: str
    arch: str
    provisioning: str
    bundle: Path | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "thing_name": self.thing_name,
            "group": self.group,
            "arch": self.arch,
            "provisioning": self.provisioning,
            "bundle": str(self.bundle) if self.bundle else None,
            "notes": self.notes,
        }


def serial_of(thing_name: str, prefix: str) -> str:
    """The serial in ``<prefix>-<serial>``; FleetError for any other name."""
    head = f"{prefix}-"
    serial = thing_name[len(head) :] if thing_name.startswith(head) else ""
    if not serial or not SERIAL_RE.match(serial):
        raise FleetError(
            f"thing name {thing_name!r} is not {prefix}-<serial>: the provisioning template names every Pi "
            f"{prefix}-<SerialNumber> (serial: letters, digits, '-' or '_', at most 64), e.g. {prefix}-pi0001"
        )
    return serial


def check_platform(arch: str, os_release: str | None) -> None:
    """Refuse, before anything is made, a combination whose deployments would all fail: any 32-bit Pi
    (``arm``) and Raspberry Pi OS 11 (Python 3.9): the edge app needs Python >= 3.11."""
    if os_release is not None and os_release not in OS_RELEASES:
        raise FleetError(f"--os must be one of {', '.join(OS_RELEASES)}, not {os_release!r}")
    if arch not in bundle.ARCHITECTURES and arch != "arm":
        raise FleetError(f"--arch must be one of {', '.join(bundle.ARCHITECTURES)} (the nucleus's names), not {arch!r}")
    if arch == "arm":
        raise FleetError(ARM32_REFUSAL)
    if os_release is not None and os_release not in SUPPORTED.get(arch, ()):
        raise FleetError(
            f"--arch {arch} is not supported on {os_release} (Python {OS_PYTHON[os_release]}; the edge needs "
            f"Python >= {MIN_PYTHON}). Supported: {SUPPORTED_TEXT}"
        )


def thing_exists(iot: Any, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        iot.describe_thing(thingName=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def enrolled_item(ctx: AwsContext, outputs: StackOutputs, thing_name: str) -> dict[str, Any] | None:
    table = outputs.require("EnrollmentTable")
    item = ctx.client("dynamodb").get_item(TableName=table, Key={"thingName": {"S": thing_name}}, ConsistentRead=True)
    raw = item.get("Item")
    return {k: next(iter(v.values())) for k, v in raw.items()} if raw else None


def _settings(ctx: AwsContext, outputs: StackOutputs, thing: str, serial: str, arch: str, nucleus: str):
    iot = ctx.client("iot")
    data = outputs.get("IotDataEndpointAddress")
    data = data or iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    cred = iot.describe_endpoint(endpointType="iot:CredentialProvider")["endpointAddress"]
    return bundle.DeviceSettings(
        thing_name=thing,
        serial=serial,
        arch=arch,
        region=outputs.region,
        iot_data_endpoint=data,
        iot_credential_endpoint=cred,
        role_alias=outputs.require("RoleAlias"),
        provisioning_template=outputs.require("ProvisioningTemplate"),
        nucleus_version=nucleus,
        # the claim policy lets a claim certificate connect only as <ClaimClientIdPrefix>... (never as a thing)
        claim_client_id=(outputs.get("ClaimClientIdPrefix") or f"{outputs.thing_prefix}-claim-") + serial,
    )


def _device_certificate(ctx: AwsContext, outputs: StackOutputs, thing: str, serial: str, group: str) -> dict:
    """``--device-cert``: the thing, its own certificate, the device policy and its group, made here."""
    from botocore.exceptions import BotoCoreError, ClientError

    iot = ctx.client("iot")
    made: dict[str, Any] = {}
    try:
        iot.create_thing(thingName=thing, attributePayload={"attributes": {"serial": serial}})
        made["thing"] = thing
        cert = iot.create_keys_and_certificate(setAsActive=True)
        made["cert"] = cert
        iot.attach_policy(policyName=outputs.require("DevicePolicy"), target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
        iot.add_thing_to_thing_group(thingGroupName=outputs.require(GROUPS[group]), thingName=thing)
    except (BotoCoreError, ClientError, FleetError) as exc:
        _undo_device(iot, made)
        raise explain(exc, f"creating thing {thing} and its certificate") from exc
    return made


def _undo_device(iot: Any, made: dict[str, Any]) -> None:
    try:
        if "cert" in made:
            claim.delete_certificate(iot, made["cert"]["certificateId"], made["cert"]["certificateArn"])
        if "thing" in made:
            iot.delete_thing(thingName=made["thing"])
    except Exception as exc:  # report what is left, do not hide the first error
        log.error("could not undo %s: %s: remove it with `hybridstream fleet cleanup --thing`", made, exc)


def enroll(
    ctx: AwsContext,
    outputs: StackOutputs,
    thing_name: str,
    *,
    group: str = "fleet",
    arch: str = "aarch64",
    device_cert: bool = False,
    out: Path | None = None,
    nucleus_version: str = "latest",
    now: datetime | None = None,
    os_release: str | None = None,
) -> EnrollResult:
    if group not in GROUPS:
        raise FleetError(f"--group must be canary or fleet, not {group!r}")
    check_platform(arch, os_release)  # also the architecture's name; a 32-bit Pi gets the reason, not a list
    from botocore.exceptions import BotoCoreError, ClientError

    serial = serial_of(thing_name, outputs.thing_prefix)
    provisioning = "device-cert" if device_cert else "claim"
    out = out or Path("build") / "fleet" / f"{thing_name}.tar"
    try:
        return _enroll(ctx, outputs, thing_name, serial, group, arch, provisioning, out, nucleus_version, now)
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, f"enrolling {thing_name}") from exc


def _enroll(ctx, outputs, thing, serial, group, arch, provisioning, out, nucleus, now) -> EnrollResult:
    existing = enrolled_item(ctx, outputs, thing)
    if existing is not None:
        wanted = {"group": group, "arch": arch, "provisioning": provisioning}
        have = {k: existing.get(k, "claim" if k == "provisioning" else "") for k in wanted}
        if have != wanted:
            diff = ", ".join(f"{k}={have[k]} (asked {wanted[k]})" for k in wanted if have[k] != wanted[k])
            raise FleetError(
                f"{thing} is already enrolled with {diff}: nothing changed. To change it, remove the device "
                f"(`hybridstream fleet cleanup --thing {thing}`) and enrol it again"
            )
        result = EnrollResult(
            "unchanged", thing, group, arch, provisioning, None, [f"{thing}: already enrolled, nothing changed"]
        )
        if out.exists():
            result.bundle = out
        elif provisioning == "claim":
            cert = claim.get_or_create(ctx, outputs)
            content = bundle.files(
                _settings(ctx, outputs, thing, serial, arch, nucleus),
                provisioning,
                cert.certificate_pem,
                cert.private_key,
            )
            result.bundle = bundle.write(out, thing, content)
            result.notes.append(f"the bundle was missing: written again to {out}")
        else:
            result.notes.append(
                f"no bundle at {out}: a per-device private key exists only in the bundle written at enrolment"
            )
        return result

    iot = ctx.client("iot")
    if thing_exists(iot, thing):
        raise FleetError(
            f"thing {thing} already exists in IoT: the provisioning hook refuses existing names (a copied claim "
            "certificate must not take over a device). Pick another serial, or remove the old thing first"
        )
    settings = _settings(ctx, outputs, thing, serial, arch, nucleus)
    made: dict[str, Any] = {}
    notes: list[str] = []
    if provisioning == "claim":
        cert = claim.get_or_create(ctx, outputs)
        if cert.created:
            notes.append(f"created the fleet's claim certificate {cert.certificate_id[:12]}... (kept in SSM)")
        pem, key = cert.certificate_pem, cert.private_key
    else:
        made = _device_certificate(ctx, outputs, thing, serial, group)
        pem, key = made["cert"]["certificatePem"], made["cert"]["keyPair"]["PrivateKey"]
        notes.append(f"created thing {thing} with its own certificate in group {outputs.require(GROUPS[group])}")
    content = bundle.files(settings, provisioning, pem, key)
    item = {
        "thingName": {"S": thing},
        "serial": {"S": serial},
        "group": {"S": group},
        "arch": {"S": arch},
        "provisioning": {"S": provisioning},
        "enrolledAt": {"S": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    ddb = ctx.client("dynamodb")
    table = outputs.require("EnrollmentTable")
    from botocore.exceptions import ClientError

    try:
        ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(thingName)")
    except ClientError as exc:
        _undo_device(iot, made)
        if error_code(exc) == "ConditionalCheckFailedException":
            raise FleetError(f"{thing} was enrolled by someone else meanwhile: run the command again") from exc
        raise
    try:
        path = bundle.write(out, thing, content)
    except OSError as exc:
        ddb.delete_item(TableName=table, Key={"thingName": {"S": thing}})
        _undo_device(iot, made)
        raise FleetError(f"could not write the bundle {out}: {exc} (enrolment undone)") from exc
    return EnrollResult("enrolled", thing, group, arch, provisioning, path, notes)
