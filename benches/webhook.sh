#!/usr/bin/env bash
# The webhook source: events/s accepted and request latency, over loopback.
#
#   benches/webhook.sh [SECONDS] [CLIENTS] [--gzip]     (default 15 s, 8 clients)
#
# Starts `auditflow run` with a webhook source (plain HTTP on 127.0.0.1) feeding a
# blackhole sink, then runs the load generator (benches/src/bin/webhook_load.rs):
# CLIENTS concurrent clients POST 400-event EventLists of `auditflow generate`
# events (about 1 KB each), one request at a time each. A 200 is only answered
# once the blackhole has acknowledged every event of the request.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
clients="${2:-8}"
gzip="${3:-}"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin auditflow
cargo build --release --quiet -p auditflow-benches --bin webhook_load
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/pipeline.toml" <<TOML
data_dir = "$work/data"
[api]
address = "127.0.0.1:$api"
[sources.hook]
type = "webhook"
address = "127.0.0.1:$port"
[sinks.void]
type = "blackhole"
inputs = ["hook"]
TOML
AUDITFLOW_LOG=warn target/release/auditflow run --config "$work/pipeline.toml" &
pid=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/webhook_load --url "http://127.0.0.1:$port/" --clients "$clients" --seconds "$seconds" $gzip
curl -s "http://127.0.0.1:$api/metrics" | grep -E '^auditflow_webhook_request_duration_seconds\{.*quantile="0.99"' || true
