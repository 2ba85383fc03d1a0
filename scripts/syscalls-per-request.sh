#!/usr/bin/env bash
# System calls per GET request of `quill serve`, by kind, counted with `strace -c` over a
# redis-benchmark run (after a preload, so every GET hits a cached value). A measurement, not a
# test. Usage: scripts/syscalls-per-request.sh [pipeline] [requests] [quill binary]
set -euo pipefail
cd "$(dirname "$0")/.."
pipeline=${1:-1}
requests=${2:-50000}
quill=${3:-./target/release/quill}
port=7131
for tool in strace redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq strace redis-tools >/dev/null; }
done
[ "$quill" != ./target/release/quill ] || cargo build --release -p quill-cli --quiet
work=$(mktemp -d)
"$quill" serve --path "$work/quill.data" --size $((1 << 30)) --port $port >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -p $port -t set -P 16 -c 50 -n 300000 -r 100000 -d 100 -q >/dev/null 2>&1
strace -c -f -p $server -o "$work/strace.txt" 2>/dev/null &
tracer=$!
sleep 1
redis-benchmark -p $port -t get -P "$pipeline" -c 50 -n "$requests" -r 100000 -d 100 -q 2>/dev/null | tail -1
kill -INT $tracer; wait $tracer 2>/dev/null || true
echo "system calls per GET (-P $pipeline, $requests requests, strace -c):"
awk -v n="$requests" '$4 ~ /^[0-9]+$/ && $NF != "total" {printf "  %-16s %.3f\n", $NF, $4 / n; sum += $4}
  END {printf "  %-16s %.3f\n", "all", sum / n}' "$work/strace.txt"
