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
    printf '%-28s %s\n' "$label" "$("$quill" sim --json --jobs "${JOBS:-2}" "$@" | sed -n 's/.*"swarm_trace_hash":"\([0-9a-f]*\)".*/\1/p')"
}
run "faults none" --seeds "$seeds" --ops "$ops" --faults none
run "faults default" --seeds "$seeds" --ops "$ops"
run "faults heavy" --seeds "$seeds" --ops "$ops" --faults heavy
for family in standard production full_disk value_domains ring_edge; do
    run "family $family" --seeds $((seeds / 4)) --ops "$ops" --family "$family"
done
run "regression seeds" --seeds-file tests/regressions/seeds.txt
