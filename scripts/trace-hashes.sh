#!/usr/bin/env bash
# The safety net of a behaviour-preserving refactor: one swarm trace hash per configuration
# (faults none/default/heavy, every family, the publish-cache view, crash images). Run it before
# and after a change and diff the output; any line that differs names the configuration whose
# behaviour changed.
set -euo pipefail
cd "$(dirname "$0")/.."
quill=${QUILL:-./target/release/quill}
seeds=${SEEDS:-1000}
ops=${OPS:-1500}
run() {
    local label=$1
    shift
    printf '%-28s %s\n' "$label" "$("$quill" sim --json --jobs "${JOBS:-2}" "$@" 2>/dev/null | sed -n 's/.*"swarm_trace_hash":"\([0-9a-f]*\)".*/\1/p')"
}
run "faults none" --seeds "$seeds" --ops "$ops" --faults none
run "faults default" --seeds "$seeds" --ops "$ops"
run "faults heavy" --seeds "$seeds" --ops "$ops" --faults heavy
for family in standard production full_disk value_domains ring_edge; do
    run "family $family" --seeds $((seeds / 4)) --ops "$ops" --family "$family"
done
run "regression seeds" --seeds-file tests/regressions/seeds.txt
for bug in ack-before-sync overwrite-tail-block skip-read-checksum truncate-at-first-bad-batch skip-checkpoint-data \
    retry-sync-after-failure read-only-keeps-pending-writes compaction-ignores-low-space; do
    run "plant $bug" --seeds $((seeds / 10)) --ops "$ops" --plant "$bug"
done
# Crash-image mode has no trace hash; its counts (minus the time) stand in for one.
printf '%-28s %s\n' "crash images" "$("$quill" sim --json --crash-images --seeds 8 --ops 300 --crash-points-max 10 \
    --images-per-point 8 2>/dev/null | sed 's/"elapsed_s":[0-9.e-]*,//')"
