#!/usr/bin/env bash
# Regenerates the bundled sample (examples/audit/): one day of a small cluster's
# audit log, 2026-11-24 UTC, with the six incidents of `generate --incidents`,
# rotated the way the kube-apiserver's lumberjack rotates with
# --audit-log-maxsize=1 --audit-log-compress: 1 MB files, the backups named
# after the time they were rotated (audit-2026-11-24T10-15-30.123.log), the
# older backups gzip-compressed, the newest backup not compressed yet, and the
# live audit.log. The same binary version gives the same bytes.
#
#   scripts/sample-audit.sh            # uses target/release/auditflow (built if missing)
#   AUDITFLOW=target/debug/auditflow scripts/sample-audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${AUDITFLOW:-target/release/auditflow}"
if [ ! -x "$bin" ]; then
  cargo build --release --quiet
fi
out=examples/audit
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 20,000 events over the day (0.24 a second on average), the incidents included.
"$bin" generate --count 20000 --seed 2026 --start 2026-11-24T00:00:00Z \
  --events-per-second 0.24 --incidents > "$work/day.ndjson"
split -C 1000000 -d -a 3 "$work/day.ndjson" "$work/part-"

rm -f "$out"/audit*.log "$out"/audit*.log.gz
mkdir -p "$out"
parts=("$work"/part-*)
last=$((${#parts[@]} - 1))
for index in "${!parts[@]}"; do
  part="${parts[$index]}"
  if [ "$index" -eq "$last" ]; then
    mv "$part" "$out/audit.log"
    continue
  fi
  # Rotated just after its last event: name it after that event's time, to the millisecond.
  stamp=$(tail -n 1 "$part" | grep -o '"stageTimestamp":"[^"]*"' | cut -d'"' -f4)
  name="audit-$(echo "$stamp" | cut -c1-23 | tr ':' '-').log"
  if [ "$index" -eq $((last - 1)) ]; then
    mv "$part" "$out/$name"
  else
    gzip -n -9 < "$part" > "$out/$name.gz"
  fi
done
ls -l "$out"
du -sh "$out"
