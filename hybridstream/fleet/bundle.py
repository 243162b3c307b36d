"""The device bundle: one tar that turns a Pi into an enrolled Greengrass core device.

Contents (under ``<thing>/``): ``install.sh`` (run it on the Pi as root), ``bundle.env`` (thing
name, architecture, provisioning mode), ``config.yaml`` (the nucleus's initial configuration),
``claim-certs/`` (fleet provisioning by claim: the shared claim certificate and key) or
``device-certs/`` (``--device-cert``: this device's own certificate and key), and a README.

``config.yaml`` follows the Greengrass developer guide: fleet provisioning by claim
(https://docs.aws.amazon.com/greengrass/v2/developerguide/fleet-provisioning.html,
plugin parameters: .../fleet-provisioning-configuration.html) or manual provisioning with a device
certificate (.../manual-installation.html). ``__GG_ROOT__`` and ``__NUCLEUS_VERSION__`` are filled
in on the Pi by ``install.sh`` (the nucleus is downloaded there). ``interpolateComponentConfiguration``
stays at the nucleus's default (false), as docs/deploy.md says: no component configuration of ours
holds a recipe variable (the apps fill in ``{thing}`` themselves, infra/recipes.py). The tar holds
a private key: it is written with mode 0600.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ARCHITECTURES = ("aarch64", "amd64")  # no 32-bit "arm": the edge needs Python >= 3.11 (fleet/enroll.py)
AMAZON_ROOT_CA = "AmazonRootCA1.pem"


@dataclass(frozen=True)
class DeviceSettings:
    """What the nucleus on one Pi needs to know."""

    thing_name: str
    serial: str
    arch: str
    region: str
    iot_data_endpoint: str
    iot_credential_endpoint: str
    role_alias: str
    provisioning_template: str
    nucleus_version: str = "latest"
    claim_client_id: str = ""  # the MQTT client id while provisioning (the claim policy allows only its prefix)


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def claim_config(s: DeviceSettings) -> str:
    """Nucleus config for fleet provisioning by claim (the FleetProvisioningByClaim plugin)."""
    root = "__GG_ROOT__"
    return "\n".join(
        [
            "---",
            "services:",
            "  aws.greengrass.Nucleus:",
            '    version: "__NUCLEUS_VERSION__"',
            "  aws.greengrass.FleetProvisioningByClaim:",
            "    configuration:",
            f"      rootPath: {_q(root)}",
            f"      awsRegion: {_q(s.region)}",
            f"      iotDataEndpoint: {_q(s.iot_data_endpoint)}",
            f"      iotCredentialEndpoint: {_q(s.iot_credential_endpoint)}",
            f"      iotRoleAlias: {_q(s.role_alias)}",
            f"      provisioningTemplate: {_q(s.provisioning_template)}",
            f"      claimCertificatePath: {_q(root + '/claim-certs/claim.pem.crt')}",
            f"      claimCertificatePrivateKeyPath: {_q(root + '/claim-certs/claim.private.pem.key')}",
            f"      rootCaPath: {_q(root + '/' + AMAZON_ROOT_CA)}",
            *([f"      deviceId: {_q(s.claim_client_id)}"] if s.claim_client_id else []),
            "      templateParameters:",
            f"        SerialNumber: {_q(s.serial)}",
            "",
        ]
    )


def device_cert_config(s: DeviceSettings) -> str:
    """Nucleus config for a device with its own certificate (no provisioning at install)."""
    root = "__GG_ROOT__"
    return "\n".join(
        [
            "---",
            "system:",
            f"  certificateFilePath: {_q(root + '/device-certs/device.pem.crt')}",
            f"  privateKeyPath: {_q(root + '/device-certs/device.private.pem.key')}",
            f"  rootCaPath: {_q(root + '/' + AMAZON_ROOT_CA)}",
            f"  rootpath: {_q(root)}",
            f"  thingName: {_q(s.thing_name)}",
            "services:",
            "  aws.greengrass.Nucleus:",
            '    componentType: "NUCLEUS"',
            '    version: "__NUCLEUS_VERSION__"',
            "    configuration:",
            f"      awsRegion: {_q(s.region)}",
            f"      iotRoleAlias: {_q(s.role_alias)}",
            f"      iotDataEndpoint: {_q(s.iot_data_endpoint)}",
            f"      iotCredEndpoint: {_q(s.iot_credential_endpoint)}",
            "",
        ]
    )


def install_script() -> bytes:
    """The Pi's install script (package data)."""
    return resources.files("hybridstream.fleet").joinpath("pi/install.sh").read_bytes()


def readme(s: DeviceSettings, provisioning: str) -> str:
    return (
        f"hybridstream device bundle for thing {s.thing_name} ({s.arch}, {provisioning})\n\n"
        "On the Pi (Raspberry Pi OS / Debian, network access to apt, AWS IoT and the Greengrass downloads):\n\n"
        f"  tar xf {s.thing_name}.tar && cd {s.thing_name} && sudo ./install.sh\n\n"
        "install.sh installs Java 17 and the prerequisites, downloads the Greengrass nucleus, provisions the\n"
        "device and starts Greengrass as a service. A second run changes nothing. This bundle holds a private\n"
        "key: copy it over SSH only, and delete it once the Pi is installed.\n"
    )


def files(settings: DeviceSettings, provisioning: str, certificate_pem: str, private_key: str) -> dict[str, bytes]:
    """Relative path -> content of every file in the bundle (deterministic)."""
    if settings.arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {settings.arch!r}")
    if provisioning == "claim":
        config = claim_config(settings)
        certs = {"claim-certs/claim.pem.crt": certificate_pem, "claim-certs/claim.private.pem.key": private_key}
    elif provisioning == "device-cert":
        config = device_cert_config(settings)
        certs = {"device-certs/device.pem.crt": certificate_pem, "device-certs/device.private.pem.key": private_key}
    else:
        raise ValueError(f"provisioning must be claim or device-cert, not {provisioning!r}")
    content: dict[str, bytes] = {
        "config.yaml": config.encode(),
        "install.sh": install_script(),
        "README.txt": readme(settings, provisioning).encode(),
        **{k: v.encode() for k, v in certs.items()},
    }
    bundle_id = hashlib.sha256(b"".join(k.encode() + b"\0" + v for k, v in sorted(content.items()))).hexdigest()[:16]
    env = (
        f"THING_NAME={settings.thing_name}\nSERIAL={settings.serial}\nARCH={settings.arch}\n"
        f"PROVISIONING={provisioning}\nNUCLEUS_VERSION={settings.nucleus_version}\nBUNDLE_ID={bundle_id}\n"
    )
    content["bundle.env"] = env.encode()
    return content


def write(path: Path, thing_name: str, content: dict[str, bytes]) -> Path:
    """Write the tar atomically with mode 0600 (it holds a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w") as tar:
        folder = tarfile.TarInfo(thing_name)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(folder)
        for name in sorted(content):
            info = tarfile.TarInfo(f"{thing_name}/{name}")
            info.size = len(content[name])
            info.mode = 0o755 if name.endswith(".sh") else 0o600
            tar.addfile(info, io.BytesIO(content[name]))
    os.replace(tmp, path)
    return path
