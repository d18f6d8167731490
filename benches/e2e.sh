#!/usr/bin/env bash
# End-to-end throughput: `auditflow generate` -> `auditflow run --once` (stdin)
# -> file sink and -> blackhole sink, on the 1 KB events of `generate`.
#
#   benches/e2e.sh [EVENTS] [RUNS]      (defaults 1,000,000 events, 3 runs)
#
# The input is generated once into a file first, so the generator's own speed
# does not count. Each pipeline runs once unmeasured (warm-up: the page cache
# pages the file sink writes into, and the process's memory, are touched once;
# on a virtual machine whose host backs freshly used memory lazily the first
# write of a gigabyte costs several times the next ones), then RUNS times;
# every run prints its wall time and CPU time (user + system), then the best
# and the median. The file sink's output is checked byte for byte against the
# input. AUDITFLOW_BIN=PATH measures another build of auditflow (to compare two).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
runs="${2:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

bin="${AUDITFLOW_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/auditflow
fi
"$bin" generate --count "$events" --seed 42 > "$work/input.ndjson"
bytes=$(stat -c %s "$work/input.ndjson")

run_once() { # CONFIG -> "wall cpu" seconds
  rm -f "$work/out.ndjson"
  local times="$work/times"
  AUDITFLOW_LOG=warn /usr/bin/time -o "$times" -f "%e %U %S" \
    "$bin" run --once --config "$1" < "$work/input.ndjson"
  awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$times"
}

measure() {
  local name="$1" sink="$2"
  cat > "$work/$name.toml" <<TOML
data_dir = "$work/data"
[sources.in]
type = "stdin"
$sink
TOML
  run_once "$work/$name.toml" > /dev/null
  local walls=()
  for run in $(seq "$runs"); do
    read -r wall cpu < <(run_once "$work/$name.toml")
    walls+=("$wall")
    awk -v n="$events" -v b="$bytes" -v w="$wall" -v c="$cpu" -v name="$name" -v run="$run" \
      'BEGIN { printf "%-20s run %d: %6.2f s, %9.0f events/s, %6.1f MB/s, CPU %5.2f s (%.2f us an event)\n", name, run, w, n / w, b / w / 1e6, c, c / n * 1e6 }'
  done
  printf '%s\n' "${walls[@]}" | sort -n | awk -v n="$events" -v name="$name" \
    '{ w[NR] = $1 } END { printf "%-20s best %.2f s (%.0f events/s), median %.2f s (%.0f events/s)\n", name, w[1], n / w[1], w[int((NR + 1) / 2)], n / w[int((NR + 1) / 2)] }'
}

echo "input: $events events, $bytes bytes ($(awk -v b="$bytes" -v n="$events" 'BEGIN{printf "%.0f", b/n}') bytes/event), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
measure stdin_to_blackhole '[sinks.out]
type = "blackhole"
inputs = ["in"]'
measure stdin_to_file "[sinks.out]
type = \"file\"
inputs = [\"in\"]
path = \"$work/out.ndjson\""
cmp -s "$work/input.ndjson" "$work/out.ndjson" && echo "stdin_to_file output is byte-identical to the input"
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
