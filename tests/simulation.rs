//! The simulator as a test: regression seeds, determinism, a trace snapshot and a small swarm.

use quill_sim::{run_seed, FaultKind, FaultLevel, SimOptions};

fn regression_seeds() -> Vec<SimOptions> {
    quill_sim::parse_seed_list(include_str!("regressions/seeds.txt")).expect("a well-formed seed list")
}

#[test]
fn seeds_that_once_failed_pass() {
    let seeds = regression_seeds();
    assert!(seeds.len() >= 6);
    for options in seeds {
        let report = run_seed(&options);
        assert!(report.passed(), "seed {}: {:?}", options.seed, report.violation);
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [1, 2, 3, 99] {
        let options = SimOptions::new(seed, 1_000, FaultLevel::Heavy);
        let (first, second) = (run_seed(&options), run_seed(&options));
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.ops, second.ops);
        assert!(first.trace_events > 1_000);
    }
    let other = run_seed(&SimOptions::new(4, 1_000, FaultLevel::Heavy));
    assert_ne!(other.trace_hash, run_seed(&SimOptions::new(1, 1_000, FaultLevel::Heavy)).trace_hash);
}

#[test]
fn a_short_seed_trace_is_stable() {
    let mut options = SimOptions::new(7, 12, FaultLevel::Default);
    options.keep_trace = true;
    let report = run_seed(&options);
    assert!(report.passed());
    insta::assert_snapshot!(report.trace.join("\n"));
}

#[test]
fn a_small_swarm_passes_and_injects_every_fault_kind() {
    let mut ledger = quill_sim::FaultLedger::default();
    for seed in 0..120 {
        let report = run_seed(&SimOptions::new(seed, 1_500, FaultLevel::Heavy));
        assert!(report.passed(), "seed {seed}: {:?}", report.violation);
        ledger.merge(&report.ledger);
    }
    for kind in FaultKind::ALL {
        assert!(ledger.count(kind) > 0, "{} never injected", kind.name());
    }
}

#[test]
fn the_swarm_compacts_wraps_checkpoints_and_deletes_heavily() {
    let mut totals = quill_sim::space::SpaceTotals::default();
    let (mut compacted, mut delete_heavy, mut within_target, mut from_checkpoint) = (0, 0, 0, 0);
    for seed in 1000..1060 {
        let report = run_seed(&SimOptions::new(seed, 3_000, FaultLevel::Default));
        assert!(report.passed(), "seed {seed}: {:?}", report.violation);
        compacted += u32::from(report.space.tail_advances > 0);
        delete_heavy += u32::from(report.knobs.delete_heavy && report.space.tail_advances > 0);
        within_target += u32::from(report.space.ended_within_target);
        from_checkpoint += u32::from(report.space.checkpoints_loaded > 0);
        totals.merge(&report.space);
    }
    assert!(compacted >= 40, "only {compacted} of 60 seeds moved the log's tail");
    assert!(delete_heavy >= 3, "only {delete_heavy} delete-heavy seeds compacted");
    assert!(within_target >= 40, "only {within_target} seeds ended within their space target");
    assert!(from_checkpoint >= 5, "only {from_checkpoint} seeds restarted from a checkpoint");
    assert!(totals.records_moved > 0 && totals.checkpoints_written > 0);
    assert!(totals.crashes_while_compacting > 0, "no crash hit compaction at work");
}
