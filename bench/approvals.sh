#!/usr/bin/env bash
# Approval latency: a signed Slack "Approve" click on the interaction
# endpoint -> the held statement's first result message at the client
# (tests/examples/approval_bench.rs), over N approvals.
#
#   bench/approvals.sh [N]   (default 200)
#
# Needs: PostgreSQL on 127.0.0.1:5432 trusting user postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p sluice --bin sluice
SLUICE_BIN="$(cd "$TARGET" && pwd)/release/sluice" cargo run --release -q -p sluice-e2e --example approval_bench -- "$N"
