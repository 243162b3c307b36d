"""The Pi's install script (hybridstream/fleet/pi/install.sh): shellcheck clean, and run for real as far
as it goes offline: a bundle made by ``hybridstream.fleet.bundle``, unpacked, then ``install.sh`` in a
throwaway root with the boundary stubbed by PATH shims (apt-get/dpkg/dpkg-query: a fake package
database; curl: canned downloads; java: ``-version``, the nucleus's ``--version`` and the installer,
which records its arguments and creates the root's config/). A second run is a no-op.

The installer invocation follows the Greengrass guide for fleet provisioning
(https://docs.aws.amazon.com/greengrass/v2/developerguide/fleet-provisioning.html: ``--trusted-plugin``
with the FleetProvisioningByClaim jar, ``--init-config``, ``--component-default-user ggc_user:ggc_group``,
``--setup-system-service true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from hybridstream.fleet import bundle
from infra.recipes import APT_LOCK_TIMEOUT, JAVA_PACKAGES
from tests.fleet.debian_releases import APT_CACHE_SHIM, RELEASES

SCRIPT = Path(bundle.__file__).parent / "pi" / "install.sh"
NUCLEUS_VERSION = "2.14.3"

SHIMS = {
    "apt-get": """#!/bin/bash
echo "apt-get $*" >>"$SHIM_LOG"
if [ "$1" = update ] && [ -n "${FAKE_APT_LOCKED:-}" ] && [ "$(cat "$FAKE_APT_LOCKED")" -gt 0 ]; then
  echo $(( $(cat "$FAKE_APT_LOCKED") - 1 )) >"$FAKE_APT_LOCKED"
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2; exit 100
fi
if [ "$1" = -o ]; then shift 2; fi
if [ "$1" = install ]; then
  for a in "$@"; do case "$a" in -*|install) ;; *) echo "$a" >>"$FAKE_DPKG_DB" ;; esac; done
fi
""",
    "dpkg-query": """#!/bin/bash
pkg="${!#}"
grep -qx "$pkg" "$FAKE_DPKG_DB" 2>/dev/null && printf 'install ok installed' && exit 0
exit 1
""",
    "dpkg": """#!/bin/bash
[ "$1" = --print-architecture ] && echo "$FAKE_DEB_ARCH"
""",
    "curl": """#!/bin/bash
echo "curl $*" >>"$SHIM_LOG"
out=""; url=""
while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2 ;; -*) shift ;; *) url="$1"; shift ;; esac; done
case "$url" in
  *greengrass-nucleus-latest.zip|*/greengrass-2*.zip) cp "$FAKE_NUCLEUS_ZIP" "$out" ;;
  *.jar) echo "plugin jar" >"$out" ;;
  *AmazonRootCA1.pem) echo "-----BEGIN CERTIFICATE-----" >"$out" ;;
  *) echo "unexpected url $url" >&2; exit 22 ;;
esac
""",
    "apt-cache": APT_CACHE_SHIM,
    # the release's python3 (FAKE_PYTHON: its version, or "none" for no python3 at all)
    "python3": """#!/bin/sh
[ "${FAKE_PYTHON:-3.11}" = none ] && exit 127
echo "${FAKE_PYTHON:-3.11}"
""",
    "sleep": """#!/bin/bash
echo "sleep $*" >>"$SHIM_LOG"
""",
    "java": """#!/bin/bash
if [ "$1" = -version ]; then
  for v in 21 17; do
    grep -qx "openjdk-$v-jre-headless" "$FAKE_DPKG_DB" 2>/dev/null || continue
    printf 'openjdk version "%s.0.9"\\n' "$v" >&2; exit 0
  done
  exit 127
