#!/usr/bin/env bash
# HTTP gateway throughput and latency: a small JSON GET (one demo customer
# from json-server) measured with wrk, three ways in the same run:
#   direct    wrk -> json-server
#   nginx     wrk -> nginx (proxy_pass, keep-alive upstream) -> json-server
#   sluice    wrk -> sluice dev's HTTP gateway (policy decision, header-key
#             credential injection, JSON masking of email/card/api key,
#             audit record) -> json-server
# and prints req/s and p50/p99 latency for each (wrk --latency). Then the
# same three routes for a ~10 MB JSON response (BIG_MB, default 10: a
# static file of generated customers with emails, card numbers, API keys
# and notes the detectors clean) with BIG_CONNS connections (default 4),
# checks that the body Sluice returns is really masked, and prints the
# node's peak resident memory (VmHWM) before and after the 10 MB runs and
# the CPU milliseconds per request json-server, nginx and the node spent
# in each 10 MB run.
#
#   bench/http.sh [DURATION] [CONNECTIONS]   (defaults 20s, 32)
#   BIG_MB=10 BIG_CONNS=4 bench/http.sh 8s 32
#
# Needs: wrk and nginx (apt-get install wrk nginx), node + npm ci in
# tests/http, and a release build of sluice (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20s}"
CONNS="${2:-32}"
THREADS=2
BIG_MB="${BIG_MB:-10}"
BIG_CONNS="${BIG_CONNS:-4}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$@" && return 0; sleep 0.2; done; echo "not up: $*" >&2; exit 1; }

cargo build --release -q -p sluice --bin sluice
SLUICE="$(cd "$TARGET" && pwd)/release/sluice"
[ -f tests/http/node_modules/json-server/package.json ] || (cd tests/http && npm ci --no-audit --no-fund --loglevel=error)

# json-server, on a private copy of the demo customers, serving the large
# document as a static file (its --static is taken relative to the working
# directory).
cp tests/http/db.json "$WORK/db.json"
mkdir -p "$WORK/public"
python3 - "$WORK/public/customers-big.json" "$BIG_MB" <<'PY'
import json, sys
path, mb = sys.argv[1], int(sys.argv[2])
target = mb * 1_000_000
with open(path, "w") as f:
    f.write('{"data": [')
    size, i = 11, 0
    while size < target:
        c = {
            "id": i,
            "name": f"Customer {i}",
            "email": f"customer{i}@example.com",
            "card_number": "4111111111111111",
            "api_key": f"sk_live_{i:016d}",
            "balance": round(i * 7 % 1000 + (i % 100) / 100, 2),
            "active": True,
            "tags": ["retail", "eu"],
            "notes": f"prefers contact in the morning; backup contact backup{i}@corpmail.example",
        }
        text = ("," if i else "") + json.dumps(c)
        f.write(text)
        size += len(text)
        i += 1
    f.write("]}")
PY
JS_PORT=$(free_port)
node tests/http/node_modules/json-server/lib/cli/bin.js --quiet --host 127.0.0.1 --port "$JS_PORT" \
  --static "$(realpath --relative-to=. "$WORK/public")" "$WORK/db.json" >"$WORK/js.log" 2>&1 &
JS_PID=$!
PIDS+=($JS_PID)
wait_http "http://127.0.0.1:$JS_PORT/customers/1"

# nginx as the plain reverse proxy to compare with.
NG_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  upstream js { server 127.0.0.1:$JS_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NG_PORT;
    location / {
      proxy_pass http://js;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Api-Key bench-upstream-key;
    }
  }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
NG_PID=$!
PIDS+=($NG_PID)
wait_http "http://127.0.0.1:$NG_PORT/customers/1"

# sluice dev with the crm target and a masking policy.
cat >"$WORK/policy.yaml" <<'YAML'
name: bench
applies_to: { groups: ["*"], targets: [crm] }
masking:
  detectors:
    builtin: [email, card, secret_key, aws_access_key, jwt, private_key]
