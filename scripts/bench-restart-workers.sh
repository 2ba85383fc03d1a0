#!/usr/bin/env bash
# Restart by full scan with the index in one piece filled on the engine's thread (the default)
# and in PARTITIONS partitions filled by worker threads (`--index-partitions`), in interleaved
# rounds, beside fio's sequential read of
# the same bytes of the same file; medians and the ratio to fio (issue 11: >= 0.5).
#
#   scripts/bench-restart-workers.sh [DIRECTORY]
#
# Environment: ROUNDS (3), KEYS (1,000,000), VALUE_BYTES (100), SIZE (data file, 2 GiB),
# PARTITIONS (index partitions of the workers' runs, default 2), DEVICE (a block device to use
# instead of a file, formatted afresh each run: its data is lost). A loop device over a file in
# /dev/shm takes the disk out and shows the CPU's limit. BASE (another quill binary, e.g. an
# older build): also run it, as mode "base", in the same rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

directory=${1:-target/bench-restart-workers}
rounds=${ROUNDS:-3}
keys=${KEYS:-1000000}
value_bytes=${VALUE_BYTES:-100}
size=${SIZE:-$((2 << 30))}
partitions=${PARTITIONS:-2}

. scripts/prepare-bench.sh

median() { sort -g | awk '{ values[NR] = $1 } END { print (NR % 2 ? values[(NR + 1) / 2] : (values[NR / 2] + values[NR / 2 + 1]) / 2) }'; }
declare -A series
record() { series[$1]+="$2 "; }

file=${DEVICE:-$directory/restart.qkv}
fresh=()
[[ -n ${DEVICE:-} ]] && fresh=(--reformat --force)
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  modes=(in-place workers ${BASE:+base})
  ((round % 2 == 0)) && modes=(${BASE:+base} workers in-place)
  for mode in "${modes[@]}"; do
    flags=()
    binary=$quill
    [[ $mode == workers ]] && flags=(--index-partitions "$partitions")
    [[ $mode == base ]] && { binary=$BASE; flags=(); }
    [[ -z ${DEVICE:-} ]] && rm -f "$file"
    report=$("$binary" bench --path "$file" "${fresh[@]}" --size "$size" --op set --keys "$keys" --value-size "$value_bytes" \
      --concurrency 64 --duration 5 --restart --json "${flags[@]}")
    record "$mode" "$(jq .restart_full_scan_mib_per_s <<<"$report")"
    record "$mode-checkpoint" "$(jq .restart_checkpoint_mib_per_s <<<"$report")"
    scan_bytes=$(jq .restart_full_scan_bytes_read <<<"$report")
  done
  for shape in 4m:1 1m:16; do
    fio --name=seqread --filename="$file" --rw=read --bs="${shape%:*}" --iodepth="${shape#*:}" --direct=1 \
      --ioengine=io_uring --offset=8192 --size="$scan_bytes" --output-format=json >"$directory/fio.json"
    record "fio-$shape" "$(jq '.jobs[0].read.bw_bytes / 1048576' "$directory/fio.json")"
  done
  [[ -z ${DEVICE:-} ]] && rm -f "$file"
done

show() { printf '%-52s %10.0f   (rounds: %s)\n' "$1" "$(tr ' ' '\n' <<<"${series[$2]}" | grep . | median)" "${series[$2]}"; }
echo "restart of $keys keys x $value_bytes bytes, median of $rounds rounds (MiB/s)"
show "fio sequential read, 4 MiB QD1" fio-4m:1
show "fio sequential read, 1 MiB QD16" fio-1m:16
show "full scan, index filled in place" in-place
show "full scan, index filled by worker threads" workers
show "from the checkpoint, in place" in-place-checkpoint
show "from the checkpoint, workers" workers-checkpoint
[[ -n ${BASE:-} ]] && show "full scan, $BASE" base
# The faster of fio's two shapes is the yardstick.
fio=$(for shape in fio-4m:1 fio-1m:16; do tr ' ' '\n' <<<"${series[$shape]}" | grep . | median; done | sort -g | tail -1)
for mode in in-place workers ${BASE:+base}; do
  value=$(tr ' ' '\n' <<<"${series[$mode]}" | grep . | median)
  awk -v a="$value" -v b="$fio" -v m="$mode" 'BEGIN { printf "full scan %s / fio: %.2f (target >= 0.5)\n", m, a / b }'
done
