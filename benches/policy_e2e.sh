#!/usr/bin/env bash
# End-to-end cost of the audit_policy and redact transforms:
# `auditflow run --once` (stdin -> file) against the same pipeline with
# audit_policy (examples/policy.yaml) and redact (no options) before the file
# sink, on the 1 KB events of `generate`.
#
#   benches/policy_e2e.sh [EVENTS] [ROUNDS]      (default 500,000 events, 3 rounds)
#
# The two pipelines run in turns, ROUNDS times each; the fastest run of each
# is kept (other work on a shared machine only ever adds time).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-500000}"
rounds="${2:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
bin=target/release/auditflow
"$bin" generate --count "$events" --seed 42 > "$work/input.ndjson"
policy="$(pwd)/examples/policy.yaml"

cat > "$work/pass.toml" <<TOML
data_dir = "$work/data"
[sources.in]
type = "stdin"
[sinks.out]
type = "file"
inputs = ["in"]
path = "$work/out.ndjson"
TOML
cat > "$work/policy.toml" <<TOML
data_dir = "$work/data"
[sources.in]
type = "stdin"
[transforms.policy]
type = "audit_policy"
inputs = ["in"]
policy_file = "$policy"
[transforms.redact]
type = "redact"
inputs = ["policy"]
[sinks.out]
type = "file"
inputs = ["redact"]
path = "$work/out.ndjson"
TOML

seconds() {
  rm -f "$work/out.ndjson"
  local start end
  start=$(date +%s.%N)
  AUDITFLOW_LOG=warn "$bin" run --once --config "$work/$1.toml" < "$work/input.ndjson"
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

best_pass=999999
best_policy=999999
for _ in $(seq "$rounds"); do
  t=$(seconds pass); best_pass=$(awk -v a="$t" -v b="$best_pass" 'BEGIN{print (a<b)?a:b}')
  t=$(seconds policy); best_policy=$(awk -v a="$t" -v b="$best_policy" 'BEGIN{print (a<b)?a:b}')
done
kept=$(wc -l < "$work/out.ndjson")
echo "input: $events events, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v n="$events" -v p="$best_pass" -v q="$best_policy" -v k="$kept" 'BEGIN {
  printf "stdin -> file:                   %6.2f s  %9.0f events/s\n", p, n / p
  printf "stdin -> policy -> redact -> file: %6.2f s  %9.0f events/s (%d events written)\n", q, n / q, k
  printf "time with the transforms: %+.1f%%\n", (q / p - 1) * 100
}'
