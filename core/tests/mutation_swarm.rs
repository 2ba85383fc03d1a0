//! The swarm as a test, for mutation testing (`scripts/mutants.sh` runs cargo-mutants with this
//! as its only test, in an optimized profile): a few hundred seeds through `quill_sim`, across
//! families and fault levels, stopping at the first that fails. A plain `cargo test` skips it
//! (the regression seeds and the small swarm in `simulation.rs` cover the same ground there).

use quill_sim::{run_seed, FaultLevel, SimOptions};

/// The regression seeds too: each found a bug once, often with a family forced.
fn regression_seeds() -> Vec<SimOptions> {
    quill_sim::parse_seed_list(include_str!("../../tests/regressions/seeds.txt")).expect("a well-formed seed list")
}

/// Seeds per run, unless `QUILL_MUTATION_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 300;
const OPS: u64 = 3_000;

#[test]
#[ignore = "the swarm cargo-mutants runs (scripts/mutants.sh); run with --ignored"]
fn mutation_swarm() {
    let seeds = std::env::var("QUILL_MUTATION_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(SEEDS_DEFAULT);
    for options in regression_seeds() {
        if let Some(violation) = run_seed(&options).violation {
            panic!(
                "regression seed {}: {} (expected {}, got {})",
                options.seed, violation.what, violation.expected, violation.got
            );
        }
    }
    for seed in 0..seeds {
        // A third heavy: the fault paths need their rates.
        let faults = if seed % 3 == 2 { FaultLevel::Heavy } else { FaultLevel::Default };
        let report = run_seed(&SimOptions::new(seed, OPS, faults));
        if let Some(violation) = report.violation {
            panic!(
                "seed {seed} ({faults:?}): {} (key {:?}, expected {}, got {})",
                violation.what, violation.key, violation.expected, violation.got
            );
        }
    }
}
