#!/usr/bin/env bash
# End-to-end cost of the audit_policy and redact transforms:
# `auditflow run --once` from stdin, with and without audit_policy
# (examples/policy.yaml) and redact (no options) before the sink, on the 1 KB
# events of `generate`; once into a file sink (what a pipeline does) and once
# into a blackhole sink (the transforms' cost alone: the policy drops half of
# the events, so the file sink has half the writing to do with them); and into
# a blackhole once more with the file source reading the same events.
#
#   benches/policy_e2e.sh [EVENTS] [ROUNDS]      (default 500,000 events, 3 rounds)
#
# Every pipeline runs once unmeasured (warm-up: page cache and memory), then
# the pipelines run in turns, ROUNDS times each; the fastest run of each is
# kept (other work on a shared machine only ever adds time), and the least CPU
# time (user + system) of a run beside it.
#
# AUDITFLOW_BIN=PATH measures another build. AUDITFLOW_BIN_BEFORE=PATH measures
# that build too, each of its runs right after the same run of the first, so
# that both see the same machine (its speed changes with the host's load).
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
declare -A builds=([this]="$bin")
names=(this)
if [ -n "${AUDITFLOW_BIN_BEFORE:-}" ]; then
  builds[before]="$AUDITFLOW_BIN_BEFORE"
  names+=(before)
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

# The same two pipelines into a blackhole with the file source reading the
# input (how a sidecar reads audit.log); its checkpoints are removed before each run.
for pipeline in pass_blackhole policy_blackhole; do
  sed -e "s|^data_dir = .*|data_dir = \"$work/file_data\"|" \
      -e 's|^type = "stdin"|type = "file"\ninclude = ["'"$work"'/input.ndjson"]|' \
      "$work/$pipeline.toml" > "$work/file_$pipeline.toml"
done

# Runs a pipeline once with a build; prints its wall-clock seconds and its CPU seconds (user + system).
measure() { # BUILD PIPELINE
  rm -rf "$work/out.ndjson" "$work/file_data"
  local TIMEFORMAT='%R %U %S' times
  times=$( { time AUDITFLOW_LOG=warn "${builds[$1]}" run --once --config "$work/$2.toml" < "$work/input.ndjson" > /dev/null; } 2>&1 )
  awk '{ printf "%s %.2f", $1, $2 + $3 }' <<< "$times"
}

lesser() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }

pipelines=(pass_file policy_file pass_blackhole policy_blackhole file_pass_blackhole file_policy_blackhole)
declare -A wall cpu
for pipeline in "${pipelines[@]}"; do
  for name in "${names[@]}"; do
    measure "$name" "$pipeline" > /dev/null
    wall[$name/$pipeline]=999999
    cpu[$name/$pipeline]=999999
  done
done
for _ in $(seq "$rounds"); do
  for pipeline in "${pipelines[@]}"; do
    for name in "${names[@]}"; do
      read -r w c <<< "$(measure "$name" "$pipeline")"
      wall[$name/$pipeline]=$(lesser "$w" "${wall[$name/$pipeline]}")
      cpu[$name/$pipeline]=$(lesser "$c" "${cpu[$name/$pipeline]}")
    done
  done
done
measure this policy_file > /dev/null
kept=$(wc -l < "$work/out.ndjson")
echo "input: $events events, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); the policy keeps $kept"
echo "fastest of $rounds runs (wall clock), and the least CPU time (user + system) of a run"
for name in "${names[@]}"; do
  [ "${#names[@]}" -gt 1 ] && echo "$name build: ${builds[$name]}"
  for case in stdin:file stdin:blackhole file:blackhole; do
    source=${case%%:*} out=${case#*:} prefix=""
    [ "$source" = file ] && prefix=file_
    awk -v n="$events" -v p="${wall[$name/${prefix}pass_$out]}" -v q="${wall[$name/${prefix}policy_$out]}" \
        -v pc="${cpu[$name/${prefix}pass_$out]}" -v qc="${cpu[$name/${prefix}policy_$out]}" \
        -v out="$out" -v source="$source" 'BEGIN {
      printf "%-5s -> %-9s                    %6.2f s  %9.0f events/s  CPU %6.2f s\n", source, out, p, n / p, pc
      printf "%-5s -> policy -> redact -> %-9s%6.2f s  %9.0f events/s  CPU %6.2f s\n", source, out, q, n / q, qc
      printf "with the transforms, %s into %s: time %+.1f%%, CPU %+.1f%%\n", source, out, (q / p - 1) * 100, (qc / pc - 1) * 100
    }'
  done
done
