#!/usr/bin/env bash
# Allocations per 1,000 GETs and SETs on the server's hot path (core/examples/allocations.rs),
# beside the figures recorded in docs/benchmarks.md. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p quill-core --example allocations
echo "recorded in docs/benchmarks.md (the newest figures):"
grep -E '^recorded: GET [0-9,]+ and SET [0-9,]+ allocations' docs/benchmarks.md | tail -1
