#!/usr/bin/env bash
# quill serve against redis-server, side by side on loopback, with identical redis-benchmark
# settings: pipelined (-P 16) and unpipelined (-P 1), 50 clients, GET and SET of 100-byte values
# over a preloaded key space of random keys. redis-server runs twice: without persistence, and
# with appendonly yes + appendfsync always (every write durable, like QuillKV).
# Runs ROUNDS (default 3) interleaved rounds and prints medians, ratios and p50/p99; for
# quill's durable SETs, the records per group commit and the commits per second (from INFO).
# Pipelined runs send PIPELINED_FACTOR (default 5) times the requests, so each lasts a second or more.
# Usage: [ROUNDS=3] scripts/bench-vs-redis.sh [requests] [keyspace]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
keyspace=${2:-100000}
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# QUILL=path: another build of quill to measure (an earlier commit's, for a before/after).
quill=${QUILL:-./target/release/quill}
[ -n "${QUILL:-}" ] || cargo build --release -p quill-cli --quiet
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis-server --port 7101 --save '' --appendonly no --dir "$work" --daemonize no >/dev/null &
pids+=($!)
mkdir -p "$work/aof"
redis-server --port 7102 --save '' --appendonly yes --appendfsync always --dir "$work/aof" --daemonize no >/dev/null &
pids+=($!)
"$quill" serve --path "$work/quill.data" --size $((2 << 30)) --port 7103 2>/dev/null &
pids+=($!)
for port in 7101 7102 7103; do
  for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
done

# count_requests PIPELINE: requests per run.
count_requests() { if [ "$1" -gt 1 ]; then echo $((requests * ${PIPELINED_FACTOR:-5})); else echo "$requests"; fi; }
# stats PORT TEST PIPELINE: "rps p50_ms p99_ms" from redis-benchmark's CSV output.
stats() {
  redis-benchmark -p "$1" -t "$2" -P "$3" -c 50 -n "$(count_requests "$3")" -r "$keyspace" -d 100 --csv 2>/dev/null \
    | awk -F',' 'NR==2 {gsub(/"/, ""); print $2, $5, $7}'
}
# commits: quill's "batches records" committed so far (INFO).
commits() {
  redis-cli -p 7103 info | tr -d '\r' | awk -F: '$1 == "batches_committed" {b = $2} $1 == "records_committed" {r = $2} END {print b, r}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
# Preload the key space (the GET benchmarks then hit existing keys).
for port in 7101 7102 7103; do
  redis-benchmark -p $port -t set -P 64 -c 50 -n $((keyspace * 3)) -r "$keyspace" -d 100 -q >/dev/null 2>&1
done

rounds=${ROUNDS:-3}
printf '%-16s %12s %12s %12s %8s %8s   %s\n' test redis aof-always quill "q/redis" "q/aof" "p50/p99 ms (redis, aof, quill)"
for pipeline in 16 1; do
  for test in get set; do
    declare -A rps=() p50=() p99=()
    per_commit="" commits_per_s=""
    for _ in $(seq "$rounds"); do # interleaved: each round runs all three servers
      for port in 7101 7102 7103; do
        read -r batches_before records_before <<< "$(commits)"
        read -r r a b <<< "$(stats $port $test $pipeline)"
        rps[$port]+="$r "; p50[$port]+="$a "; p99[$port]+="$b "
        if [ "$port" = 7103 ] && [ "$test" = set ]; then
          read -r batches_after records_after <<< "$(commits)"
          batches=$((batches_after - batches_before))
          per_commit+="$(awk -v r=$((records_after - records_before)) -v b=$batches 'BEGIN {printf "%.0f", r / (b ? b : 1)}') "
          commits_per_s+="$(awk -v b=$batches -v rps="$r" -v n="$(count_requests "$pipeline")" 'BEGIN {printf "%.0f", b * rps / n}') "
        fi
      done
    done
    for port in 7101 7102 7103; do
      rps[$port]=$(median ${rps[$port]}); p50[$port]=$(median ${p50[$port]}); p99[$port]=$(median ${p99[$port]})
    done
    printf '%-16s %12s %12s %12s %8s %8s   %s/%s, %s/%s, %s/%s\n' "$test -P $pipeline" \
      "${rps[7101]}" "${rps[7102]}" "${rps[7103]}" \
      "$(awk -v a="${rps[7103]}" -v b="${rps[7101]}" 'BEGIN {printf "%.2f", a / b}')" \
      "$(awk -v a="${rps[7103]}" -v b="${rps[7102]}" 'BEGIN {printf "%.2f", a / b}')" \
      "${p50[7101]}" "${p99[7101]}" "${p50[7102]}" "${p99[7102]}" "${p50[7103]}" "${p99[7103]}"
    if [ -n "$per_commit" ]; then
      echo "    quill: $(median $per_commit) records per group commit, $(median $commits_per_s) commits/s (medians)"
    fi
    unset rps p50 p99
  done
done
echo "medians of $rounds interleaved rounds; targets (issue 12): GET -P 16 >= 1.2x redis; durable SET -P 16 >= 1.5x aof-always, -P 1 >= 1.2x; GET -P 1 >= 1.1x"
