#!/usr/bin/env bash
# Simulated operations per second per core: one worker thread, a fixed swarm, default faults.
# A benchmark, not a test: the target is >= 250,000 simulated operations per second per core.
# Prints the figure beside the one recorded in docs/benchmarks.md, so a regression shows.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p quill-cli --quiet
seeds=${SEEDS:-200}
ops=${OPS:-10000}
echo "quill sim --seeds $seeds --ops $ops --jobs 1 --json"
./target/release/quill sim --seeds "$seeds" --ops "$ops" --jobs 1 --json > target/sim-speed.json
python3 - <<'PY'
import json
result = json.load(open("target/sim-speed.json"))
per_seed_ms = 1000 * result["elapsed_s"] / result["seeds_run"]
print("%d ops in %.2f s on one core: %.0f simulated ops/s; %.1f ms per %d-op seed; %d failed"
      % (result["ops"], result["elapsed_s"], result["ops_per_s"], per_seed_ms,
         result["ops"] // result["seeds_run"], result["seeds_failed"]))
import re
recorded = re.search(r"recorded: (\d+) simulated ops/s", open("docs/benchmarks.md").read())
if recorded:
    print("recorded in docs/benchmarks.md: %s ops/s; this run: %.2fx of it (the machine is shared: rerun before concluding)"
          % (recorded.group(1), result["ops_per_s"] / int(recorded.group(1))))
PY
