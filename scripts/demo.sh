#!/usr/bin/env bash
# make demo [QUICK=1] [MODE=edge-cloud|edge|cloud] [SCENARIOS=none,step,malformed,crash] [RATE=40] [ROWS=3000]
# The whole edge-cloud loop on this machine (real local servers), a report in reports/demo-<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m hybridstream.demo "$@"
