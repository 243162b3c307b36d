#!/usr/bin/env bash
# `make synth`: CDK synth fully offline into cdk.out/ (app.py applies cdk-nag's AwsSolutions
# checks: any unacknowledged finding fails the synth), then cfn-lint on every template.
# Extra arguments go to `cdk synth`, e.g. `bash scripts/synth.sh -c mode=edge`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CDK_DISABLE_CLI_TELEMETRY=1
# the project's Node (package.json: Node 24) for the CLI and for jsii in app.py, not the machine's
# (HYBRIDSTREAM_NODE: another Node 22/24 binary)
NODE="${HYBRIDSTREAM_NODE:-$PWD/node_modules/.bin/node}"
[ -x "$NODE" ] || { echo "synth: $NODE missing: run make setup" >&2; exit 1; }
case "$("$NODE" --version)" in
  v22.* | v24.*) ;;
  *) echo "synth: $NODE is $("$NODE" --version): the CDK CLI and jsii support Node 22 and 24" >&2; exit 1 ;;
esac
export JSII_NODE="$NODE"
export PATH="$PWD/node_modules/.bin:$PATH"

# Any AWS_* variable (even a fake key) makes the CDK CLI call STS: synthesize without them.
mapfile -t aws_vars < <(env | grep -o '^AWS_[A-Za-z0-9_]*' || true)
for var in "${aws_vars[@]}"; do unset "$var"; done

OUT=${CDK_OUTDIR:-cdk.out}  # tests synthesize into a temp folder
rm -rf "$OUT"
# The canary gate needs to know the fleet's release: check the promoted state unless the
# caller pins one (-c fleet_component_versions=...) or says promote=... itself.
gate=(-c promote=true)
case " $* " in *promote=* | *fleet_component_versions=*) gate=() ;; esac
"$NODE" node_modules/aws-cdk/bin/cdk synth --no-lookups --quiet --output "$OUT" "${gate[@]}" "$@"

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
