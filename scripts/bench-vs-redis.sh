#!/usr/bin/env bash
# quill serve against redis-server, side by side on loopback, with identical redis-benchmark
# settings: pipelined (-P 16) and unpipelined (-P 1), 50 clients, GET and SET of 100-byte values
# over a preloaded key space of random keys. redis-server runs twice: without persistence, and
# with appendonly yes + appendfsync always (every write durable, like QuillKV).
# Prints every figure and the ratios. Usage: scripts/bench-vs-redis.sh [requests] [keyspace]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
keyspace=${2:-100000}
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release -p quill-cli --quiet
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis-server --port 7101 --save '' --appendonly no --dir "$work" --daemonize no >/dev/null &
pids+=($!)
mkdir -p "$work/aof"
redis-server --port 7102 --save '' --appendonly yes --appendfsync always --dir "$work/aof" --daemonize no >/dev/null &
pids+=($!)
./target/release/quill serve --path "$work/quill.data" --size $((2 << 30)) --port 7103 2>/dev/null &
pids+=($!)
for port in 7101 7102 7103; do
  for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
done

# rps PORT TEST PIPELINE: requests per second from redis-benchmark's CSV output.
rps() {
  redis-benchmark -p "$1" -t "$2" -P "$3" -c 50 -n "$requests" -r "$keyspace" -d 100 --csv 2>/dev/null \
    | awk -F'","' 'NR==2 {gsub(/"/, "", $2); print $2}'
}
# Preload the key space (the GET benchmarks then hit existing keys).
for port in 7101 7102 7103; do
  redis-benchmark -p $port -t set -P 64 -c 50 -n $((keyspace * 3)) -r "$keyspace" -d 100 -q >/dev/null 2>&1
done

printf '%-22s %14s %14s %14s %10s %10s\n' test redis redis-aof-always quill "q/redis" "q/aof"
for pipeline in 16 1; do
  for test in get set; do
    plain=$(rps 7101 $test $pipeline); aof=$(rps 7102 $test $pipeline); quill=$(rps 7103 $test $pipeline)
    printf '%-22s %14s %14s %14s %10s %10s\n' "$test -P $pipeline -c 50" "$plain" "$aof" "$quill" \
      "$(awk -v a="$quill" -v b="$plain" 'BEGIN {printf "%.2f", a / b}')" \
      "$(awk -v a="$quill" -v b="$aof" 'BEGIN {printf "%.2f", a / b}')"
  done
done
echo "targets: cached GET (-P 16) >= 1.0 x redis; durable SET >= 1.0 x redis with appendfsync always"
