"""``fleet enroll``: the allow-list item the pre-provisioning hook reads, the claim certificate kept in
SSM and reused, the device bundle, idempotency, refusals, and nothing half-made on failure (moto)."""

from __future__ import annotations

import io
import json
import re
import stat
import tarfile

import boto3
import pytest
import yaml

from hybridstream.fleet import claim, enroll
from hybridstream.fleet.session import FleetError
from tests.fleet.conftest import CANARY_GROUP, PREFIX, REGION, STACK, TABLE, run_cli


def item(thing: str) -> dict | None:
    raw = boto3.client("dynamodb", region_name=REGION).get_item(TableName=TABLE, Key={"thingName": {"S": thing}})
    return {k: v["S"] for k, v in raw["Item"].items()} if "Item" in raw else None


def members(path) -> dict[str, bytes]:
    with tarfile.open(fileobj=path) if isinstance(path, io.BytesIO) else tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_enroll_claim_writes_item_certificate_and_bundle(ctx, tmp_path, capsys):
    out = tmp_path / "pi1.tar"
    code, stdout, err = run_cli(
        [
            "fleet",
            "enroll",
            "--thing-name",
            f"{PREFIX}-pi0001",
            "--group",
            "canary",
            "--arch",
            "aarch64",
            "--os",
            "bookworm",
            "--out",
            str(out),
        ],
        ctx=ctx,
        capsys=capsys,
    )
    assert code == 0, err
    assert item(f"{PREFIX}-pi0001") == {
        "thingName": f"{PREFIX}-pi0001",
        "serial": "pi0001",
        "group": "canary",
        "arch": "aarch64",
        "provisioning": "claim",
        "enrolledAt": item(f"{PREFIX}-pi0001")["enrolledAt"],
    }
    assert "created the fleet's claim certificate" in stdout and "sudo ./install.sh" in stdout
    # the claim certificate: active, claim policy attached, kept in SSM (key as SecureString)
    iot, ssm = boto3.client("iot", region_name=REGION), boto3.client("ssm", region_name=REGION)
    record = json.loads(ssm.get_parameter(Name=claim.cert_parameter(STACK))["Parameter"]["Value"])
    key = ssm.get_parameter(Name=claim.key_parameter(STACK), WithDecryption=True)["Parameter"]
    assert key["Type"] == "SecureString" and "PRIVATE KEY" in key["Value"]
    assert (
        iot.describe_certificate(certificateId=record["certificateId"])["certificateDescription"]["status"] == "ACTIVE"
    )
    policies = iot.list_attached_policies(target=record["certificateArn"])["policies"]
    assert [p["policyName"] for p in policies] == [f"{PREFIX}-provisioning-claim"]
    # the bundle
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    files = members(out)
    thing = f"{PREFIX}-pi0001"
    assert sorted(files) == sorted(
        f"{thing}/{n}"
        for n in (
            "README.txt",
            "bundle.env",
            "config.yaml",
            "install.sh",
            "claim-certs/claim.pem.crt",
            "claim-certs/claim.private.pem.key",
        )
    )
    assert files[f"{thing}/claim-certs/claim.pem.crt"].decode() == record["certificatePem"]
    assert files[f"{thing}/claim-certs/claim.private.pem.key"].decode() == key["Value"]
    env = dict(line.split("=", 1) for line in files[f"{thing}/bundle.env"].decode().splitlines())
    assert env["THING_NAME"] == thing and env["ARCH"] == "aarch64" and env["PROVISIONING"] == "claim"
    config = yaml.safe_load(files[f"{thing}/config.yaml"])
    plugin = config["services"]["aws.greengrass.FleetProvisioningByClaim"]["configuration"]
    assert plugin["templateParameters"] == {"SerialNumber": "pi0001"}
    assert plugin["deviceId"] == f"{PREFIX}-claim-pi0001"  # the claim policy's client id prefix
    assert plugin["provisioningTemplate"] == f"{PREFIX}-fleet-provisioning"
    assert plugin["iotRoleAlias"] == f"{PREFIX}-tes-alias"
    assert plugin["awsRegion"] == REGION
    assert plugin["iotDataEndpoint"] == "abc123-ats.iot.eu-west-1.amazonaws.com"
    assert plugin["iotCredentialEndpoint"]  # from iot describe_endpoint(iot:CredentialProvider)
    assert plugin["claimCertificatePath"] == "__GG_ROOT__/claim-certs/claim.pem.crt"
    # the nucleus's default (false), as docs/deploy.md says and infra/test_recipe_rules.py relies on:
    # "interpolateComponentConfiguration ... Default: false"
    # (https://docs.aws.amazon.com/greengrass/v2/developerguide/greengrass-nucleus-component.html)
    assert "interpolateComponentConfiguration" not in files[f"{thing}/config.yaml"].decode()


