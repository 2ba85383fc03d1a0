#!/usr/bin/env bash
# Side-by-side: fio's raw 4 KiB numbers and `quill bench` on the same storage, interleaved
# rounds (fio, quill, fio, quill, ...), medians and ratios.
#
#   scripts/bench-vs-fio.sh [DIRECTORY]
#   DEVICE=/dev/loop0 scripts/bench-vs-fio.sh [DIRECTORY]     # a raw block device (data lost)
#   LOOP=1 scripts/bench-vs-fio.sh [DIRECTORY]               # a loop device over a file there
#
# DIRECTORY (default target/bench-vs-fio) must be on the filesystem to measure. Environment:
# ROUNDS (default 3), DURATION (seconds per measurement, default 10), FIO_BYTES (fio's file,
# default 1 GiB), QUILL_BYTES (quill's data file, default 2 GiB), GET_KEYS / GET_VALUE_BYTES
# (default 1,000,000 x 1000 bytes: about 1 GiB of log, like fio's file), SET_VALUE_BYTES
# (default 100). With DEVICE or LOOP, fio and quill both use the device (fio over its first
# FIO_BYTES, quill formats it afresh each round with --reformat --force).
#
# Layout: quill's data files are written once at creation (`--preallocate write`, the default),
# and fio lays out its file by writing it: neither writes into unwritten extents.
#
# Each round also restarts a volume of RESTART_KEYS (1,000,000) x 100-byte values by a full
# scan beside fio's sequential read of the same bytes, and (on files only) measures client
# write latency over COMPACTION_DURATION (20) seconds on a file four times the live data
# (compaction running) and on one thirty times it (compaction never wanted), back to back.
#
# Targets (issue 11): GET@32 >= 0.9 x fio randread QD32; GET@32 / GET@1 >= 4; group commits
# per second >= 0.8 x fio write+fsync QD1; SET@64 >= 25 x fio write+fsync QD1; restart >= 0.5 x
# fio's sequential read; write p99 with compaction <= 1.5 x without, p99.9 <= 2 x.
set -euo pipefail
cd "$(dirname "$0")/.."

directory=${1:-target/bench-vs-fio}
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
fio_bytes=${FIO_BYTES:-$((1 << 30))}
quill_bytes=${QUILL_BYTES:-$((2 << 30))}
get_keys=${GET_KEYS:-1000000}
get_value_bytes=${GET_VALUE_BYTES:-1000}
set_value_bytes=${SET_VALUE_BYTES:-100}
restart_keys=${RESTART_KEYS:-1000000}
compaction_duration=${COMPACTION_DURATION:-20}

. scripts/prepare-bench.sh

device=${DEVICE:-}
if [[ -n ${LOOP:-} && -z $device ]]; then
  image="$directory/loop.img"
  # Written, not sparse: reads of a hole come back from no device at all.
  dd if=/dev/zero of="$image" bs=1M count=$((quill_bytes >> 20)) oflag=direct status=none
  device=$(losetup --find --show --direct-io=on "$image")
  trap 'losetup --detach "$device"; rm -f "$image"' EXIT
  echo "loop device $device over $image (direct I/O to the file)" >&2
fi
fio_target=${device:-$directory/fio.dat}
quill_target() { echo "${device:-$directory/$1.qkv}"; }
quill_fresh=()
[[ -n $device ]] && quill_fresh=(--reformat --force)

run_fio() { # name, extra fio arguments...; prints the IOPS
  local name=$1
  shift
  echo "+ fio --name=$name --filename=$fio_target --size=$fio_bytes --bs=4k --ioengine=io_uring --direct=1 --time_based --runtime=$duration $*" >&2
  fio --name="$name" --filename="$fio_target" --size="$fio_bytes" --bs=4k --ioengine=io_uring \
    --direct=1 --time_based --runtime="$duration" --output-format=json "$@" >"$directory/$name.json"
  jq '[.jobs[0].read.iops, .jobs[0].write.iops] | add' "$directory/$name.json"
}

run_quill() { # label, quill bench arguments...; prints the JSON object
  local label=$1
  shift
  echo "+ $quill bench $* --duration $duration --json" >&2
  "$quill" bench "$@" --duration "$duration" --json | tee "$directory/$label.json"
}

