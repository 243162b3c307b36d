#!/usr/bin/env bash
# Build the `cloud` mode inference Lambda's layer: numpy + ai-edge-litert for Lambda's
# x86_64 Python 3.13 runtime (ai-edge-litert has no Python 3.14 wheels yet). Needs PyPI.
# Usage: bash scripts/build_inference_layer.sh [out-dir]   (default build/lambda-layers/inference,
# the default of the `inference_layer_dir` context value)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/lambda-layers/inference}
rm -rf "$OUT"
mkdir -p "$OUT/python"
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --only-binary=:all: --implementation cp --python-version 3.13 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
  --target "$OUT/python" -r lambdas/cloud_inference/requirements.txt
find "$OUT/python" -name "__pycache__" -type d -prune -exec rm -rf {} +
echo "inference layer: $(du -sh "$OUT" | cut -f1) in $OUT"
