#!/usr/bin/env bash
# hybridstream: install the AWS IoT Greengrass nucleus on this Raspberry Pi and enrol it.
#
# Shipped inside the device bundle that `hybridstream fleet enroll` writes; run it on the Pi, as
# root, from the unpacked bundle:   sudo ./install.sh
#
# What it does (each step is skipped when already done, so a second run changes nothing):
#   1. refuses a 32-bit OS (the edge needs Python >= 3.11 and tflite-runtime has no 32-bit wheel for it)
#      and checks the architecture against the bundle's (Greengrass names: aarch64, amd64);
#   2. refuses a python3 older than 3.11 (Raspberry Pi OS 11 ships 3.9) before anything is installed
#      or provisioned (see SUPPORTED below);
#   3. apt: Java >= 17 (the nucleus and the KafkaBroker component; bookworm has openjdk-17, trixie
#      openjdk-21: the first with an apt candidate), python3-venv, curl and unzip; the edge app's lite
#      runtime is installed by its component into its own venv. apt waits for another apt
#      (unattended-upgrades);
#   4. downloads the Greengrass nucleus (and, for provisioning by claim, the fleet provisioning
#      plugin) and Amazon Root CA 1 HERE, on the Pi;
#   5. runs the standard installer with the bundle's config.yaml: the Pi provisions itself as its
#      enrolled thing (claim certificate), or uses its own certificate (--device-cert bundles);
#      Greengrass runs as a systemd service from then on;
#   6. removes the claim certificate's private key from the Pi once provisioning succeeded.
#
# Options: --dry-run (print the steps, change nothing), --force-arch (install on another architecture).
# Environment: HYBRIDSTREAM_PI_ROOT (tests: a throwaway root; every path is prefixed with it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=0
FORCE_ARCH=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --force-arch) FORCE_ARCH=1 ;;
    -h | --help)
      sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "install.sh: unknown option $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

log() { echo "==> $*"; }
die() {
  echo "install.sh: error: $*" >&2
  exit 1
}
run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    echo "    (dry run) $*"
  else
    "$@"
  fi
}

[ -f "$HERE/bundle.env" ] || die "bundle.env not found next to install.sh: run it from the unpacked bundle"
# shellcheck source=/dev/null
. "$HERE/bundle.env"
: "${THING_NAME:?bundle.env lacks THING_NAME}" "${ARCH:?bundle.env lacks ARCH}" "${PROVISIONING:?bundle.env lacks PROVISIONING}"
NUCLEUS_VERSION="${NUCLEUS_VERSION:-latest}"
BUNDLE_ID="${BUNDLE_ID:-unknown}"

ROOT="${HYBRIDSTREAM_PI_ROOT:-}"
GG_ROOT="$ROOT/greengrass/v2"
WORK="$ROOT/var/lib/hybridstream-install"
STAMP="$GG_ROOT/.hybridstream-installed"
RELEASES="https://d2s8p88vqu9w66.cloudfront.net/releases"
ROOT_CA_URL="https://www.amazontrust.com/repository/AmazonRootCA1.pem"

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root: sudo $0"
fi

# -- 0. already installed? ------------------------------------------------------------------------
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$THING_NAME $BUNDLE_ID" ] && [ -d "$GG_ROOT/config" ]; then
  log "Greengrass is already installed as $THING_NAME from this bundle: nothing to do"
  exit 0
fi
if [ -f "$STAMP" ]; then
  die "Greengrass in $GG_ROOT was installed from another bundle ($(cat "$STAMP")): uninstall it first"
fi

# -- 1. architecture (the nucleus's names; 32-bit userland on a 64-bit kernel is "arm") -----------
machine_arch() {
  local deb
  deb="$(dpkg --print-architecture 2>/dev/null || true)"
  case "$deb" in
    arm64) echo aarch64 ;;
    armhf | armel) echo arm ;;
    amd64) echo amd64 ;;
    *)
      case "$(uname -m)" in
        aarch64 | arm64) echo aarch64 ;;
        armv7l | armv6l) echo arm ;;
        x86_64) echo amd64 ;;
        *) uname -m ;;
      esac
      ;;
  esac
}
HOST_ARCH="$(machine_arch)"
SUPPORTED="64-bit Raspberry Pi OS 12 (bookworm) or 13 (trixie) on a Pi 4 or 5 with 2 GB (4 GB for mode edge): every mode (enrol with --arch aarch64)"
MIN_PYTHON="3.11" # pyproject.toml requires-python; the code the Pi runs uses 3.11 (tests/fleet/test_pi_python.py)
if [ "$HOST_ARCH" = "arm" ] || [ "$ARCH" = "arm" ]; then
  die "32-bit Raspberry Pi OS is not supported: the edge needs Python >= $MIN_PYTHON and tflite-runtime has no 32-bit wheel for it; install 64-bit Raspberry Pi OS (bookworm or trixie) and enrol the Pi with --arch aarch64. Supported:
$SUPPORTED"
fi
if [ "$HOST_ARCH" != "$ARCH" ]; then
  if [ "$FORCE_ARCH" -eq 1 ]; then
    echo "install.sh: warning: bundle is for $ARCH, this machine is $HOST_ARCH (--force-arch)" >&2
  else
    die "this bundle is for $ARCH but this machine is $HOST_ARCH: enrol it again with --arch $HOST_ARCH (or pass --force-arch)"
  fi
fi
log "installing Greengrass for thing $THING_NAME ($ARCH, provisioning: $PROVISIONING)"

# -- 2. a supported OS (docs/deploy.md "Which Pi"), refused before anything is installed -------------
# shellcheck source=/dev/null
os_name() { (. "$ROOT/etc/os-release" 2>/dev/null && echo "${PRETTY_NAME:-unknown}") || echo unknown; }
python_ok() { # the python3 on PATH is >= MIN_PYTHON; prints its version ("none" if there is none)
  local v
  v="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
  echo "$v"
  [ "$v" != none ] && [ "$(printf '%s\n%s\n' "$MIN_PYTHON" "$v" | sort -V | head -n 1)" = "$MIN_PYTHON" ]
}
python_refusal() {
  die "the edge needs Python >= $MIN_PYTHON; this Pi runs $(os_name) with Python $1, so every deployment would fail. Install 64-bit Raspberry Pi OS (bookworm or trixie). Supported:
$SUPPORTED"
}
if ! pyver="$(python_ok)" && [ "$pyver" != none ]; then
  python_refusal "$pyver" # (no python3 at all: apt installs the release's, checked below)
fi
debian_too_old() { # Debian / Raspberry Pi OS older than 12 (bookworm): its python3 is < 3.11
  # shellcheck source=/dev/null
  (. "$ROOT/etc/os-release" 2>/dev/null && case "${ID:-}" in
    debian | raspbian) [ -n "${VERSION_ID:-}" ] && [ "${VERSION_ID%%.*}" -lt 12 ] ;;
    *) false ;;
  esac)
}
if debian_too_old; then # also without a python3 yet: refused before apt installs anything
  python_refusal "below $MIN_PYTHON (Debian < 12)"
fi