fi
if [ "$1" = -jar ] && [ "$3" = --version ]; then echo "AWS Greengrass v__VERSION__"; exit 0; fi
echo "java $*" >>"$SHIM_LOG"
root=""; cfg=""
for a in "$@"; do case "$a" in -Droot=*) root="${a#-Droot=}" ;; esac; done
while [ $# -gt 0 ]; do [ "$1" = --init-config ] && cfg="$2"; shift; done
mkdir -p "$root/config" && cp "$cfg" "$root/config/effectiveConfig.yaml"
""".replace("__VERSION__", NUCLEUS_VERSION),
}


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck missing: `make setup` installs it (scripts/setup.sh)")
    result = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def pi(tmp_path):
    """A throwaway Pi: shims on PATH, a fake package database, an unpacked bundle."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, body in SHIMS.items():
        (shims / name).write_text(body)
        (shims / name).chmod(0o755)
    nucleus = tmp_path / "nucleus.zip"
    with zipfile.ZipFile(nucleus, "w") as z:
        z.writestr("lib/Greengrass.jar", b"not really a jar")
        z.writestr("LICENSE", b"license")

    def unpack(arch: str = "aarch64", provisioning: str = "claim") -> Path:
        settings = bundle.DeviceSettings(
            thing_name="hybridstream-pi0001",
            serial="pi0001",
            arch=arch,
            region="eu-west-1",
            iot_data_endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
            iot_credential_endpoint="abc.credentials.iot.eu-west-1.amazonaws.com",
            role_alias="hybridstream-tes-alias",
            provisioning_template="hybridstream-fleet-provisioning",
        )
        # placeholders: the install script only moves these files, it never reads them
        content = bundle.files(settings, provisioning, "claim certificate placeholder\n", "claim key placeholder\n")
        tar = bundle.write(tmp_path / "bundle.tar", settings.thing_name, content)
        dest = tmp_path / "home"
        with tarfile.open(tar) as t:
            t.extractall(dest, filter="data")
        return dest / settings.thing_name

    env = {
        "PATH": f"{shims}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HYBRIDSTREAM_PI_ROOT": str(tmp_path / "root"),
        "SHIM_LOG": str(tmp_path / "calls.log"),
        "FAKE_DPKG_DB": str(tmp_path / "dpkg.db"),
        "FAKE_DEB_ARCH": "arm64",
        "FAKE_NUCLEUS_ZIP": str(nucleus),
        "FAKE_APT_PACKAGES": " ".join(RELEASES["bookworm"].jre_headless),
    }
    (tmp_path / "dpkg.db").write_text("")
    return tmp_path, unpack, env


def run(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(folder / "install.sh"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def calls(tmp: Path) -> list[str]:
    log = tmp / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_install_then_second_run_is_a_no_op(pi):
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    first = run(folder, env)
    assert first.returncode == 0, first.stdout + first.stderr
    log = calls(tmp)
    installs = [c for c in log if c.startswith("apt-get -o DPkg::Lock::Timeout=600 install")]
    assert len(installs) == 1 and "openjdk-17-jre-headless" in installs[0] and "python3-venv" in installs[0]
    assert "librdkafka-dev" not in installs[0]  # no build dependencies: every component installs wheels
    downloads = [c for c in log if c.startswith("curl")]
    assert any("greengrass-nucleus-latest.zip" in c for c in downloads)
    assert any("fleetprovisioningbyclaim-latest.jar" in c for c in downloads)
    assert any("AmazonRootCA1.pem" in c for c in downloads)
    gg_root = tmp / "root" / "greengrass" / "v2"
    installer = next(c for c in log if c.startswith("java "))
    assert f"-Droot={gg_root}" in installer
    assert "--trusted-plugin" in installer and "aws.greengrass.FleetProvisioningByClaim.jar" in installer
    assert "--component-default-user ggc_user:ggc_group" in installer and "--setup-system-service true" in installer
    config = yaml.safe_load((gg_root / "config" / "effectiveConfig.yaml").read_text())
    assert config["services"]["aws.greengrass.Nucleus"]["version"] == NUCLEUS_VERSION
    plugin = config["services"]["aws.greengrass.FleetProvisioningByClaim"]["configuration"]
    assert plugin["rootPath"] == str(gg_root)
    assert plugin["claimCertificatePath"] == f"{gg_root}/claim-certs/claim.pem.crt"
    assert (gg_root / "claim-certs" / "claim.pem.crt").exists()
    assert not (gg_root / "claim-certs" / "claim.private.pem.key").exists()  # removed once provisioned
    assert oct((gg_root / "claim-certs").stat().st_mode & 0o777) == "0o700"
    assert (gg_root / ".hybridstream-installed").read_text().startswith("hybridstream-pi0001 ")

    second = run(folder, env)
    assert second.returncode == 0, second.stderr
    assert "already installed as hybridstream-pi0001 from this bundle: nothing to do" in second.stdout
    assert calls(tmp) == log  # no apt, no download, no installer


def _arm_bundle(folder: Path) -> Path:
    """A bundle for ``arm`` as `fleet enroll --arch arm --os bullseye` wrote them before 32-bit was refused
    (bundle.files now refuses ``arm`` itself)."""
    env = folder / "bundle.env"
    env.write_text(env.read_text().replace("ARCH=aarch64", "ARCH=arm"))
    return folder


@pytest.mark.parametrize(
    ("bundle_arch", "args"),
    [("arm", ()), ("aarch64", ()), ("aarch64", ("--force-arch",))],
    ids=["arm-bundle", "aarch64-bundle", "aarch64-bundle-forced"],
)
def test_a_32_bit_os_is_refused_before_anything(pi, bundle_arch, args):
    """A 32-bit Raspberry Pi OS (dpkg armhf, also on a 64-bit kernel) cannot run the edge: the code the Pi
    runs needs Python >= 3.11 (tests/fleet/test_pi_python.py) and tflite-runtime's only armv7l wheel is
    cp39 (ai-edge-litert has none). It is refused before apt, downloads or provisioning, whatever the
    bundle says, and --force-arch does not override it."""
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    if bundle_arch == "arm":
        _arm_bundle(folder)
    result = run(folder, {**env, "FAKE_DEB_ARCH": "armhf", "FAKE_PYTHON": "3.9"}, *args)
    assert result.returncode == 1
    assert (
        "32-bit Raspberry Pi OS is not supported: the edge needs Python >= 3.11 and tflite-runtime has no 32-bit "
        "wheel for it; install 64-bit Raspberry Pi OS (bookworm or trixie)" in result.stderr
    )
    assert "--arch aarch64" in result.stderr
    assert calls(tmp) == []  # no apt, no download, no installer
    assert not (tmp / "root" / "greengrass").exists()


def test_an_arm_bundle_is_refused_on_a_64_bit_pi_too(pi):
    tmp, unpack, env = pi
    folder = _arm_bundle(unpack("aarch64"))
    result = run(folder, env, "--force-arch")
    assert result.returncode == 1 and "32-bit Raspberry Pi OS is not supported" in result.stderr
    assert calls(tmp) == []


def test_python_older_than_3_11_is_refused_before_anything(pi):
    """Raspberry Pi OS 11 (bullseye) ships Python 3.9 (tests/fleet/debian_releases.py), also on 64-bit:
    the edge app would install and then fail at import (tomllib, datetime.UTC, zip(strict=...))."""
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    etc = tmp / "root" / "etc"
    etc.mkdir(parents=True)
    (etc / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n')
    result = run(folder, {**env, "FAKE_PYTHON": RELEASES["bullseye"].python})
    assert result.returncode == 1
    assert (
        "the edge needs Python >= 3.11; this Pi runs Debian GNU/Linux 11 (bullseye) with Python 3.9, "
        "so every deployment would fail" in result.stderr
    )
    assert "64-bit Raspberry Pi OS 12 (bookworm) or 13 (trixie)" in result.stderr
    assert calls(tmp) == []
    assert not (tmp / "root" / "greengrass").exists()


def test_debian_11_without_python3_is_refused_before_apt(pi):
    """Raspberry Pi OS 11 without a python3 yet: refused from /etc/os-release before apt installs
    anything (apt would install bullseye's Python 3.9, Java and the rest first)."""
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    etc = tmp / "root" / "etc"
    etc.mkdir(parents=True)
    (etc / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n')
    result = run(folder, {**env, "FAKE_PYTHON": "none"})
    assert result.returncode == 1
    assert "the edge needs Python >= 3.11; this Pi runs Debian GNU/Linux 11 (bullseye)" in result.stderr
    assert calls(tmp) == []


def test_without_python3_apt_installs_it_and_it_is_checked(pi):
    """No python3 at all (a minimal image): apt installs the release's, then its version is checked
    before anything is downloaded."""
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    result = run(folder, {**env, "FAKE_PYTHON": "none"})
    assert result.returncode == 1 and "the edge needs Python >= 3.11" in result.stderr
    assert any(" install " in c and " python3 " in f"{c} " for c in calls(tmp))
    assert not any(c.startswith("curl") for c in calls(tmp))


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_java_comes_from_the_release_s_own_packages(pi, release):
    """Issue 20, item 1. Debian 13 (trixie, the current Raspberry Pi OS) has no openjdk-17, bookworm no
    openjdk-21 (tests/fleet/debian_releases.py, read from Debian's package lists): the installer takes the
    first of JAVA_PACKAGES that apt has a candidate for, and the Java check after it passes."""
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    release_env = {
        "FAKE_APT_PACKAGES": " ".join(RELEASES[release].jre_headless),
        "FAKE_PYTHON": RELEASES[release].python,
    }
    result = run(folder, {**env, **release_env})
    assert result.returncode == 0, result.stderr
    (install,) = [c for c in calls(tmp) if c.startswith("apt-get -o") and " install " in c]
    wanted = next(p for p in JAVA_PACKAGES if p in RELEASES[release].jre_headless)
    assert install.split()[-1] == wanted
    assert wanted == {"trixie": "openjdk-21-jre-headless"}.get(release, "openjdk-17-jre-headless")


def test_no_java_package_is_a_clear_error_before_anything_is_installed(pi):
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    result = run(folder, {**env, "FAKE_APT_PACKAGES": "openjdk-11-jre-headless"})  # a buster-like release
    assert result.returncode == 1
    assert "no Java >= 17 package in this system's apt sources (tried openjdk-17-jre-headless" in result.stderr
    assert not any(" install " in c for c in calls(tmp))


def test_apt_waits_for_another_apt(pi):
    """Issue 20, item 7. unattended-upgrades may hold apt's locks on a freshly booted Pi. apt-get install
    waits for the dpkg lock with -o DPkg::Lock::Timeout; apt-get update ignores that option for its
    lists lock (apt 2.6: tests/infra/test_recipe_rules.py::test_apt_lock_timeout_covers_install_not_update),
    so the installer retries update, 10 s apart."""
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    locked = tmp / "locked"
    locked.write_text("2")
    result = run(folder, {**env, "FAKE_APT_LOCKED": str(locked)})
    assert result.returncode == 0, result.stderr
    log = calls(tmp)
    assert [c for c in log if c.startswith(("apt-get update", "sleep"))] == ["apt-get update -q", "sleep 10"] * 2 + [
        "apt-get update -q"
    ]
    assert any(c.startswith(f"apt-get -o DPkg::Lock::Timeout={APT_LOCK_TIMEOUT} install -y") for c in log)


def test_wrong_architecture_is_refused_before_anything(pi):
    tmp, unpack, env = pi
    folder = unpack("amd64")
    result = run(folder, env)  # the machine says arm64 -> aarch64
    assert result.returncode == 1
    assert "this bundle is for amd64 but this machine is aarch64" in result.stderr
    assert calls(tmp) == []


def test_existing_java_17_and_packages_are_kept(pi):
    tmp, unpack, env = pi
    (tmp / "dpkg.db").write_text(
        "\n".join(
            ["ca-certificates", "curl", "unzip", "python3", "python3-venv", "python3-pip", "openjdk-17-jre-headless"]
        )
        + "\n"
    )
    folder = unpack("aarch64")
    result = run(folder, env)
    assert result.returncode == 0, result.stderr
    assert "apt: prerequisites already installed" in result.stdout
    assert not any(c.startswith("apt-get") for c in calls(tmp))


def test_device_cert_bundle_uses_no_plugin(pi):
    tmp, unpack, env = pi
    folder = unpack("aarch64", provisioning="device-cert")
    result = run(folder, env)
    assert result.returncode == 0, result.stderr
    log = calls(tmp)
    assert not any("fleetprovisioningbyclaim" in c for c in log)
    installer = next(c for c in log if c.startswith("java "))
    assert "--trusted-plugin" not in installer
    gg_root = tmp / "root" / "greengrass" / "v2"
    config = yaml.safe_load((gg_root / "config" / "effectiveConfig.yaml").read_text())
    assert config["system"]["certificateFilePath"] == f"{gg_root}/device-certs/device.pem.crt"
    assert (gg_root / "device-certs" / "device.private.pem.key").exists()  # its own key stays


def test_dry_run_changes_nothing(pi):
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    result = run(folder, env, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "(dry run) apt-get -o DPkg::Lock::Timeout=600 install" in result.stdout
    assert calls(tmp) == [] and not (tmp / "root").exists()


def test_failed_download_stops_with_a_clear_error(pi):
    tmp, unpack, env = pi
    folder = unpack("aarch64")
    result = run(folder, {**env, "FAKE_NUCLEUS_ZIP": str(tmp / "missing.zip")})
    assert result.returncode != 0
    assert not (tmp / "root" / "greengrass" / "v2" / ".hybridstream-installed").exists()
    # the retry after the network is back completes
    assert run(folder, env).returncode == 0


def test_help_and_unknown_option(pi):
    _, unpack, env = pi
    folder = unpack()
    text = run(folder, env, "--help").stdout
    assert "sudo ./install.sh" in text and text.rstrip().splitlines()[-1].startswith(
        "Environment: HYBRIDSTREAM_PI_ROOT"
    )
    bad = run(folder, env, "--bogus")
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
    assert os.access(folder / "install.sh", os.X_OK)