def test_second_enroll_is_a_no_op_and_reuses_the_claim(ctx, tmp_path, capsys):
    args = ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0002", "--out", str(tmp_path / "b.tar")]
    assert run_cli(args, ctx=ctx, capsys=capsys)[0] == 0
    before = (tmp_path / "b.tar").read_bytes(), item(f"{PREFIX}-pi0002")
    code, out, _ = run_cli(args, ctx=ctx, capsys=capsys)
    assert code == 0 and "already enrolled, nothing changed" in out
    assert ((tmp_path / "b.tar").read_bytes(), item(f"{PREFIX}-pi0002")) == before
    # a second device reuses the claim certificate: still exactly one
    assert (
        run_cli(
            ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0003", "--out", str(tmp_path / "c.tar")],
            ctx=ctx,
            capsys=capsys,
        )[0]
        == 0
    )
    certs = boto3.client("iot", region_name=REGION).list_certificates()["certificates"]
    assert len(certs) == 1
    a, c = members(tmp_path / "b.tar"), members(tmp_path / "c.tar")
    assert a[f"{PREFIX}-pi0002/claim-certs/claim.pem.crt"] == c[f"{PREFIX}-pi0003/claim-certs/claim.pem.crt"]
    # a lost bundle is written again, identical
    (tmp_path / "b.tar").unlink()
    code, out, _ = run_cli(args, ctx=ctx, capsys=capsys)
    assert code == 0 and "the bundle was missing: written again" in out
    # identical but for the credentials endpoint, which moto makes up anew on every describe_endpoint
    again = members(tmp_path / "b.tar")
    first = members(io.BytesIO(before[0]))
    strip = re.compile(rb"iotCredentialEndpoint: .*\n")
    assert {k: strip.sub(b"", v) for k, v in again.items() if not k.endswith("bundle.env")} == {
        k: strip.sub(b"", v) for k, v in first.items() if not k.endswith("bundle.env")
    }


def test_same_name_other_options_is_refused(ctx, tmp_path, capsys):
    assert (
        run_cli(
            ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0004", "--out", str(tmp_path / "x.tar")],
            ctx=ctx,
            capsys=capsys,
        )[0]
        == 0
    )
    code, _, err = run_cli(
        ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0004", "--group", "canary"], ctx=ctx, capsys=capsys
    )
    assert code == 1 and "already enrolled with group=fleet (asked canary): nothing changed" in err
    assert item(f"{PREFIX}-pi0004")["group"] == "fleet"


@pytest.mark.parametrize("name", ["pi0001", "other-pi0001", f"{PREFIX}-", f"{PREFIX}-a:b", f"{PREFIX}-" + "x" * 65])
def test_names_outside_the_template_are_refused(ctx, capsys, name):
    code, _, err = run_cli(["fleet", "enroll", "--thing-name", name], ctx=ctx, capsys=capsys)
    assert code == 1 and f"is not {PREFIX}-<serial>" in err and "Traceback" not in err
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName=TABLE)["Count"] == 0


