#!/usr/bin/env bash
# End-to-end cost of the audit_policy and redact transforms:
# `auditflow run --once` from stdin, with and without audit_policy
# (examples/policy.yaml) and redact (no options) before the sink, on the 1 KB
# events of `generate`; once into a file sink (what a pipeline does) and once
# into a blackhole sink (the transforms' cost alone: the policy drops half of
# the events, so the file sink has half the writing to do with them).
#
#   benches/policy_e2e.sh [EVENTS] [ROUNDS]      (default 500,000 events, 3 rounds)
#
# Every pipeline runs once unmeasured (warm-up: page cache and memory), then
# the pipelines run in turns, ROUNDS times each; the fastest run of each is
# kept (other work on a shared machine only ever adds time). AUDITFLOW_BIN=PATH
# measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-500000}"
rounds="${2:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

bin="${AUDITFLOW_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/auditflow
fi
"$bin" generate --count "$events" --seed 42 > "$work/input.ndjson"
policy="$(pwd)/examples/policy.yaml"

sink() { # SINK_TYPE INPUT
  if [ "$1" = file ]; then
    printf '[sinks.out]\ntype = "file"\ninputs = ["%s"]\npath = "%s/out.ndjson"\n' "$2" "$work"
  else
    printf '[sinks.out]\ntype = "blackhole"\ninputs = ["%s"]\n' "$2"
  fi
}

for out in file blackhole; do
  printf 'data_dir = "%s/data"\n[sources.in]\ntype = "stdin"\n' "$work" > "$work/pass_$out.toml"
  sink "$out" in >> "$work/pass_$out.toml"
  cat > "$work/policy_$out.toml" <<TOML
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
TOML
  sink "$out" redact >> "$work/policy_$out.toml"
done

seconds() {
  rm -f "$work/out.ndjson"
  local start end
  start=$(date +%s.%N)
  AUDITFLOW_LOG=warn "$bin" run --once --config "$work/$1.toml" < "$work/input.ndjson"
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

pipelines=(pass_file policy_file pass_blackhole policy_blackhole)
declare -A best
for pipeline in "${pipelines[@]}"; do
  seconds "$pipeline" > /dev/null
  best[$pipeline]=999999
done
for _ in $(seq "$rounds"); do
  for pipeline in "${pipelines[@]}"; do
    t=$(seconds "$pipeline")
    best[$pipeline]=$(awk -v a="$t" -v b="${best[$pipeline]}" 'BEGIN{print (a<b)?a:b}')
  done
done
seconds policy_file > /dev/null
kept=$(wc -l < "$work/out.ndjson")
echo "input: $events events, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); the policy keeps $kept"
for out in file blackhole; do
  awk -v n="$events" -v p="${best[pass_$out]}" -v q="${best[policy_$out]}" -v out="$out" 'BEGIN {
    printf "stdin -> %-9s                    %6.2f s  %9.0f events/s\n", out, p, n / p
    printf "stdin -> policy -> redact -> %-9s%6.2f s  %9.0f events/s\n", out, q, n / q
    printf "time with the transforms, into %s: %+.1f%%\n", out, (q / p - 1) * 100
  }'
done
