#!/usr/bin/env bash
# What format 7's record padding buys and costs: uncached GETs and durable SETs with records of
# at most a block kept whole (the default) and allowed to cross blocks (`--records-cross-blocks`),
# in interleaved rounds with fio's 4 KiB random read at QD32 beside them; medians.
#
#   scripts/bench-record-padding.sh [DIRECTORY]
#
# DIRECTORY (default target/bench-record-padding) must be on the filesystem to measure.
# Environment: ROUNDS (3), DURATION (seconds per measurement, 4), KEYS (300,000), VALUE_BYTES
# (1000), QUILL_BYTES (data file, 1 GiB), FIO_BYTES (256 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."

directory=${1:-target/bench-record-padding}
rounds=${ROUNDS:-3}
duration=${DURATION:-4}
keys=${KEYS:-300000}
value_bytes=${VALUE_BYTES:-1000}
quill_bytes=${QUILL_BYTES:-$((1 << 30))}
fio_bytes=${FIO_BYTES:-$((256 << 20))}

. scripts/prepare-bench.sh

median() { sort -g | awk '{ values[NR] = $1 } END { print (NR % 2 ? values[(NR + 1) / 2] : (values[NR / 2] + values[NR / 2 + 1]) / 2) }'; }
declare -A series
record() { series[$1]+="$2 "; } # name, value

bench() { # file, extra flags..., then quill bench arguments
  "$quill" bench --path "$@" --duration "$duration" --json
}

for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  fio --name=randread --filename="$directory/fio.dat" --size="$fio_bytes" --bs=4k --ioengine=io_uring --direct=1 \
    --time_based --runtime="$duration" --rw=randread --iodepth=32 --output-format=json >"$directory/fio.json"
  record fio_qd32 "$(jq '.jobs[0].read.iops' "$directory/fio.json")"
  # Alternate which placement runs first: the second of a pair ran slower on this machine.
  placements=(whole crossing)
  ((round % 2 == 0)) && placements=(crossing whole)
  for placement in "${placements[@]}"; do
    flags=()
    [[ $placement == crossing ]] && flags=(--records-cross-blocks)
    file="$directory/$placement.qkv"
    rm -f "$file"
    common=(--size "$quill_bytes" --op get --keys "$keys" --value-size "$value_bytes" --cache-bytes 0 "${flags[@]}")
    get32=$(bench "$file" "${common[@]}" --concurrency 32)
    get1=$(bench "$file" "${common[@]}" --concurrency 1 --skip-load)
    record "${placement}_get32" "$(jq .ops_per_s <<<"$get32")"
    record "${placement}_get1" "$(jq .ops_per_s <<<"$get1")"
    record "${placement}_blocks_per_get" "$(jq '.bytes_read / .reads / 4096' <<<"$get32")"
    record "${placement}_log_per_live" "$(jq '.log_used_bytes / .live_bytes' <<<"$get32")"
    rm -f "$file"
    set64=$(bench "$file" --size "$quill_bytes" --op set --keys 100000 --value-size "$value_bytes" --concurrency 64 \
      "${flags[@]}")
    record "${placement}_set64" "$(jq .ops_per_s <<<"$set64")"
    record "${placement}_set_padding" "$(jq 'if .payload_bytes_sealed > 0 then .record_padding_bytes / .payload_bytes_sealed else 0 end' <<<"$set64")"
    rm -f "$file"
  done
done
rm -f "$directory/fio.dat"

show() { # label, series name
  local values=${series[$2]}
  printf '%-44s %14s   (rounds: %s)\n' "$1" "$(tr ' ' '\n' <<<"$values" | grep . | median)" "$values"
}
echo "records of $value_bytes-byte values, $keys keys, median of $rounds rounds"
show "fio randread 4 KiB QD32 (IOPS)" fio_qd32
for placement in whole crossing; do
  echo "-- records $placement"
  show "GET x32 uncached (ops/s)" "${placement}_get32"
  show "GET x1 uncached (ops/s)" "${placement}_get1"
  show "blocks read per GET" "${placement}_blocks_per_get"
  show "log bytes per live byte after the load" "${placement}_log_per_live"
  show "SET x64 durable (ops/s)" "${placement}_set64"
  show "padding / payload written by the SETs" "${placement}_set_padding"
done