def test_existing_thing_is_refused(ctx, capsys):
    boto3.client("iot", region_name=REGION).create_thing(thingName=f"{PREFIX}-taken")
    code, _, err = run_cli(["fleet", "enroll", "--thing-name", f"{PREFIX}-taken"], ctx=ctx, capsys=capsys)
    assert code == 1 and "already exists in IoT" in err
    assert item(f"{PREFIX}-taken") is None
    assert boto3.client("iot", region_name=REGION).list_certificates()["certificates"] == []  # no claim made either


def test_device_cert_creates_the_thing_in_its_group(ctx, tmp_path, capsys):
    out = tmp_path / "d.tar"
    code, _, err = run_cli(
        ["fleet", "enroll", "--thing-name", f"{PREFIX}-dev1", "--group", "canary", "--device-cert", "--out", str(out)],
        ctx=ctx,
        capsys=capsys,
    )
    assert code == 0, err
    iot = boto3.client("iot", region_name=REGION)
    assert iot.list_things_in_thing_group(thingGroupName=CANARY_GROUP)["things"] == [f"{PREFIX}-dev1"]
    principal = iot.list_thing_principals(thingName=f"{PREFIX}-dev1")["principals"][0]
    assert [p["policyName"] for p in iot.list_attached_policies(target=principal)["policies"]] == [f"{PREFIX}-device"]
    files = members(out)
    config = yaml.safe_load(files[f"{PREFIX}-dev1/config.yaml"])
    assert config["system"]["thingName"] == f"{PREFIX}-dev1"
    assert config["services"]["aws.greengrass.Nucleus"]["configuration"]["iotRoleAlias"] == f"{PREFIX}-tes-alias"
    assert f"{PREFIX}-dev1/device-certs/device.private.pem.key" in files
    assert item(f"{PREFIX}-dev1")["provisioning"] == "device-cert"
    names = [p["Name"] for p in boto3.client("ssm", region_name=REGION).describe_parameters()["Parameters"]]
    assert claim.cert_parameter(STACK) not in names  # no claim certificate for a device-cert enrolment


def test_device_cert_failure_leaves_nothing(ctx, capsys):
    boto3.client("iot", region_name=REGION).delete_policy(policyName=f"{PREFIX}-device")  # attach_policy will fail
    code, _, err = run_cli(
        ["fleet", "enroll", "--thing-name", f"{PREFIX}-dev2", "--device-cert"], ctx=ctx, capsys=capsys
    )
    assert code == 1 and "creating thing" in err
    iot = boto3.client("iot", region_name=REGION)
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert item(f"{PREFIX}-dev2") is None


