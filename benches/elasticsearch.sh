#!/usr/bin/env bash
# Elasticsearch/OpenSearch throughput with the node on the same machine:
# generate -> stdin -> elasticsearch sink, on the 1 KB events of `auditflow generate`.
#
#   benches/elasticsearch.sh [EVENTS] [RUNS]    (defaults 300,000 events, 3 runs)
#
# Starts OpenSearch with scripts/services.sh (and stops it again if it started
# it). Each run ships EVENTS events into indices of its own with `run --once`
# (timed from start to exit: every event stored and acknowledged), then prints
# events/s, auditflow's CPU time per event and the node's (from /proc), and
# auditflow's peak RSS. After the last run it force-merges that run's index
# and prints the bytes each event takes in it (primary store size / events),
# and what that makes a day at 1,000, 10,000 and 100,000 events/s.
# AUDITFLOW_BIN=PATH measures another build; SINK_OPTIONS adds sink options
# (e.g. 'compression = "gzip"').
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-300000}"
runs="${2:-3}"
work="$(mktemp -d)"
endpoint=http://127.0.0.1:9200
started_node=0
cleanup() {
  rm -rf "$work"
  curl -fsS -o /dev/null -X DELETE "$endpoint/bench-*" 2>/dev/null || true
  curl -fsS -o /dev/null -X DELETE "$endpoint/_index_template/bench-*" 2>/dev/null || true
  if [ "$started_node" = 1 ]; then scripts/services.sh stop opensearch || true; fi
}
trap cleanup EXIT

bin="${AUDITFLOW_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/auditflow
fi
if ! scripts/services.sh status opensearch >/dev/null 2>&1; then
  scripts/services.sh start opensearch
  started_node=1
fi
node_pid=$(cat target/services/opensearch/opensearch.pid)
ticks=$(getconf CLK_TCK)
"$bin" generate --count "$events" --seed 42 > "$work/audit.log"

cpu_seconds() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

echo "events: $events; machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); node: OpenSearch $(curl -fsS "$endpoint" | awk -F'"' '/"number"/ { print $4 }') on the same machine, 512 MB heap"
printf "%-4s %12s %16s %14s %8s %10s\n" run events/s "auditflow µs/ev" "node µs/ev" "ratio" "peak RSS"
for run in $(seq 1 "$runs"); do
  prefix="bench-$(date +%s%N)"
  cat > "$work/pipeline.toml" <<TOML
data_dir = "$work/data-$run"
[sources.in]
type = "stdin"
[sinks.search]
type = "elasticsearch"
inputs = ["in"]
endpoints = ["$endpoint"]
index = "$prefix-audit-%Y.%m.%d"
alerts_index = "$prefix-alerts-%Y.%m.%d"
${SINK_OPTIONS:-}
TOML
  node_before=$(cpu_seconds "$node_pid")
  start=$(date +%s.%N)
  AUDITFLOW_LOG=warn "$bin" run --once --config "$work/pipeline.toml" < "$work/audit.log" &
  pid=$!
  rss=0 cpu=0
  while kill -0 "$pid" 2>/dev/null; do
    now_cpu=$(cpu_seconds "$pid" 2>/dev/null || true)
    now_rss=$(peak_rss_mb "$pid" 2>/dev/null || true)
    [ -n "$now_cpu" ] && cpu=$now_cpu
    [ -n "$now_rss" ] && rss=$now_rss
    sleep 0.1
  done
  wait "$pid"
  end=$(date +%s.%N)
  node_after=$(cpu_seconds "$node_pid")
  awk -v n="$events" -v s="$start" -v e="$end" -v c="$cpu" -v b0="$node_before" -v b1="$node_after" -v r="$run" -v m="$rss" \
    'BEGIN { node = (b1 - b0) * 1e6 / n; own = c * 1e6 / n; printf "%-4s %12.0f %16.2f %14.2f %7.1f%% %7s MB\n", r, n / (e - s), own, node, 100 * own / node, m }'
  last_prefix=$prefix
  [ "$run" = "$runs" ] || curl -fsS -o /dev/null -X DELETE "$endpoint/$prefix-*"
done

curl -fsS -o /dev/null -X POST "$endpoint/$last_prefix-audit-*/_refresh"
curl -fsS -o /dev/null -X POST "$endpoint/$last_prefix-audit-*/_forcemerge?max_num_segments=1"
stats=$(curl -fsS "$endpoint/$last_prefix-audit-*/_stats/docs,store")
docs=$(echo "$stats" | grep -o '"primaries":{"docs":{"count":[0-9]*' | head -1 | grep -o '[0-9]*$')
bytes=$(echo "$stats" | grep -o '"primaries":{"docs":{[^}]*},"store":{"size_in_bytes":[0-9]*' | head -1 | grep -o '[0-9]*$')
input_bytes=$(wc -c < "$work/audit.log")
awk -v d="$docs" -v b="$bytes" -v i="$input_bytes" -v n="$events" 'BEGIN {
  per = b / d
  printf "index: %d events, %.0f bytes each after a force-merge (input: %.0f bytes an event)\n", d, per, i / n
  for (rate = 1000; rate <= 100000; rate *= 10)
    printf "  %6d events/s: %.1f GB a day (primaries; replicas multiply it)\n", rate, per * rate * 86400 / 1e9
}'
