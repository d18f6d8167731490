#!/usr/bin/env bash
# The local_store sink and `auditflow query`, end to end with the release binary.
#
#   benches/store.sh ingest [EVENTS]     ingest rate: a generated file (default
#                                        1,000,000 events) -> stdin -> local_store;
#                                        the same into blackhole for the source's own rate;
#                                        bytes per stored event
#   benches/store.sh build DIR [EVENTS]  builds a store of EVENTS (default 10,000,000)
#                                        events over the 5 days before now in DIR
#                                        (takes minutes; do it once)
#   benches/store.sh query DIR           times indexed queries on the store in DIR
#
# The input is generated first (ingest) or piped from `generate` (build), so the
# generator's own speed does not count in the ingest figure.
set -euo pipefail
cd "$(dirname "$0")/.."
# AUDITFLOW_BIN=PATH measures another build of auditflow (to compare two).
bin="${AUDITFLOW_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$PWD/target/release/auditflow"
fi

seconds_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", e - s }'; }

pipeline() { # DATA_DIR SINK_TYPE -> a stdin pipeline config on stdout
  cat <<TOML
data_dir = "$1"
[sources.in]
type = "stdin"
[sinks.store]
type = "$2"
inputs = ["in"]
TOML
}

store_bytes() { du -sb "$1" | cut -f1; }

ingest() {
  local events="${1:-1000000}" work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  "$bin" generate --count "$events" --seed 42 --events-per-second 50 \
    --start "$(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%SZ)" > "$work/input.ndjson"
  local bytes
  bytes=$(stat -c %s "$work/input.ndjson")
  echo "input: $events events, $bytes bytes ($((bytes / events)) bytes/event), $(nproc) cores"
  for sink in blackhole local_store; do
    pipeline "$work/data-$sink" "$sink" > "$work/$sink.toml"
    local start
    start=$(date +%s.%N)
    AUDITFLOW_LOG=warn "$bin" run --once --config "$work/$sink.toml" < "$work/input.ndjson"
    local took
    took=$(seconds_since "$start")
    awk -v n="$events" -v t="$took" -v name="stdin -> $sink" \
      'BEGIN { printf "%-24s %9d events in %6.2f s: %9.0f events/s\n", name, n, t, n / t }'
  done
  local stored
  stored=$(store_bytes "$work/data-local_store/store")
  echo "store: $stored bytes for $events events: $((stored / events)) bytes/event ($(awk -v b="$bytes" -v s="$stored" 'BEGIN { printf "%.1f", b / s }')x smaller than the input)"
  ls -l "$work/data-local_store/store"
}

build() {
  local dir="$1" events="${2:-10000000}"
  # 5 days of traffic ending now: events / (5 * 86400) a second.
  local rate
  rate=$(awk -v n="$events" 'BEGIN { printf "%.3f", n / 432000 }')
  mkdir -p "$dir"
  pipeline "$dir" local_store > "$dir/build.toml"
  local start
  start=$(date +%s.%N)
  "$bin" generate --count "$events" --seed 7 --events-per-second "$rate" \
      --start "$(date -u -d '-5 days' +%Y-%m-%dT%H:%M:%SZ)" |
    AUDITFLOW_LOG=warn "$bin" run --once --config "$dir/build.toml"
  local took
  took=$(seconds_since "$start")
  local stored
  stored=$(store_bytes "$dir/store")
  echo "built $events events in $took s (generator and store sharing the cores); $stored bytes: $((stored / events)) bytes/event"
  ls -l "$dir/store"
}

time_query() { # DIR ARGS... : the best of 3 runs, and the first (cold-ish) one
  local dir="$1"
  shift
  local runs=()
  for _ in 1 2 3; do
    local start
    start=$(date +%s.%N)
    "$bin" query --data-dir "$dir" --store store "$@" > "$dir/last-query.out"
    runs+=("$(seconds_since "$start")")
  done
  printf '%-70s first %s s, then %s s, %s s (%s lines)\n' "query $*" "${runs[0]}" "${runs[1]}" "${runs[2]}" "$(wc -l < "$dir/last-query.out")"
}

query() {
  local dir="$1"
  echo "store: $(store_bytes "$dir/store") bytes, $("$bin" query --data-dir "$dir" --store store --count) events"
  time_query "$dir" --verb delete --namespace production --since 48h
  time_query "$dir" --verb delete --namespace production --since 48h --count
  time_query "$dir" --user alice@example.com --since 48h --limit 1000
  time_query "$dir" --since 7d --verb delete --group-by user
  time_query "$dir" --code 401 --since 24h --count
  time_query "$dir" --since 1h --limit 100
}

case "${1:-}" in
  ingest) ingest "${2:-1000000}" ;;
  build) build "${2:?directory}" "${3:-10000000}" ;;
  query) query "${2:?directory}" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
