#!/usr/bin/env bash
# Mutation testing of the engine with the simulation swarm as its only test.
#
# cargo-mutants changes core/src/engine and core/src/format one small edit at a time (a
# condition negated, an operator swapped, a function body replaced) and runs
# tests/mutation_swarm.rs — a few hundred seeds through quill_sim in an optimized profile,
# nothing from `cargo test` — against each. A mutant the swarm does not fail is a blind spot of
# the simulator, until shown equivalent (docs/simulation.md lists those). Not part of CI: the
# whole set takes hours on two cores; `--shard K/N` runs one N-th of it (a random sample).
#
#   scripts/mutants.sh                      # every mutant
#   scripts/mutants.sh --shard 0/16         # one sixteenth
#   QUILL_MUTATION_SEEDS=500 scripts/mutants.sh -F 'space.rs'
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
export QUILL_MUTATION_SEEDS=${QUILL_MUTATION_SEEDS:-300}
status=0
cargo mutants -p quill-core -f 'core/src/engine/**' -f 'core/src/format/**' \
  --profile mutants --output target/mutants "$@" \
  -- --test mutation_swarm -- --ignored || status=$? # 2: some mutants missed; 3: some timed out
# The counts: caught, missed, unviable, timeout; and the score over viable mutants.
out=target/mutants/mutants.out
caught=$(wc -l < "$out/caught.txt"); missed=$(wc -l < "$out/missed.txt")
unviable=$(wc -l < "$out/unviable.txt"); timeout=$(wc -l < "$out/timeout.txt")
echo "caught $caught, missed $missed, unviable $unviable, timed out $timeout"
echo "score (caught + timed out) / viable: $(( 100 * (caught + timeout) / (caught + missed + timeout) )) %"
exit $(( status == 2 || status == 3 ? 0 : status ))
