#!/usr/bin/env bash
# Installs everything the project needs: Debian packages, the Python venv, the CDK CLI (npm)
# and the Apache Kafka broker's jars (Maven Central). Idempotent; `make setup` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openssl mosquitto ceph-mon ceph-osd radosgw ceph-common shellcheck)   # shellcheck: the Pi install script (tests/fleet)
command -v cc >/dev/null || APT_PACKAGES+=(gcc libc6-dev)   # builds the online linear model's C kernel (tests use it)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# toolchains: keep the machine's own if present, else Debian's
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
[ "${java_major:-0}" -ge 17 ] || missing+=(openjdk-17-jre-headless)   # Kafka 4 needs Java 17+
command -v mvn >/dev/null || missing+=(maven)                            # fetches the Kafka/ElasticMQ jars
command -v npm >/dev/null || missing+=(nodejs npm)                       # the pinned CDK CLI
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || missing+=(golang-go)  # builds toxiproxy
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || { missing+=(python3.11 python3.11-venv); }
"$PY" -c "import ensurepip" 2>/dev/null || missing+=(python3.11-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> venv: creating .venv with $PY"
  "$PY" -m venv .venv
fi
echo "==> pip: requirements-dev.txt (TensorFlow is large: a first install takes a few minutes)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q --no-deps -e .

echo "==> npm: CDK CLI and the Node.js it runs on (package.json)"
npm install --no-audit --no-fund --loglevel=error
# The CDK CLI and jsii (aws-cdk-lib under Python) support Node 22 and 24; Debian 12's and this machine's
# may be 20 (end of life). package.json pins a Node 24 from the npm registry (node-linux-<arch>, the
# official binary) into node_modules/.bin/node; the Makefile and scripts/synth.sh run everything on it.
node_major=$(node_modules/.bin/node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
case "$node_major" in
  22 | 24) echo "==> node: node_modules/.bin/node $(node_modules/.bin/node --version)" ;;
  *) echo "setup: node_modules/.bin/node is missing or not Node 22/24 ('${node_major:-none}'): no node-linux-$(uname -m) package?" >&2; exit 1 ;;
esac

echo "==> maven: Apache Kafka broker jars"
.venv/bin/python -m hybridstream local kafka fetch
echo "==> maven: ElasticMQ jars (local SQS)"; .venv/bin/python -m hybridstream local sqs fetch
echo "==> go: toxiproxy v2.12.0 (network fault proxy for make chaos; built once into .cache/)"
.venv/bin/python -m hybridstream local toxiproxy fetch
touch .venv/.setup-done
echo "==> setup done"
