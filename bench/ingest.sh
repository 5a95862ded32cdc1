#!/usr/bin/env bash
# Audit ingest into the control plane's store: 8 simulated nodes appending
# chained events at once (control-plane/examples/ingest_bench.rs), then the
# latency of a session page and of a JSONL export of a 100,000-event session.
# Runs against a fresh Postgres database and a fresh SQLite file.
#
#   bench/ingest.sh [EVENTS_TOTAL] [BATCH]   (defaults 400000, 500)
#
# Needs: PostgreSQL on 127.0.0.1:5432 trusting user postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL="${1:-400000}"
BATCH="${2:-500}"
DB=sluice_ingest_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

cargo build --release -q -p sluice-control-plane --example ingest_bench
BIN=target/release/examples/ingest_bench

psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
echo "== postgres"
/usr/bin/time -f "peak RSS %M KiB" "$BIN" "postgres://postgres@127.0.0.1:5432/$DB" "$TOTAL" 8 "$BATCH" 32 100000
echo "== sqlite"
/usr/bin/time -f "peak RSS %M KiB" "$BIN" "sqlite://$WORK/store.db" "$TOTAL" 8 "$BATCH" 32 100000
