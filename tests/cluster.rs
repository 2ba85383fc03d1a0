//! The cluster simulator (`quill sim --replicas N`): small swarms of 3 and 5 replicas pass and
//! are deterministic, they inject every kind of network fault, each planted cluster bug fails
//! at least 5 % of the seeds, and the seeds of the bug the simulator found stay fixed.

use quill_replica::ClusterBug;
use quill_sim::cluster::{run_cluster_seed, ClusterOptions, ClusterReport};
use quill_sim::FaultLevel;

const OPS: u64 = 300;

fn run(seed: u64, replicas: usize, faults: FaultLevel, bug: Option<ClusterBug>) -> ClusterReport {
    let mut options = ClusterOptions::new(seed, OPS, faults, replicas);
    options.planted_bug = bug;
    run_cluster_seed(&options)
}

fn swarm(replicas: usize, faults: FaultLevel, seeds: u64) -> Vec<ClusterReport> {
    (0..seeds)
        .map(|seed| {
            let report = run(seed, replicas, faults, None);
            assert!(report.passed(), "seed {seed} of {replicas} replicas ({faults:?}) failed: {:?}", report.violation);
            let again = run(seed, replicas, faults, None);
            assert_eq!(report.trace_hash, again.trace_hash, "seed {seed} of {replicas} replicas is not deterministic");
            report
        })
        .collect()
}

#[test]
fn clusters_of_three_and_five_pass_deterministically_under_every_network_fault() {
    let mut reports = swarm(3, FaultLevel::Default, 40);
    reports.extend(swarm(3, FaultLevel::Heavy, 20));
    reports.extend(swarm(5, FaultLevel::Default, 20));
    let total = |count: fn(&ClusterReport) -> u64| reports.iter().map(count).sum::<u64>();
    assert!(total(|r| r.acknowledged_writes) > 10_000);
    assert!(total(|r| r.crashes) > 0 && total(|r| r.halts) > 0);
    assert!(total(|r| r.network.dropped) > 0 && total(|r| r.network.duplicated) > 0);
    assert!(total(|r| r.network.reordered) > 0 && total(|r| r.network.heals) > 0);
    for kind in [
        quill_sim::cluster::PartitionKind::Symmetric,
        quill_sim::cluster::PartitionKind::Asymmetric,
        quill_sim::cluster::PartitionKind::Bridge,
    ] {
        let partitions: u64 = reports.iter().map(|r| r.network.partitions.get(&kind).copied().unwrap_or(0)).sum();
        assert!(partitions > 0, "no {kind:?} partition in the swarm");
    }
    assert!(total(|r| r.leaders_elected) > reports.len() as u64, "leaders change");
    assert!(reports.iter().any(|r| r.production_config), "the production configuration runs");
}

/// `ack-before-majority` is judged at heavy faults: since a read waits for every write in the
/// log when it arrives, an early acknowledgement shows only when the leader then fails before
/// the write commits (2.75 % of default seeds of 3 replicas, 11 % of heavy ones).
#[test]
fn each_planted_cluster_bug_fails_at_least_five_percent_of_seeds() {
    const SEEDS: u64 = 100;
    for (bug, faults) in [
        (ClusterBug::AckBeforeMajority, FaultLevel::Heavy),
        (ClusterBug::ApplyBeforeCommit, FaultLevel::Default),
        (ClusterBug::VoteSentBeforePersisted, FaultLevel::Default),
        (ClusterBug::FollowerServesReads, FaultLevel::Default),
    ] {
        let failed = (0..SEEDS).filter(|&seed| !run(seed, 3, faults, Some(bug)).passed()).count();
        eprintln!("{bug:?} ({faults:?}): {failed} of {SEEDS} seeds fail");
        assert!(failed as u64 * 100 >= 5 * SEEDS, "{bug:?} failed only {failed} of {SEEDS} seeds");
    }
}

/// The simulator's first cluster find: applies pipelined one EXEC per entry let a later entry's
/// applied index pass one whose EXEC failed (a read error), and a restart skipped it. Kept as
/// the planted bug `apply-passes-failed-entry`; these heavy seeds (400 ops, as `quill sim
/// --replicas 3 --faults heavy` runs them) fail with it and pass without. Redraw them when the
/// cluster simulator's draws change: `quill sim --replicas 3 --seeds 800 --faults heavy
/// --plant-cluster apply-passes-failed-entry`.
#[test]
fn the_seeds_that_found_the_skipped_apply_fail_with_it_and_pass_without() {
    for seed in [7, 55, 83] {
        let mut options = ClusterOptions::new(seed, 400, FaultLevel::Heavy, 3);
        assert!(run_cluster_seed(&options).passed(), "seed {seed} passes");
        options.planted_bug = Some(ClusterBug::ApplyPassesFailedEntry);
        let report = run_cluster_seed(&options);
        assert!(!report.passed(), "seed {seed} fails with the skipped apply");
        eprintln!("seed {seed}: {}", report.violation.unwrap_or_default());
    }
}

/// The fourth find: a log truncated right at the lowest `matched` index made a leader need a
/// snapshot for a replica that restarted with a replaced tail. The margin fixed it; the old way
/// is the planted bug `truncate-without-margin`, which this seed (5 replicas, heavy, 400 ops)
/// still meets. Redraw with `quill sim --replicas 5 --seeds 400 --faults heavy --plant-cluster
/// truncate-without-margin` when the draws change.
#[test]
fn the_seed_that_meets_a_truncation_without_margin_fails_with_it_and_passes_without() {
    let mut options = ClusterOptions::new(226, 400, FaultLevel::Heavy, 5);
    assert!(run_cluster_seed(&options).passed(), "seed 226 passes");
    options.planted_bug = Some(ClusterBug::TruncateWithoutMargin);
    let violation = run_cluster_seed(&options).violation.expect("seed 226 fails without the margin");
    assert!(violation.contains("a snapshot at index"), "{violation}");
}
