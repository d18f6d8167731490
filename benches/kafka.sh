#!/usr/bin/env bash
# Kafka throughput with the broker on the same machine: the sidecar's pipeline
# (file source -> kafka sink) and the aggregator's (kafka source -> blackhole),
# on the 1 KB events of `auditflow generate`.
#
#   benches/kafka.sh [EVENTS] [RUNS]     (defaults 1,000,000 events, 3 runs)
#
# Starts Kafka with scripts/services.sh (and stops it again if it started it).
# Each run writes EVENTS events to a new 4-partition topic with `run --once`
# (timed from start to exit: the whole file delivered and acknowledged), then
# reads them back with a kafka source into a blackhole sink, timed from the
# first event to the last through /metrics (the group join before the first
# event is left out). Every run prints events/s, auditflow's CPU time per event
# and the broker's (from /proc), and auditflow's peak RSS (VmHWM): the
# consumer's is its memory while it works through a backlog of EVENTS events.
# AUDITFLOW_BIN=PATH measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
runs="${2:-3}"
work="$(mktemp -d)"
started_kafka=0
cleanup() {
  rm -rf "$work"
  if [ "$started_kafka" = 1 ]; then scripts/services.sh stop kafka || true; fi
}
trap cleanup EXIT

bin="${AUDITFLOW_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/auditflow
fi
if ! scripts/services.sh status kafka >/dev/null 2>&1; then
  scripts/services.sh start kafka
  started_kafka=1
fi
bootstrap=127.0.0.1:9092
lib=target/services/kafka/lib
broker_pid=$(cat target/services/kafka/kafka.pid)
ticks=$(getconf CLK_TCK)
"$bin" generate --count "$events" --seed 42 > "$work/audit.log"

cpu_seconds() { # PID -> user+system seconds so far
  awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"
}
peak_rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
sent() { # PORT COMPONENT -> events sent on its default output
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v id="component_id=\"$2\"" 'index($0, "auditflow_component_sent_events_total{") == 1 && index($0, id) && index($0, "output=\"_default\"") { print $NF }' |
    head -n 1
}

echo "events: $events; machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); broker: Kafka 4.1.0 on the same machine"
printf "%-4s %-22s %12s %14s %14s %10s\n" run pipeline events/s "auditflow µs/ev" "broker µs/ev" "peak RSS"
for run in $(seq 1 "$runs"); do
  topic="bench-$(date +%s%N)"
  java -cp "$lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --create --topic "$topic" --partitions 4 --replication-factor 1 >/dev/null 2>&1
  port=$((20000 + RANDOM % 20000))
  cat > "$work/producer.toml" <<TOML
data_dir = "$work/producer-$run"
[api]
address = "127.0.0.1:$port"
[sources.apiserver]
type = "file"
include = ["$work/audit.log"]
[sinks.kafka]
type = "kafka"
inputs = ["apiserver"]
bootstrap_servers = "$bootstrap"
topic = "$topic"
TOML
  broker_before=$(cpu_seconds "$broker_pid")
  start=$(date +%s.%N)
  AUDITFLOW_LOG=warn "$bin" run --once --config "$work/producer.toml" &
  pid=$!
  rss=0 cpu=0
  while kill -0 "$pid" 2>/dev/null; do
    # Read while the process runs (an exited one, not yet reaped, has no VmHWM).
    now_cpu=$(cpu_seconds "$pid" 2>/dev/null || true)
    now_rss=$(peak_rss_mb "$pid" 2>/dev/null || true)
    [ -n "$now_cpu" ] && cpu=$now_cpu
    [ -n "$now_rss" ] && rss=$now_rss
    sleep 0.1
  done
  wait "$pid"
  end=$(date +%s.%N)
  broker_after=$(cpu_seconds "$broker_pid")
  awk -v n="$events" -v s="$start" -v e="$end" -v c="$cpu" -v b0="$broker_before" -v b1="$broker_after" -v r="$run" -v m="$rss" \
    'BEGIN { printf "%-4s %-22s %12.0f %14.2f %14.2f %8s MB\n", r, "file -> kafka", n / (e - s), c * 1e6 / n, (b1 - b0) * 1e6 / n, m }'

  port=$((20000 + RANDOM % 20000))
  cat > "$work/consumer.toml" <<TOML
data_dir = "$work/consumer-$run"
[api]
address = "127.0.0.1:$port"
[sources.kafka]
type = "kafka"
bootstrap_servers = "$bootstrap"
topics = ["$topic"]
group_id = "bench-$topic"
[sinks.out]
type = "blackhole"
inputs = ["kafka"]
TOML
  AUDITFLOW_LOG=warn "$bin" run --config "$work/consumer.toml" &
  pid=$!
  first="" first_count=0 count=0
  broker_before=$(cpu_seconds "$broker_pid")
  deadline=$(( $(date +%s) + 600 ))
  while [ "${count%.*}" -lt "$events" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    count=$(sent "$port" kafka || true)
    count=${count:-0}
    if [ -z "$first" ] && [ "${count%.*}" -gt 0 ]; then
      first=$(date +%s.%N) first_count=${count%.*}
      cpu_first=$(cpu_seconds "$pid")
    fi
    sleep 0.05
  done
  last=$(date +%s.%N)
  cpu=$(cpu_seconds "$pid")
  rss=$(peak_rss_mb "$pid")
  broker_after=$(cpu_seconds "$broker_pid")
  kill -TERM "$pid"
  wait "$pid" || true
  awk -v n="$events" -v f="$first_count" -v s="$first" -v e="$last" -v c0="$cpu_first" -v c1="$cpu" -v b0="$broker_before" -v b1="$broker_after" -v r="$run" -v m="$rss" \
    'BEGIN { printf "%-4s %-22s %12.0f %14.2f %14.2f %8s MB\n", r, "kafka -> blackhole", (n - f) / (e - s), (c1 - c0) * 1e6 / (n - f), (b1 - b0) * 1e6 / n, m }'
  java -cp "$lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --delete --topic "$topic" >/dev/null 2>&1 || true
done
