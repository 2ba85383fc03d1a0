#!/usr/bin/env bash
# A 3-replica QuillKV cluster against one QuillKV node, side by side on loopback: durable SET
# of 100-byte values with redis-benchmark -P 16 (and -P 1), 50 clients, sent to the cluster's
# leader (redis-benchmark --cluster needs two masters or more; this cluster is one shard). The
# three replicas and the single node share this machine's cores: the ratio is a lower bound of
# what three machines would give. ROUNDS (default 3) interleaved rounds, medians.
# Then the failover time, from killing the leader (SIGKILL) to the first write the new leader
# acknowledges: KILLS (default 20) kills under load, median and max (cli/tests/cluster_failover.rs
# does the killing, restarting and checking).
# Usage: [ROUNDS=3] [KILLS=20] scripts/bench-replicated.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
if ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null
fi
quill=${QUILL:-./target/release/quill}
[ -n "${QUILL:-}" ] || cargo build --release -p quill-cli --quiet
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

size=$((1 << 30))
"$quill" serve --path "$work/single.data" --size $size --port 7200 2>/dev/null &
pids+=($!)
peers="1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203"
for id in 1 2 3; do
  "$quill" serve --node-id $id --peers $peers --path "$work/replica-$id.data" --size $size 2>"$work/replica-$id.log" &
  pids+=($!)
done
for port in 7200 7201 7202 7203; do
  for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
done
leader_port() {
  for _ in $(seq 100); do
    id=$(redis-cli -p 7201 info | tr -d '\r' | awk -F: '$1 == "raft_leader_id" {print $2}')
    [ -n "$id" ] && [ "$id" != 0 ] && { echo $((7200 + id)); return; }
    sleep 0.1
  done
  echo "no leader" >&2; exit 1
}
leader=$(leader_port)
echo "leader: replica $((leader - 7200)) (port $leader)"
rps() { redis-benchmark -p "$1" -t set -P "$2" -c 50 -n "$requests" -r 100000 -d 100 --csv 2>/dev/null | awk -F',' 'NR==2 {gsub(/"/, ""); print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
rounds=${ROUNDS:-3}
printf '%-10s %14s %14s %8s\n' test single cluster-of-3 ratio
for pipeline in 16 1; do
  single="" cluster=""
  for _ in $(seq "$rounds"); do
    single+="$(rps 7200 $pipeline) "
    cluster+="$(rps "$leader" $pipeline) "
  done
  s=$(median $single); c=$(median $cluster)
  printf '%-10s %14s %14s %8s\n' "set -P $pipeline" "$s" "$c" "$(awk -v a="$c" -v b="$s" 'BEGIN {printf "%.2f", a / b}')"
done
cleanup
trap - EXIT

echo "failover: ${KILLS:-20} leader kills under load (cli/tests/cluster_failover.rs)"
QUILL_CLUSTER_KILLS=${KILLS:-20} QUILL_CLUSTER_PAUSES=0 cargo test --release -p quill-cli --test cluster_failover -- --nocapture three_replicas 2>&1 \
  | grep -E 'kills,|panicked|test result'
