#!/usr/bin/env bash
# `make synth`: CDK synth fully offline into cdk.out/ (app.py applies cdk-nag's AwsSolutions
# checks: any unacknowledged finding fails the synth), then cfn-lint on every template.
# Extra arguments go to `cdk synth`, e.g. `bash scripts/synth.sh -c mode=edge`.
set -euo pipefail
cd "$(dirname "$0")/.."
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export CDK_DISABLE_CLI_TELEMETRY=1

# Any AWS_* variable (even a fake key) makes the CDK CLI call STS: synthesize without them.
mapfile -t aws_vars < <(env | grep -o '^AWS_[A-Za-z0-9_]*' || true)
for var in "${aws_vars[@]}"; do unset "$var"; done

OUT=${CDK_OUTDIR:-cdk.out}  # tests synthesize into a temp folder
rm -rf "$OUT"
# The canary gate needs to know the fleet's release: check the promoted state unless the
# caller pins one (-c fleet_component_versions=...) or says promote=... itself.
gate=(-c promote=true)
case " $* " in *promote=* | *fleet_component_versions=*) gate=() ;; esac
node_modules/.bin/cdk synth --no-lookups --quiet --output "$OUT" "${gate[@]}" "$@"

shopt -s nullglob
templates=("$OUT"/*.template.json)
if [ ${#templates[@]} -eq 0 ]; then
  echo "synth: no templates in $OUT/" >&2
  exit 1
fi
# W3005 (redundant DependsOn) comes from CDK's own generated dependencies, not from this app.
rc=0
.venv/bin/cfn-lint --ignore-checks W3005 -- "${templates[@]}" || rc=$?
if (( rc & 3 )); then  # bit 1: fatal, bit 2: errors (4 = warnings, 8 = informational)
  echo "cfn-lint: errors in ${templates[*]}" >&2
  exit 1
fi
echo "synth: ${#templates[@]} template(s) in $OUT/, cdk-nag clean, cfn-lint 0 errors (exit bits $rc)"
