#!/usr/bin/env bash
# The embedded Db against fjall and redb (bench/peers, outside the workspace so `cargo test
# --workspace` never compiles them): durable SETs at 1/16/64 threads, warm GETs at 32 threads,
# reopen to first GET; rounds rotate the order of the stores; medians and quill/best ratios.
# Usage: scripts/bench-vs-peers.sh [seconds-per-test] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-2}
rounds=${2:-3}
(cd bench/peers && CARGO_TARGET_DIR=../../target/peers cargo build --release --quiet)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/quill-peers.XXXXXX")
trap 'rm -rf "$work"' EXIT
./target/peers/release/quill-bench-peers "$work" "$seconds" "$rounds"
