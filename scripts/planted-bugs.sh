#!/usr/bin/env bash
# How often the swarm catches each planted bug, per seed family and fault level: the share of
# seeds that fail with the bug switched on (`quill sim --plant`). The target is at least 5 % of
# the seeds of the bug's own family, so that a 500-seed CI swarm catches it for sure.
#
#   scripts/planted-bugs.sh [SEEDS] [OPS]      (defaults: 200 seeds of 5000 operations)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-200}
ops=${2:-5000}
cargo build --release -q -p quill-cli
quill=./target/release/quill
bugs=$($quill sim --plant list 2>&1 | sed -n 's/.*one of: \(.*\))/\1/p' | tr -d ',')
printf '%-32s %-11s %-8s %s\n' bug family faults caught
for bug in $bugs; do
  for family in standard production full_disk; do
    for faults in default heavy; do
      failed=$($quill sim --seeds "$seeds" --ops "$ops" --faults "$faults" --family "$family" --plant "$bug" --json \
        2>/dev/null | sed -n 's/.*"seeds_failed":\([0-9]*\).*/\1/p')
      printf '%-32s %-11s %-8s %s/%s\n' "$bug" "$family" "$faults" "$failed" "$seeds"
    done
  done
done