http:
  default: deny
  rules:
    - { name: read, methods: [GET], path: /customers/**, decision: allow }
    - { name: big, methods: [GET], path: /customers-big.json, decision: allow }
  response:
    mask:
      - { path: $..email, mask: email }
      - { path: $..card_number, mask: redact }
      - { path: $..api_key, mask: redact }
    detectors: true
YAML
GW_PORT=$(free_port)
"$SLUICE" dev --no-demo --data-dir "$WORK/sluice" --ready-file "$WORK/ready.json" \
  --pg-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --http-gateway-listen "127.0.0.1:$GW_PORT" \
  --policy "$WORK/policy.yaml" --target "crm=http://127.0.0.1:$JS_PORT" \
  --target-auth crm=header:X-Api-Key --target-secret crm=bench-upstream-key >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=($SLUICE_PID)
for _ in $(seq 1 300); do [ -s "$WORK/ready.json" ] && break; sleep 0.2; done
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent_token"])' "$WORK/ready.json")
wait_http -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/http/crm/customers/1"

run() {
  local name=$1; shift
  echo "== $name"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" | tee "$WORK/wrk.out" | grep -E 'Requests/sec|Transfer/sec|^ +50%|^ +99%|Non-2xx|Socket errors'
}
# CPU time (user + system, in clock ticks) of a process and its children
# (nginx's workers).
ticks() { local t=0 q; for q in "$1" $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$q/stat"))); done; echo "$t"; }
# `run`, then the CPU milliseconds per request that json-server, nginx and
# the node each spent during it: on a 2-core machine shared by all of them
# and wrk, throughput follows the total.
run_cpu() {
  local before=() after=() p
  for p in "$JS_PID" "$NG_PID" "$SLUICE_PID"; do before+=("$(ticks "$p")"); done
  run "$@"
  for p in "$JS_PID" "$NG_PID" "$SLUICE_PID"; do after+=("$(ticks "$p")"); done
  local n hz
  n=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
  hz=$(getconf CLK_TCK)
  awk -v n="$n" -v hz="$hz" -v j="$((after[0] - before[0]))" -v g="$((after[1] - before[1]))" -v s="$((after[2] - before[2]))" \
    'BEGIN { f = 1000 / hz / n; printf "cpu ms per request: json-server %.1f, nginx %.1f, sluice %.1f\n", j * f, g * f, s * f }'
}
# The sluice node's peak and current resident memory (its own process, not
# a wrapper's).
rss() { grep -E '^Vm(HWM|RSS)' "/proc/$SLUICE_PID/status" | tr -s ' \t' ' ' | paste -sd' '; }

run direct "http://127.0.0.1:$JS_PORT/customers/1"
run nginx "http://127.0.0.1:$NG_PORT/customers/1"
run sluice -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/http/crm/customers/1"

BIG=/customers-big.json
echo "== ${BIG_MB} MB masked JSON response ($(stat -c %s "$WORK/public$BIG") bytes), $BIG_CONNS connections"
# The body through the gateway must be valid JSON with every email, card
# number and API key masked, and no customer lost.
curl -fsS -o "$WORK/masked.json" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/http/crm$BIG"
python3 - "$WORK/public$BIG" "$WORK/masked.json" <<'PY'
import json, sys
orig = json.load(open(sys.argv[1]))["data"]
masked = json.load(open(sys.argv[2]))["data"]
assert len(orig) == len(masked), f"{len(masked)} customers back of {len(orig)}"
raw = sum(
    (m["email"] == o["email"]) + (m["card_number"] == o["card_number"]) + (m["api_key"] == o["api_key"])
    + (o["notes"].split()[-1] in m["notes"])
    for o, m in zip(orig, masked)
)
text = open(sys.argv[2]).read()
assert raw == 0 and "4111111111111111" not in text and "sk_live_" not in text, f"{raw} values unmasked"
print(f"masked: ok ({len(masked)} customers, no email, card number, API key or note address left)")
PY
echo "sluice memory before: $(rss)"
CONNS=$BIG_CONNS
run_cpu "direct ${BIG_MB} MB" --timeout 60s "http://127.0.0.1:$JS_PORT$BIG"
run_cpu "nginx ${BIG_MB} MB" --timeout 60s "http://127.0.0.1:$NG_PORT$BIG"
run_cpu "sluice ${BIG_MB} MB" --timeout 60s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/http/crm$BIG"
echo "sluice memory after: $(rss)"
