#!/usr/bin/env bash
# Space reclamation and restart figures, with fio's sequential read of the same bytes on the
# same file in the same run as the yardstick for restarts.
#
#   scripts/bench-space.sh [DIRECTORY]
#
# DIRECTORY (default target/bench-space) must be on the filesystem to measure. Environment:
#   OVERWRITE_SECONDS (default 600): the overwrite run, `quill bench --op set` over
#     OVERWRITE_KEYS (default 200,000) keys of OVERWRITE_VALUE_BYTES (default 1000) on a data
#     file four times the live data;
#   RESTART_CASES (default "1000000:100 10000000:100 1000000:1000"): KEYS:VALUE_BYTES for the
#     restart measurement (a data file eight times the live data, so a checkpoint fits);
#   SKIP_OVERWRITE=1 skips the overwrite run.
#
# Targets (issue 6): space amplification at steady state <= 2x; restart read rate >= 0.5 x
# fio's sequential-read bandwidth.
set -euo pipefail
cd "$(dirname "$0")/.."

directory=${1:-target/bench-space}
overwrite_seconds=${OVERWRITE_SECONDS:-600}
overwrite_keys=${OVERWRITE_KEYS:-200000}
overwrite_value_bytes=${OVERWRITE_VALUE_BYTES:-1000}
restart_cases=${RESTART_CASES:-"1000000:100 10000000:100 1000000:1000"}

. scripts/prepare-bench.sh
key_bytes=16 # "key:%012d"
record_header_bytes=24

# 1. Overwrites for minutes on a file four times the live data: it must never fill.
if [ "${SKIP_OVERWRITE:-0}" != 1 ]; then
live=$((overwrite_keys * (record_header_bytes + key_bytes + overwrite_value_bytes)))
size=$((4 * live))
echo "+ $quill bench --path $directory/overwrite.qkv --reformat --size $size --op set --keys $overwrite_keys --value-size $overwrite_value_bytes --concurrency 64 --duration $overwrite_seconds --json" >&2
"$quill" bench --path "$directory/overwrite.qkv" --reformat --size "$size" --op set --keys "$overwrite_keys" \
  --value-size "$overwrite_value_bytes" --concurrency 64 --duration "$overwrite_seconds" --json |
  tee "$directory/overwrite.json"
echo
jq -r '"overwrite: \(.ops) SETs in \(.elapsed_s|floor) s (\(.ops_per_s|floor)/s), \(.errors) errors; space amplification end \(.space_amplification_end*100|floor/100), max \(.space_amplification_max*100|floor/100) (target <= 2); \(.records_moved) records moved, \(.tail_advances) tail advances; log \(.log_used_bytes) of \(.log_capacity_bytes) bytes; written \(.bytes_written) bytes for \(.ops) SETs"' "$directory/overwrite.json"
fi

# 2. Restart time with and without a checkpoint, against fio reading the same bytes.
for case in $restart_cases; do
  keys=${case%%:*}
  value_bytes=${case##*:}
  live=$((keys * (record_header_bytes + key_bytes + value_bytes)))
  size=$((8 * live))
  name="$keys-$value_bytes"
  file="$directory/restart-$name.qkv"
  echo "+ $quill bench --path $file --reformat --size $size --op set --keys $keys --value-size $value_bytes --concurrency 64 --duration 5 --restart --json" >&2
  "$quill" bench --path "$file" --reformat --size "$size" --op set --keys "$keys" --value-size "$value_bytes" \
    --concurrency 64 --duration 5 --restart --json | tee "$directory/restart-$name.json"
  echo
  scan_bytes=$(jq .restart_full_scan_bytes_read "$directory/restart-$name.json")
  for shape in "4m 1" "1m 16"; do
    set -- $shape
    echo "+ fio --name=seqread --filename=$file --rw=read --bs=$1 --iodepth=$2 --direct=1 --ioengine=io_uring --offset=8192 --size=$scan_bytes" >&2
    fio --name=seqread --filename="$file" --rw=read --bs="$1" --iodepth="$2" --direct=1 --ioengine=io_uring \
      --offset=8192 --size="$scan_bytes" --output-format=json >"$directory/fio-seqread-$name-$1-qd$2.json"
    fio_mib_s=$(jq '.jobs[0].read.bw_bytes / 1048576' "$directory/fio-seqread-$name-$1-qd$2.json")
    jq -r --arg fio "$fio_mib_s" --arg shape "bs $1 QD$2" --arg value "$value_bytes" '"restart \(.restart_keys) keys of \($value) bytes: checkpoint \(.restart_checkpoint_s*1000|floor) ms (\(.restart_checkpoint_bytes_read) bytes, \(.restart_checkpoint_mib_per_s|floor) MiB/s), full scan \(.restart_full_scan_s*1000|floor) ms (\(.restart_full_scan_bytes_read) bytes, \(.restart_full_scan_mib_per_s|floor) MiB/s); fio seq read (\($shape)) \($fio|tonumber|floor) MiB/s; full-scan rate / fio = \((.restart_full_scan_mib_per_s / ($fio|tonumber))*100|floor/100) (target >= 0.5)"' "$directory/restart-$name.json"
  done
done