median() { sort -g | awk '{ values[NR] = $1 } END { print (NR % 2 ? values[(NR + 1) / 2] : (values[NR / 2] + values[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

declare -A series
record() { series[$1]+="$2 "; } # name, value

for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  record fio_qd1 "$(run_fio randread-qd1 --rw=randread --iodepth=1)"
  record fio_qd32 "$(run_fio randread-qd32 --rw=randread --iodepth=32)"
  record fio_fsync "$(run_fio write-fsync-qd1 --rw=randwrite --iodepth=1 --fsync=1)"
  [[ -z $device ]] && rm -f "$directory/fio.dat"

  get_path=$(quill_target get)
  [[ -z $device ]] && rm -f "$get_path"
  get_common=(--path "$get_path" --size "$quill_bytes" --op get --keys "$get_keys" --value-size "$get_value_bytes" --cache-bytes 0)
  get1=$(run_quill get-c1 "${get_common[@]}" "${quill_fresh[@]}" --concurrency 1)
  get32=$(run_quill get-c32 "${get_common[@]}" --concurrency 32 --skip-load)
  record get1 "$(jq .ops_per_s <<<"$get1")"
  record get32 "$(jq .ops_per_s <<<"$get32")"
  record get32_p99 "$(jq .p99_us <<<"$get32")"
  [[ -z $device ]] && rm -f "$get_path"

  set_path=$(quill_target set)
  set64=$(run_quill set-c64 --path "$set_path" --size "$quill_bytes" "${quill_fresh[@]}" --op set --keys 100000 \
    --value-size "$set_value_bytes" --concurrency 64)
  record set64 "$(jq .ops_per_s <<<"$set64")"
  record set64_p99 "$(jq .p99_us <<<"$set64")"
  record commits "$(jq '.batches / .elapsed_s' <<<"$set64")"
  record records_per_commit "$(jq .batch_records_avg <<<"$set64")"
  [[ -z $device ]] && rm -f "$set_path"

  restart_path=$(quill_target restart)
  [[ -z $device ]] && rm -f "$restart_path"
  restart=$(run_quill restart --path "$restart_path" --size "$quill_bytes" "${quill_fresh[@]}" --op set \
    --keys "$restart_keys" --value-size 100 --concurrency 64 --restart)
  record restart "$(jq .restart_full_scan_mib_per_s <<<"$restart")"
  fio --name=seqread --filename="$restart_path" --rw=read --bs=4m --iodepth=1 --direct=1 --ioengine=io_uring \
    --offset=8192 --size="$(jq .restart_full_scan_bytes_read <<<"$restart")" --output-format=json >"$directory/seqread.json"
  record fio_seqread "$(jq '.jobs[0].read.bw_bytes / 1048576' "$directory/seqread.json")"
  [[ -z $device ]] && rm -f "$restart_path"

  if [[ -z $device ]]; then
    # 50,000 keys of 1,000 bytes: about 52 MB live; overwritten at random by 64 clients.
    space=(--op set --keys 50000 --value-size 1000 --concurrency 64 --duration "$compaction_duration" --json)
    rm -f "$directory/compacting.qkv" "$directory/roomy.qkv"
    echo "+ $quill bench --path $directory/compacting.qkv --size 208000000 ${space[*]}" >&2
    compacting=$("$quill" bench --path "$directory/compacting.qkv" --size 208000000 "${space[@]}")
    echo "+ $quill bench --path $directory/roomy.qkv --size 1560000000 --space-target-percent 100000 ${space[*]}" >&2
    roomy=$("$quill" bench --path "$directory/roomy.qkv" --size 1560000000 --space-target-percent 100000 "${space[@]}")
    record compacting_p99 "$(jq .p99_us <<<"$compacting")"
    record compacting_p999 "$(jq .p999_us <<<"$compacting")"
    record compacting_moved "$(jq .records_moved <<<"$compacting")"
    record roomy_p99 "$(jq .p99_us <<<"$roomy")"
    record roomy_p999 "$(jq .p999_us <<<"$roomy")"
    rm -f "$directory/compacting.qkv" "$directory/roomy.qkv"
  fi
done

m() { tr ' ' '\n' <<<"${series[$1]}" | grep -v '^$' | median; }
show() { printf '%-34s %s  (rounds: %s)\n' "$1" "$(printf '%.0f' "$(m "$2")")" "${series[$2]% }"; }
echo "storage: ${device:-files in $directory}; $rounds interleaved rounds of ${duration} s, medians"
show "fio randread 4 KiB QD1 (IOPS)" fio_qd1
show "fio randread 4 KiB QD32 (IOPS)" fio_qd32
show "fio randwrite 4 KiB+fsync QD1" fio_fsync
show "quill GET x1 uncached (ops/s)" get1
show "quill GET x32 uncached (ops/s)" get32
show "quill GET x32 p99 (us)" get32_p99
show "quill SET x64 durable (ops/s)" set64
show "quill SET x64 p99 (us)" set64_p99
show "quill group commits per second" commits
printf '%-34s %s\n' "records per commit" "$(m records_per_commit)"
echo "GET@32 / fio QD32:                 $(ratio "$(m get32)" "$(m fio_qd32)")   (target >= 0.9)"
echo "GET@32 / GET@1:                    $(ratio "$(m get32)" "$(m get1)")   (target >= 4)"
echo "commits/s / fio write+fsync QD1:   $(ratio "$(m commits)" "$(m fio_fsync)")   (target >= 0.8)"
echo "SET@64 / fio write+fsync QD1:      $(ratio "$(m set64)" "$(m fio_fsync)")   (target >= 25)"
show "restart full scan (MiB/s)" restart
show "fio sequential read 4 MiB QD1" fio_seqread
echo "restart / fio sequential read:     $(ratio "$(m restart)" "$(m fio_seqread)")   (target >= 0.5)"
if [[ -z $device ]]; then
  show "write p99 with compaction (us)" compacting_p99
  show "write p99.9 with compaction (us)" compacting_p999
  show "records compaction moved" compacting_moved
  show "write p99 without (us)" roomy_p99
  show "write p99.9 without (us)" roomy_p999
  echo "p99 with / without compaction:     $(ratio "$(m compacting_p99)" "$(m roomy_p99)")   (target <= 1.5)"
  echo "p99.9 with / without compaction:   $(ratio "$(m compacting_p999)" "$(m roomy_p999)")   (target <= 2)"
else
  echo "compaction's latency: measured on files only (the device holds one volume of QUILL_BYTES)"
fi
