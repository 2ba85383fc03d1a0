#!/usr/bin/env bash
# Side-by-side: fio's raw 4 KiB numbers and `quill bench` on the same filesystem, in one run.
#
#   scripts/bench-vs-fio.sh [DIRECTORY]
#
# DIRECTORY (default target/bench-vs-fio) must be on the filesystem to measure. Environment:
# DURATION (seconds per measurement, default 10), FIO_BYTES (fio's file, default 1 GiB),
# QUILL_BYTES (quill's data file, default 2 GiB), GET_KEYS / GET_VALUE_BYTES (default 1,000,000 x
# 1000 bytes: about 1 GiB of log, like fio's file), SET_VALUE_BYTES (default 100).
#
# Targets (DESIGN.md): GET@32 >= 0.9 x fio randread QD32; GET@32 / GET@1 >= 4;
# SET@64 >= 25 x fio write+fsync QD1.
set -euo pipefail
cd "$(dirname "$0")/.."

directory=${1:-target/bench-vs-fio}
duration=${DURATION:-10}
fio_bytes=${FIO_BYTES:-$((1 << 30))}
quill_bytes=${QUILL_BYTES:-$((2 << 30))}
get_keys=${GET_KEYS:-1000000}
get_value_bytes=${GET_VALUE_BYTES:-1000}
set_value_bytes=${SET_VALUE_BYTES:-100}

. scripts/prepare-bench.sh

run_fio() { # name, extra fio arguments...; prints the IOPS
  local name=$1
  shift
  echo "+ fio --name=$name --filename=$directory/fio.dat --size=$fio_bytes --bs=4k --ioengine=io_uring --direct=1 --time_based --runtime=$duration $*" >&2
  fio --name="$name" --filename="$directory/fio.dat" --size="$fio_bytes" --bs=4k --ioengine=io_uring \
    --direct=1 --time_based --runtime="$duration" --output-format=json "$@" >"$directory/$name.json"
  jq '[.jobs[0].read.iops, .jobs[0].write.iops] | add' "$directory/$name.json"
}

run_quill() { # label, quill bench arguments...; prints the JSON object
  local label=$1
  shift
  echo "+ $quill bench $* --duration $duration --json" >&2
  "$quill" bench "$@" --duration "$duration" --json | tee "$directory/$label.json"
}

fio_qd1=$(run_fio randread-qd1 --rw=randread --iodepth=1)
fio_qd32=$(run_fio randread-qd32 --rw=randread --iodepth=32)
fio_fsync=$(run_fio write-fsync-qd1 --rw=randwrite --iodepth=1 --fsync=1)
rm -f "$directory/fio.dat"

rm -f "$directory/get.qkv"
get_common=(--path "$directory/get.qkv" --size "$quill_bytes" --op get --keys "$get_keys" --value-size "$get_value_bytes" --cache-bytes 0)
quill_get1=$(run_quill get-c1 "${get_common[@]}" --concurrency 1)
quill_get32=$(run_quill get-c32 "${get_common[@]}" --concurrency 32 --skip-load)
rm -f "$directory/get.qkv" "$directory/set.qkv"
quill_set64=$(run_quill set-c64 --path "$directory/set.qkv" --size "$quill_bytes" --op set --keys 100000 \
  --value-size "$set_value_bytes" --concurrency 64)
rm -f "$directory/set.qkv"

ops() { jq '.ops_per_s' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
get1=$(ops "$quill_get1")
get32=$(ops "$quill_get32")
set64=$(ops "$quill_set64")
cat <<REPORT
fio randread 4 KiB QD1:        $(printf '%.0f' "$fio_qd1") IOPS
fio randread 4 KiB QD32:       $(printf '%.0f' "$fio_qd32") IOPS
fio randwrite 4 KiB+fsync QD1: $(printf '%.0f' "$fio_fsync") IOPS
quill GET  x1  (uncached):     $(printf '%.0f' "$get1") ops/s  p50 $(jq .p50_us <<<"$quill_get1") us  p99 $(jq .p99_us <<<"$quill_get1") us  p99.9 $(jq .p999_us <<<"$quill_get1") us
quill GET  x32 (uncached):     $(printf '%.0f' "$get32") ops/s  p50 $(jq .p50_us <<<"$quill_get32") us  p99 $(jq .p99_us <<<"$quill_get32") us  p99.9 $(jq .p999_us <<<"$quill_get32") us
quill SET  x64 (durable):      $(printf '%.0f' "$set64") ops/s  p50 $(jq .p50_us <<<"$quill_set64") us  p99 $(jq .p99_us <<<"$quill_set64") us  p99.9 $(jq .p999_us <<<"$quill_set64") us  $(jq .batch_records_avg <<<"$quill_set64") records/batch
GET@32 / fio QD32:             $(ratio "$get32" "$fio_qd32")   (target >= 0.9)
GET@32 / GET@1:                $(ratio "$get32" "$get1")   (target >= 4)
SET@64 / fio write+fsync:      $(ratio "$set64" "$fio_fsync")   (target >= 25)
REPORT
