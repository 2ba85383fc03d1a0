#!/usr/bin/env bash
# The pipelined group commit, measured: durable SETs with one batch in flight against two, side
# by side in interleaved rounds (depth 1, depth 2, depth 1, ...), medians. `quill serve` under
# redis-benchmark (50 connections, -P 1 and -P 16) and the embedded engine under `quill bench`
# (64 closed-loop clients), each on a fresh data file.
#
#   scripts/bench-commit-pipeline.sh [DIRECTORY]
#
# Environment: ROUNDS (default 3), REQUESTS (redis-benchmark -n, default 100000), DURATION
# (quill bench seconds, default 4), PORT (default 7411). The order alternates between rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

directory=${1:-target/bench-commit-pipeline}
rounds=${ROUNDS:-3}
requests=${REQUESTS:-100000}
duration=${DURATION:-4}
port=${PORT:-7411}

. scripts/prepare-bench.sh
command -v redis-benchmark >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq redis-tools >/dev/null; }

declare -A series
record() { series[$1]+="$2 "; }
median() { sort -g | awk '{ values[NR] = $1 } END { print (NR % 2 ? values[(NR + 1) / 2] : (values[NR / 2] + values[NR / 2 + 1]) / 2) }'; }
m() { tr ' ' '\n' <<<"${series[$1]}" | grep -v '^$' | median; }

serve_rps() { # depth, pipeline; prints SET requests per second
  local depth=$1 pipeline=$2 data="$directory/serve.qkv"
  rm -f "$data"
  "$quill" serve --path "$data" --size $((1 << 30)) --port "$port" --commit-pipeline-depth "$depth" 2>"$directory/serve.log" &
  local server=$!
  for _ in $(seq 1 200); do
    redis-cli -p "$port" PING >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis-benchmark -p "$port" -c 50 -n "$requests" -r 100000 -d 100 -t set -P "$pipeline" --csv 2>/dev/null \
    | awk -F'"' '/^"SET"/ { print $4 }'
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -f "$data"
}

bench_ops() { # depth; prints ops/s and commits/s
  local depth=$1 data="$directory/bench.qkv"
  rm -f "$data"
  "$quill" bench --path "$data" --size $((256 << 20)) --op set --concurrency 64 --keys 20000 --value-size 100 \
    --duration "$duration" --commit-pipeline-depth "$depth" --json | jq -r '"\(.ops_per_s) \(.batches / .elapsed_s) \(.batches_pipelined)"'
  rm -f "$data"
}

for round in $(seq 1 "$rounds"); do
  order="1 2"
  ((round % 2 == 0)) && order="2 1" # alternate: the second run of a pair tends to be slower
  for depth in $order; do
    echo "round $round, depth $depth" >&2
    record "serve_p1_d$depth" "$(serve_rps "$depth" 1)"
    record "serve_p16_d$depth" "$(serve_rps "$depth" 16)"
    read -r ops commits pipelined <<<"$(bench_ops "$depth")"
    record "bench_d$depth" "$ops"
    record "commits_d$depth" "$commits"
    record "pipelined_d$depth" "$pipelined"
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
row() { # label, series prefix
  printf '%-40s %12.0f %12.0f %8s   (rounds: depth 1 %s| depth 2 %s)\n' "$1" "$(m "${2}_d1")" "$(m "${2}_d2")" \
    "$(ratio "$(m "${2}_d2")" "$(m "${2}_d1")")" "${series[${2}_d1]}" "${series[${2}_d2]}"
}
printf '%-40s %12s %12s %8s\n' "durable SET, medians of $rounds rounds" "depth 1" "depth 2" "2 / 1"
row "quill serve, redis-benchmark -P 1 (req/s)" serve_p1
row "quill serve, redis-benchmark -P 16 (req/s)" serve_p16
row "quill bench, 64 clients (ops/s)" bench
row "quill bench, group commits per second" commits
row "quill bench, batches sealed beside another" pipelined
