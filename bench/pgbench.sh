#!/usr/bin/env bash
# pgbench -S (select-only) against three endpoints in one run: PostgreSQL
# directly, PgBouncer (session pooling) and Sluice (`sluice dev`, statement
# recording on). Simple and extended protocol, 1 and 32 clients. Prints TPS,
# average, p50 and p99 latency per run, and Sluice's ratios to PgBouncer and
# to direct.
#
#   bench/pgbench.sh [SECONDS_PER_RUN]   (default 15)
#
# Needs: PostgreSQL on 127.0.0.1:5432 trusting user postgres, pgbench, and
# pgbouncer (installed from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-15}"
# Plaintext everywhere: PgBouncer is not configured for TLS, so neither is
# anything else (the gateway offers TLS; libpq would otherwise take it).
export PGSSLMODE=disable
SCALE="${BENCH_SCALE:-10}"
DB=sluice_bench
PG_PORT=5432
BOUNCER_PORT=6433
SLUICE_PORT=6434
OUT="bench/results/pgbench-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
WORK=$(mktemp -d)
chmod 755 "$WORK"
cleanup() {
  [ -n "${SLUICE_PID:-}" ] && kill -INT "$SLUICE_PID" 2>/dev/null && wait "$SLUICE_PID" 2>/dev/null || true
  [ -n "${BOUNCER_PID:-}" ] && kill "$BOUNCER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v pgbouncer >/dev/null 2>&1; then
  echo "installing pgbouncer" >&2
  apt-get install -y -q pgbouncer >/dev/null
fi

echo "building sluice (release)" >&2
cargo build --release -q -p sluice

echo "preparing $DB (scale $SCALE)" >&2
psql -q -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
pgbench -q -i -s "$SCALE" -h 127.0.0.1 -p $PG_PORT -U postgres "$DB" >/dev/null 2>&1

# PgBouncer refuses to run as root.
RUN_AS=()
[ "$(id -u)" = 0 ] && RUN_AS=(runuser -u postgres --)
cat > "$WORK/pgbouncer.ini" <<INI
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 64
logfile = $WORK/pgbouncer.log
INI
echo '"postgres" ""' > "$WORK/userlist.txt"
chown -R postgres "$WORK" 2>/dev/null || true
"${RUN_AS[@]}" pgbouncer "$WORK/pgbouncer.ini" &
BOUNCER_PID=$!

target/release/sluice --log-level warn dev --no-demo --data-dir "$WORK/sluice" \
  --target "bench=postgres://postgres@127.0.0.1:$PG_PORT/$DB?sslmode=disable" \
  --pg-listen 127.0.0.1:$SLUICE_PORT --http-listen 127.0.0.1:0 --http-gateway-listen 127.0.0.1:0 \
  --ready-file "$WORK/ready.json" >/dev/null &
SLUICE_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/ready.json" ] && break; sleep 0.2; done
TOKEN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['agent_token'])" "$WORK/ready.json")
sleep 1

run() { # name port db user password mode clients
  local name=$1 port=$2 db=$3 user=$4 pw=$5 mode=$6 clients=$7
  local jobs=$(( clients < 2 ? 1 : 2 ))
  local tag="$name-$mode-c$clients"
  mkdir -p "$OUT/$tag"
  ( cd "$OUT/$tag" && PGPASSWORD="$pw" pgbench -n -S -M "$mode" -c "$clients" -j "$jobs" -T "$DURATION" \
      -l --log-prefix=tx -h 127.0.0.1 -p "$port" -U "$user" "$db" > summary.txt 2>&1 )
  echo "$tag done" >&2
}

for mode in simple extended; do
  for clients in 1 32; do
    run direct   $PG_PORT      $DB   postgres ""       $mode $clients
    run pgbouncer $BOUNCER_PORT $DB  postgres ""       $mode $clients
    run sluice   $SLUICE_PORT  bench agent    "$TOKEN" $mode $clients
  done
done

python3 bench/report.py "$OUT" | tee "$OUT/report.md"
