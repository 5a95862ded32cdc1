#!/usr/bin/env bash
# HTTP gateway throughput and latency: a small JSON GET (one demo customer
# from json-server) measured with wrk, three ways in the same run:
#   direct    wrk -> json-server
#   nginx     wrk -> nginx (proxy_pass, keep-alive upstream) -> json-server
#   sluice    wrk -> sluice dev's HTTP gateway (policy decision, header-key
#             credential injection, JSON masking of email/card/api key,
#             audit record) -> json-server
# and prints req/s and p50/p99 latency for each (wrk --latency).
#
#   bench/http.sh [DURATION] [CONNECTIONS]   (defaults 20s, 32)
#
# Needs: wrk and nginx (apt-get install wrk nginx), node + npm ci in
# tests/http, and a release build of sluice (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-20s}"
CONNS="${2:-32}"
THREADS=2
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

# json-server, on a private copy of the demo customers.
cp tests/http/db.json "$WORK/db.json"
JS_PORT=$(free_port)
node tests/http/node_modules/json-server/lib/cli/bin.js --quiet --host 127.0.0.1 --port "$JS_PORT" "$WORK/db.json" >"$WORK/js.log" 2>&1 &
PIDS+=($!)
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
PIDS+=($!)
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
PIDS+=($!)
for _ in $(seq 1 300); do [ -s "$WORK/ready.json" ] && break; sleep 0.2; done
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["agent_token"])' "$WORK/ready.json")
wait_http -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/http/crm/customers/1"

run() {
  local name=$1; shift
  echo "== $name"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" | grep -E 'Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors'
}
run direct "http://127.0.0.1:$JS_PORT/customers/1"
run nginx "http://127.0.0.1:$NG_PORT/customers/1"
run sluice -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/http/crm/customers/1"
