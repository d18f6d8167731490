#!/usr/bin/env bash
# The file source: throughput and lag, on the 1 KB events of `auditflow generate`.
#
#   benches/file.sh [EVENTS] [RATE] [SECONDS]
#
# 1. throughput: EVENTS events (default 2,000,000) already in audit.log,
#    `auditflow run --once` with file -> blackhole; prints events/s and MB/s
#    (and stdin -> blackhole on the same input, for comparison);
# 2. lag: a writer appends to audit.log at RATE events/s (default 50,000) for
#    SECONDS seconds (default 20) while the pipeline runs; the lag metric
#    (`auditflow_file_lag_bytes`: size minus committed offset) is sampled
#    every second and summarised.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-2000000}"
rate="${2:-50000}"
seconds="${3:-20}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet
bin=target/release/auditflow
mkdir -p "$work/logs"
"$bin" generate --count "$events" --seed 42 > "$work/logs/audit.log"
bytes=$(stat -c %s "$work/logs/audit.log")
echo "input: $events events, $bytes bytes ($(awk -v b="$bytes" -v n="$events" 'BEGIN{printf "%.0f", b/n}') bytes/event), $(nproc) cores"

elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
report() {
  awk -v n="$events" -v b="$bytes" -v t="$2" -v name="$1" \
    'BEGIN { printf "%-22s %9d events in %6.2f s: %9.0f events/s, %6.1f MB/s\n", name, n, t, n / t, b / t / 1e6 }'
}

# 1. Throughput.
cat > "$work/file.toml" <<TOML
data_dir = "$work/data"
[sources.in]
type = "file"
include = ["$work/logs/audit*.log"]
[sinks.out]
type = "blackhole"
inputs = ["in"]
TOML
start=$(date +%s.%N)
AUDITFLOW_LOG=warn "$bin" run --once --config "$work/file.toml"
report file_to_blackhole "$(elapsed "$start" "$(date +%s.%N)")"

cat > "$work/stdin.toml" <<TOML
data_dir = "$work/data-stdin"
[sources.in]
type = "stdin"
[sinks.out]
type = "blackhole"
inputs = ["in"]
TOML
start=$(date +%s.%N)
AUDITFLOW_LOG=warn "$bin" run --once --config "$work/stdin.toml" < "$work/logs/audit.log"
report stdin_to_blackhole "$(elapsed "$start" "$(date +%s.%N)")"

# 2. Lag while a writer appends at a steady rate.
rm -rf "$work/data" "$work/logs"
mkdir -p "$work/logs"
port=$(( 20000 + RANDOM % 20000 ))
cat > "$work/lag.toml" <<TOML
data_dir = "$work/data"
[api]
address = "127.0.0.1:$port"
[sources.in]
type = "file"
include = ["$work/logs/audit*.log"]
[sinks.out]
type = "blackhole"
inputs = ["in"]
TOML
AUDITFLOW_LOG=warn "$bin" run --config "$work/lag.toml" &
pids+=($!)
pipeline=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done
if ! curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
  echo "the pipeline's API on port $port did not answer; run the bench again" >&2
  exit 1
fi
"$bin" generate --count $(( rate * seconds )) --rate "$rate" --seed 7 >> "$work/logs/audit.log" &
pids+=($!)
writer=$!
lag_of() {
  local metrics
  if ! metrics=$(curl -sf "http://127.0.0.1:$port/metrics"); then
    echo "cannot read /metrics on port $port" >&2
    exit 1
  fi
  # No series yet means audit.log is not open yet: nothing is read, the lag is the file.
  awk -v size="$(stat -c %s "$work/logs/audit.log" 2>/dev/null || echo 0)" \
    '/^auditflow_file_lag_bytes\{/ && /audit.log"/ { print $NF; found=1 } END { if (!found) print size }' <<<"$metrics"
}
samples=()
for _ in $(seq 1 "$seconds"); do
  sleep 1
  samples+=("$(lag_of)")
done
wait "$writer" || true
sleep 1
final=$(lag_of)
written=$(stat -c %s "$work/logs/audit.log")
kill -TERM "$pipeline"
wait "$pipeline" || true
printf '%s\n' "${samples[@]}" | awk -v rate="$rate" -v s="$seconds" -v f="$final" -v w="$written" '
  { v = $1; sum += v; if (NR == 1 || v < min) min = v; if (v > max) max = v }
  END {
    printf "lag while writing %d events/s for %d s (%d bytes): min %.0f, mean %.0f, max %.0f bytes; %.0f bytes after the writer stopped\n", rate, s, w, min, sum / NR, max, f
  }'
printf 'lag samples (bytes, one a second): %s\n' "${samples[*]}"
