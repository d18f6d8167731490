#!/usr/bin/env bash
# End-to-end throughput: `auditflow generate` -> `auditflow run --once` (stdin)
# -> file sink and -> blackhole sink, on the 1 KB events of `generate`.
#
#   benches/e2e.sh [EVENTS]      (default 2,000,000)
#
# Prints events/s and MB/s for each pipeline; the input is generated once into
# a file first, so the generator's own speed does not count.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-2000000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
bin=target/release/auditflow
"$bin" generate --count "$events" --seed 42 > "$work/input.ndjson"
bytes=$(stat -c %s "$work/input.ndjson")

measure() {
  local name="$1" sink="$2"
  cat > "$work/$name.toml" <<TOML
data_dir = "$work/data"
[sources.in]
type = "stdin"
$sink
TOML
  rm -f "$work/out.ndjson"
  local start end
  start=$(date +%s.%N)
  AUDITFLOW_LOG=warn "$bin" run --once --config "$work/$name.toml" < "$work/input.ndjson"
  end=$(date +%s.%N)
  awk -v n="$events" -v b="$bytes" -v s="$start" -v e="$end" -v name="$name" \
    'BEGIN { t = e - s; printf "%-22s %9d events in %6.2f s: %9.0f events/s, %6.1f MB/s\n", name, n, t, n / t, b / t / 1e6 }'
}

echo "input: $events events, $bytes bytes ($(awk -v b="$bytes" -v n="$events" 'BEGIN{printf "%.0f", b/n}') bytes/event), $(nproc) cores"
measure stdin_to_blackhole '[sinks.out]
type = "blackhole"
inputs = ["in"]'
measure stdin_to_file "[sinks.out]
type = \"file\"
inputs = [\"in\"]
path = \"$work/out.ndjson\""
cmp -s "$work/input.ndjson" "$work/out.ndjson" && echo "stdin_to_file output is byte-identical to the input"