# -- 3. apt prerequisites ------------------------------------------------------------------------
# the first of these with an apt candidate (bookworm: 17, trixie: 21); as infra/recipes.py JAVA_PACKAGES
JAVA_PACKAGES=(openjdk-17-jre-headless openjdk-21-jre-headless)
APT_LOCK_TIMEOUT=600 # s: apt-get install waits for another apt's dpkg lock; apt-get update is retried
packages=(ca-certificates curl unzip python3 python3-venv python3-pip)
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1; }
need_java=0
jm="$(java_major || true)"
if [ -z "$jm" ] || [ "$jm" -lt 17 ]; then
  need_java=1 # the nucleus needs 8+, the KafkaBroker component (Kafka 4) 17+
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
java_candidate() {
  local p
  for p in "${JAVA_PACKAGES[@]}"; do
    if LC_ALL=C apt-cache policy "$p" 2>/dev/null | grep -q "Candidate: [0-9]"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
if [ "${#missing[@]}" -gt 0 ] || [ "$need_java" -eq 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  tries=0
  until run apt-get update -q; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || die "apt-get update kept failing for 10 minutes (another apt holds its lock, or no network)"
    log "apt-get update failed (another apt running?): retrying in 10 s"
    sleep 10
  done
  if [ "$need_java" -eq 1 ]; then
    if java_pkg="$(java_candidate)"; then
      missing+=("$java_pkg")
    elif [ "$DRY_RUN" -eq 1 ]; then
      missing+=("<first of ${JAVA_PACKAGES[*]} with an apt candidate>")
    else
      die "no Java >= 17 package in this system's apt sources (tried ${JAVA_PACKAGES[*]}). Supported:
$SUPPORTED"
    fi
  fi
  log "apt: installing ${missing[*]}"
  run apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" install -y --no-install-recommends "${missing[@]}"
else
  log "apt: prerequisites already installed"
fi
if [ "$DRY_RUN" -eq 0 ]; then
  pyver="$(python_ok)" || python_refusal "$pyver"
  jm="$(java_major || true)"
  if [ -z "$jm" ] || [ "$jm" -lt 17 ]; then
    die "Java 17 or newer is needed, found '${jm:-none}' (one of: ${JAVA_PACKAGES[*]})"
  fi
fi

# -- 4. downloads, on the Pi ----------------------------------------------------------------------
fetch() { # url dest: download once, atomically
  local url="$1" dest="$2"
  if [ -s "$dest" ]; then
    log "have $(basename "$dest")"
    return 0
  fi
  log "downloading $url"
  run curl -fsSL --retry 5 --retry-delay 3 -o "$dest.part" "$url"
  run mv "$dest.part" "$dest"
}
run mkdir -p "$WORK" "$GG_ROOT"
run chmod 755 "$ROOT/greengrass"
if [ "$NUCLEUS_VERSION" = "latest" ]; then
  fetch "$RELEASES/greengrass-nucleus-latest.zip" "$WORK/greengrass-nucleus.zip"
else
  fetch "$RELEASES/greengrass-$NUCLEUS_VERSION.zip" "$WORK/greengrass-nucleus.zip"
fi
if [ "$PROVISIONING" = "claim" ]; then
  fetch "$RELEASES/aws-greengrass-FleetProvisioningByClaim/fleetprovisioningbyclaim-latest.jar" \
    "$WORK/aws.greengrass.FleetProvisioningByClaim.jar"
fi
fetch "$ROOT_CA_URL" "$GG_ROOT/AmazonRootCA1.pem"
if [ ! -f "$WORK/installer/lib/Greengrass.jar" ]; then
  run rm -rf "$WORK/installer"
  run unzip -q "$WORK/greengrass-nucleus.zip" -d "$WORK/installer"
fi

# -- 5. certificates, config and the standard installer -------------------------------------------
certs="claim-certs"
[ "$PROVISIONING" = "claim" ] || certs="device-certs"
[ -d "$HERE/$certs" ] || die "the bundle has no $certs/ folder"
run mkdir -p "$GG_ROOT/$certs"
run cp "$HERE/$certs/"* "$GG_ROOT/$certs/"
run chmod 700 "$GG_ROOT/$certs"
run chmod 600 "$GG_ROOT/$certs/"*

version="$NUCLEUS_VERSION"
if [ "$DRY_RUN" -eq 0 ]; then
  version="$(java -jar "$WORK/installer/lib/Greengrass.jar" --version | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n 1)"
  [ -n "$version" ] || die "could not read the nucleus version from $WORK/installer/lib/Greengrass.jar"
fi
log "Greengrass nucleus $version"
config="$WORK/config.yaml"
if [ "$DRY_RUN" -eq 0 ]; then
  sed -e "s|__GG_ROOT__|$GG_ROOT|g" -e "s|__NUCLEUS_VERSION__|$version|g" "$HERE/config.yaml" >"$config.tmp"
  mv "$config.tmp" "$config"
fi

installer=(java "-Droot=$GG_ROOT" -Dlog.store=FILE -jar "$WORK/installer/lib/Greengrass.jar"
  --init-config "$config" --component-default-user ggc_user:ggc_group --setup-system-service true)
if [ "$PROVISIONING" = "claim" ]; then
  installer+=(--trusted-plugin "$WORK/aws.greengrass.FleetProvisioningByClaim.jar")
fi
log "running the Greengrass installer (provisions $THING_NAME, starts greengrass.service)"
run "${installer[@]}"
[ "$DRY_RUN" -eq 1 ] || [ -d "$GG_ROOT/config" ] || die "the installer finished but $GG_ROOT/config is missing: see $GG_ROOT/logs"

# -- 6. done: forget the claim key, remember the install -------------------------------------------
if [ "$PROVISIONING" = "claim" ] && [ "$DRY_RUN" -eq 0 ]; then
  rm -f "$GG_ROOT/claim-certs/claim.private.pem.key"
  log "removed the claim private key from this Pi (the device has its own certificate now)"
fi
if [ "$DRY_RUN" -eq 0 ]; then
  echo "$THING_NAME $BUNDLE_ID" >"$STAMP"
fi
log "done: $THING_NAME runs Greengrass; check it with 'hybridstream fleet status' on your workstation"
log "delete the bundle (it holds a private key): rm -rf '$HERE'"
