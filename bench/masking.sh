#!/usr/bin/env bash
# A 1M-row x 8-column result through Sluice with masking (2 masked columns,
# detectors on every other text column), through Sluice without masking,
# and directly from PostgreSQL. psql reads the whole result each time; the
# best of RUNS wall times is kept.
#
#   bench/masking.sh [RUNS]   (default 3)
#
# Needs: PostgreSQL on 127.0.0.1:5432 trusting user postgres, and psql.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${1:-3}"
export PGSSLMODE=disable
DB=sluice_mask_bench
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "building sluice (release)" >&2
cargo build --release -q -p sluice
BIN="${CARGO_TARGET_DIR:-target}/release/sluice"

echo "preparing $DB" >&2
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -q -h 127.0.0.1 -U postgres -d $DB <<'SQL'
CREATE TABLE wide (id int, name text, city text, status text, ref text, email text, ssn text, notes text);
INSERT INTO wide
SELECT g, 'Customer ' || g, 'Zurich', CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'open' END,
       'REF-' || g, 'user' || g || '@example.com', lpad((g % 1000)::text, 3, '0') || '-45-6789',
       'called about invoice ' || g || ' and asked for a refund before the end of the month'
FROM generate_series(1, 1000000) g;
ANALYZE wide;
SQL

policy() { # name masking
  cat > "$WORK/$1.yaml" <<YAML
name: $1
statements:
  default: deny
  rules:
    - name: reads
      kinds: [select]
      decision: allow
$2
YAML
}
policy plain ""
policy masked "masking:
  columns:
    wide.email: email
    wide.ssn: redact
  detectors:
    builtin: [email, card, ssn, phone, iban, aws_access_key, jwt, private_key, secret_key]"

start() { # name port
  "$BIN" --log-level warn dev --no-demo --data-dir "$WORK/$1" \
    --target "bench=postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
    --policy "$WORK/$1.yaml" \
    --pg-listen 127.0.0.1:$2 --http-listen 127.0.0.1:0 --http-gateway-listen 127.0.0.1:0 \
    --ready-file "$WORK/$1.json" >/dev/null &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/$1.json" ] && break; sleep 0.2; done
  [ -s "$WORK/$1.json" ] || { echo "sluice ($1) did not start" >&2; exit 1; }
}
start plain 6441
start masked 6442
token() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['agent_token'])" "$WORK/$1.json"; }

SQL="SELECT id, name, city, status, ref, email, ssn, notes FROM wide"
best() { # url
  local best=999999
  for _ in $(seq 1 "$RUNS"); do
    local s e
    s=$(date +%s.%N)
    psql -X -q -At "$1" -c "$SQL" > "$WORK/out.txt" || exit 1
    e=$(date +%s.%N)
    best=$(python3 -c "print(min($best, $e - $s))")
  done
  echo "$best"
}
direct=$(best "postgresql://postgres@127.0.0.1:5432/$DB")
plain=$(best "postgresql://agent:$(token plain)@127.0.0.1:6441/bench")
masked=$(best "postgresql://agent:$(token masked)@127.0.0.1:6442/bench")
bytes=$(wc -c < "$WORK/out.txt")
grep -c '@example.com' "$WORK/out.txt" >/dev/null || true
echo "result: 1000000 rows, $bytes bytes as psql prints them (masked run)"
python3 - "$direct" "$plain" "$masked" <<'PY'
import sys
d, p, m = map(float, sys.argv[1:])
print("| endpoint | best of runs, s | rows/s |")
print("| --- | ---: | ---: |")
for name, t in (("direct", d), ("sluice, no masking", p), ("sluice, masking", m)):
    print(f"| {name} | {t:.2f} | {1e6 / t:,.0f} |")
print(f"masking costs {100 * (m - p) / p:.1f}% of the unmasked proxy's time")
PY
