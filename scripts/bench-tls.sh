#!/usr/bin/env bash
# quill serve over TLS against quill serve over plain TCP: one server with both listeners, the
# same redis-benchmark settings (GET and durable SET, -P 16, 50 clients, 100-byte values over a
# preloaded key space), three interleaved rounds (plain, TLS, plain, TLS, …), medians and the
# TLS/plain ratio. Certificates are made with openssl. Usage: scripts/bench-tls.sh [requests] [keyspace]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
keyspace=${2:-100000}
if ! command -v redis-benchmark >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-tools openssl >/dev/null
fi
cargo build --release -p quill-cli --quiet
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(
  cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  echo "subjectAltName=IP:127.0.0.1" > ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext 2>/dev/null
)
./target/release/quill serve --path "$work/quill.data" --size $((2 << 30)) --port 7201 --tls-port 7202 \
  --tls-cert-file "$work/server.crt" --tls-key-file "$work/server.key" 2>/dev/null &
pid=$!
for _ in $(seq 100); do redis-cli -p 7201 ping >/dev/null 2>&1 && break; sleep 0.1; done
tls=(--tls --cacert "$work/ca.crt")
redis-benchmark -p 7201 -t set -P 64 -c 50 -n $((keyspace * 3)) -r "$keyspace" -d 100 -q >/dev/null 2>&1

# rps PORT TEST [TLS FLAGS…]: requests per second from redis-benchmark's CSV output.
rps() {
  local port=$1 test=$2
  shift 2
  redis-benchmark -p "$port" "$@" -t "$test" -P 16 -c 50 -n "$requests" -r "$keyspace" -d 100 --csv 2>/dev/null \
    | awk -F'","' 'NR==2 {gsub(/"/, "", $2); print $2}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

printf '%-14s %12s %12s %8s\n' test plain tls tls/plain
for test in get set; do
  plain=(); secure=()
  for _ in 1 2 3; do
    plain+=("$(rps 7201 "$test")")
    secure+=("$(rps 7202 "$test" "${tls[@]}")")
  done
  p=$(median "${plain[@]}"); t=$(median "${secure[@]}")
  printf '%-14s %12s %12s %8s   (rounds: plain %s; tls %s)\n' "$test -P 16" "$p" "$t" \
    "$(awk -v a="$t" -v b="$p" 'BEGIN {printf "%.2f", a / b}')" "${plain[*]}" "${secure[*]}"
done
