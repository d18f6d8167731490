#!/usr/bin/env bash
# The loki sink's throughput on the 1 KB events of `auditflow generate`:
# generate -> stdin -> loki, twice a run:
#   - into push_blackhole (benches/src/bin/push_blackhole.rs), a push endpoint
#     that reads each request and answers 204: the sink's own cost (labels,
#     protobuf, snappy, HTTP);
#   - into VictoriaLogs, the Loki-protocol server of the tests, on the same
#     machine (started with scripts/services.sh, stopped again if this started it).
#
#   benches/loki.sh [EVENTS] [RUNS]     (defaults 500,000 events, 3 runs)
#
# Each pipeline is timed from start to exit (every event acknowledged); CPU per
# event from /proc (auditflow's, and the server's over the same interval).
# AUDITFLOW_BIN=PATH measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-500000}"
runs="${2:-3}"
work="$(mktemp -d)"
started_server=0
blackhole_pid=""
cleanup() {
  [ -n "$blackhole_pid" ] && kill "$blackhole_pid" 2>/dev/null || true
  rm -rf "$work"
  if [ "$started_server" = 1 ]; then scripts/services.sh stop loki || true; fi
}
trap cleanup EXIT

bin="${AUDITFLOW_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/auditflow
fi
cargo build --release --quiet -p auditflow-benches --bin push_blackhole
if ! scripts/services.sh status loki >/dev/null 2>&1; then
  scripts/services.sh start loki
  started_server=1
fi
server_pid=$(cat target/services/loki/loki.pid)
blackhole=127.0.0.1:$((20000 + RANDOM % 20000))
target/release/push_blackhole "$blackhole" >"$work/blackhole.out" &
blackhole_pid=$!
ticks=$(getconf CLK_TCK)
"$bin" generate --count "$events" --seed 42 > "$work/audit.log"

cpu_seconds() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

# run NAME ENDPOINT PATH SERVER_PID -> one line of figures
run() {
  local name="$1" endpoint="$2" path="$3" other="$4"
  cat > "$work/pipeline.toml" <<TOML
data_dir = "$work/data-$name-$RANDOM"
[sources.in]
type = "stdin"
[sinks.loki]
type = "loki"
inputs = ["in"]
endpoint = "http://$endpoint"
path = "$path"
cluster = "bench-$RANDOM"
TOML
  local other_before start end cpu=0 now
  other_before=$(cpu_seconds "$other")
  start=$(date +%s.%N)
  AUDITFLOW_LOG=warn "$bin" run --once --config "$work/pipeline.toml" < "$work/audit.log" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    now=$(cpu_seconds "$pid" 2>/dev/null || true)
    [ -n "$now" ] && cpu=$now
    sleep 0.1
  done
  wait "$pid"
  end=$(date +%s.%N)
  awk -v n="$events" -v s="$start" -v e="$end" -v c="$cpu" -v o0="$other_before" -v o1="$(cpu_seconds "$other")" -v name="$name" \
    'BEGIN { printf "%-22s %12.0f %16.2f %14.2f\n", name, n / (e - s), c * 1e6 / n, (o1 - o0) * 1e6 / n }'
}

echo "events: $events; machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
printf "%-22s %12s %16s %14s\n" pipeline events/s "auditflow µs/ev" "server µs/ev"
for _ in $(seq 1 "$runs"); do
  run "stdin -> blackhole" "$blackhole" /loki/api/v1/push "$blackhole_pid"
  run "stdin -> victorialogs" 127.0.0.1:9428 "/insert/loki/api/v1/push?disable_message_parsing=1" "$server_pid"
done
