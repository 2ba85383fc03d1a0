//! The cluster swarm as a test, for mutation testing of the replica (`cargo mutants -p
//! quill-replica … -- --test mutation_swarm -- --ignored`): seeds of 3 and 5 replicas through
//! `quill_sim::cluster`, a third with heavy faults, stopping at the first that fails. A plain
//! `cargo test` skips it (tests/cluster.rs runs a small swarm there).

use quill_sim::cluster::{run_cluster_seed, ClusterOptions};
use quill_sim::FaultLevel;

/// Seeds per run, unless `QUILL_MUTATION_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 120;

#[test]
#[ignore = "the swarm cargo-mutants runs; run with --ignored"]
fn mutation_swarm() {
    let seeds = std::env::var("QUILL_MUTATION_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(SEEDS_DEFAULT);
    for seed in 0..seeds {
        let faults = if seed % 3 == 2 { FaultLevel::Heavy } else { FaultLevel::Default };
        let replicas = if seed % 2 == 0 { 3 } else { 5 };
        let report = run_cluster_seed(&ClusterOptions::new(seed, 300, faults, replicas));
        if let Some(violation) = report.violation {
            panic!("seed {seed} ({replicas} replicas, {faults:?}): {violation}");
        }
    }
}
