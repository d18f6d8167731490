#!/usr/bin/env bash
# Runs every check and test of auditflow, installing what they need first.
# This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

log "toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs) and run this again" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
cargo --version

log "format (cargo fmt --check)"
cargo fmt --all -- --check

log "lint (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "servers (scripts/services.sh)"
# Start the real servers the integration tests talk to; stop at exit what this run started.
started_servers=()
stop_started_servers() {
  for server in "${started_servers[@]}"; do scripts/services.sh stop "$server" || true; done
}
trap stop_started_servers EXIT
for server in alertmanager kafka opensearch loki; do
  if ! scripts/services.sh status "$server" >/dev/null 2>&1; then
    scripts/services.sh start "$server"
    started_servers+=("$server")
  fi
done
export AUDITFLOW_TEST_ALERTMANAGER="${AUDITFLOW_TEST_ALERTMANAGER:-http://127.0.0.1:9093}"
export AUDITFLOW_TEST_KAFKA="${AUDITFLOW_TEST_KAFKA:-127.0.0.1:9092}"
export AUDITFLOW_TEST_LOKI="${AUDITFLOW_TEST_LOKI:-http://127.0.0.1:9428}"
export AUDITFLOW_TEST_OPENSEARCH="${AUDITFLOW_TEST_OPENSEARCH:-http://127.0.0.1:9200}"
export AUDITFLOW_TEST_KAFKA_TLS="${AUDITFLOW_TEST_KAFKA_TLS:-${AUDITFLOW_SERVICES_DIR:-$PWD/target/services}/kafka/tls}"

log "tests (cargo test)"
cargo test --all --locked -- --test-threads 2