def test_unwritable_bundle_undoes_the_enrollment(ctx, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(
        ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0009", "--out", str(blocker / "sub" / "b.tar")],
        ctx=ctx,
        capsys=capsys,
    )
    assert code == 1 and "enrolment undone" in err
    assert item(f"{PREFIX}-pi0009") is None


def test_half_made_claim_is_repaired(ctx, tmp_path, capsys):
    """A run that died after the certificate parameter: the next one replaces the stray certificate."""
    assert (
        run_cli(
            ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0010", "--out", str(tmp_path / "a.tar")],
            ctx=ctx,
            capsys=capsys,
        )[0]
        == 0
    )
    ssm, iot = boto3.client("ssm", region_name=REGION), boto3.client("iot", region_name=REGION)
    old = json.loads(ssm.get_parameter(Name=claim.cert_parameter(STACK))["Parameter"]["Value"])["certificateId"]
    ssm.delete_parameter(Name=claim.key_parameter(STACK))
    assert (
        run_cli(
            ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0011", "--out", str(tmp_path / "b.tar")],
            ctx=ctx,
            capsys=capsys,
        )[0]
        == 0
    )
    new = json.loads(ssm.get_parameter(Name=claim.cert_parameter(STACK))["Parameter"]["Value"])["certificateId"]
    assert new != old
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [new]


def test_enrolled_item_satisfies_the_pre_provisioning_hook(ctx, tmp_path, capsys, monkeypatch):
    """What enroll writes is what lambdas/pre_provisioning reads: the hook allows it, one group."""
    from tests.lambdas.conftest import load_handler

    assert (
        run_cli(
            [
                "fleet",
                "enroll",
                "--thing-name",
                f"{PREFIX}-pi0020",
                "--group",
                "canary",
                "--out",
                str(tmp_path / "h.tar"),
            ],
            ctx=ctx,
            capsys=capsys,
        )[0]
        == 0
    )
    hook = load_handler("pre_provisioning")
    hook._clients.clear()
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("THING_PREFIX", PREFIX)
    monkeypatch.setenv("THING_GROUPS", json.dumps({"fleet": f"{PREFIX}-fleet", "canary": CANARY_GROUP}))
    answer = hook.decide({"parameters": {"SerialNumber": "pi0020"}, "claimCertificateId": "c"})
    assert answer == {"allowProvisioning": True, "parameterOverrides": {"ThingGroupName": CANARY_GROUP}}
    assert hook.decide({"parameters": {"SerialNumber": "pi0099"}})["allowProvisioning"] is False


def test_enroll_json(ctx, tmp_path, capsys):
    argv = ["fleet", "enroll", "--thing-name", f"{PREFIX}-pi0030", "--arch", "amd64", "--out", str(tmp_path / "j.tar")]
    code, out, _ = run_cli([*argv, "--json"], ctx=ctx, capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "enrolled" and data["arch"] == "amd64" and data["bundle"] == str(tmp_path / "j.tar")
    code, out, _ = run_cli([*argv, "--json"], ctx=ctx, capsys=capsys)
    assert json.loads(out)["status"] == "unchanged"


@pytest.mark.parametrize("extra", [[], ["--os", "bullseye"], ["--os", "bookworm"], ["--os", "trixie"]])
def test_a_32_bit_pi_is_refused_before_anything_is_made(ctx, tmp_path, capsys, extra):
    """The code the Pi runs needs Python >= 3.11 (tests/fleet/test_pi_python.py) and tflite-runtime's only
    armv7l wheel is cp39 (ai-edge-litert has none): a 32-bit Pi would be provisioned and then fail every
    deployment, on any release, so it is refused before the allow-list, the claim certificate or a bundle."""
    thing = f"{PREFIX}-pi0032"
    out = tmp_path / "arm.tar"
    argv = ["fleet", "enroll", "--thing-name", thing, "--arch", "arm", "--out", str(out), *extra]
    code, _, err = run_cli(argv, ctx=ctx, capsys=capsys)
    assert code != 0
    assert (
        "32-bit Raspberry Pi OS is not supported: the edge needs Python >= 3.11 and tflite-runtime has no 32-bit "
        "wheel for it; install 64-bit Raspberry Pi OS (bookworm or trixie)" in err
    )
    assert "--arch aarch64" in err
    assert item(thing) is None and not out.exists()
    params = boto3.client("ssm", region_name=REGION).describe_parameters()["Parameters"]
    assert claim.cert_parameter(STACK) not in {p["Name"] for p in params}  # no claim certificate made


def test_raspberry_pi_os_11_is_refused_on_64_bit_too(ctx, tmp_path, capsys):
    """Raspberry Pi OS 11 (bullseye) ships Python 3.9 (tests/fleet/debian_releases.py) on arm64 too."""
    thing = f"{PREFIX}-pi0011"
    out = tmp_path / "bullseye.tar"
    argv = ["fleet", "enroll", "--thing-name", thing, "--arch", "aarch64", "--os", "bullseye", "--out", str(out)]
    code, _, err = run_cli(argv, ctx=ctx, capsys=capsys)
    assert code != 0
    assert "--arch aarch64 is not supported on bullseye (Python 3.9; the edge needs Python >= 3.11)" in err
    assert "64-bit Raspberry Pi OS 12 (bookworm) or 13 (trixie)" in err
    assert item(thing) is None and not out.exists()


def test_an_unknown_architecture_is_named_as_such_before_any_os_rule():
    """A caller past the CLI's choices gets the architecture's own error, not an OS rule about it."""
    with pytest.raises(FleetError, match=r"--arch must be one of aarch64, amd64 .*not 'x86'"):
        enroll.check_platform("x86", "bookworm")
