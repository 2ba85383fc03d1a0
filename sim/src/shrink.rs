//! Shrinking a failing seed: the same seed re-run with fewer operations, fewer clients and a
//! mask over its fault decisions, keeping each reduction that still fails.

use crate::runner::{run_seed, SeedReport, SimOptions};

pub struct ShrinkResult {
    pub options: SimOptions,
    pub report: SeedReport,
    pub runs: u64,
}

/// Runs the shrink loop, within `runs_max` re-runs. `None` if the seed does not fail.
pub fn shrink(options: &SimOptions, runs_max: u64) -> Option<ShrinkResult> {
    let first = run_seed(options);
    if first.passed() {
        return None;
    }
    let mut best = ShrinkResult { options: options.clone(), report: first, runs: 1 };
    shrink_operations(&mut best, runs_max);
    shrink_clients(&mut best, runs_max);
    shrink_faults(&mut best, runs_max);
    shrink_operations(&mut best, runs_max);
    Some(best)
}

fn try_candidate(best: &mut ShrinkResult, candidate: SimOptions, runs_max: u64) -> bool {
    if best.runs >= runs_max {
        return false;
    }
    best.runs += 1;
    let report = run_seed(&candidate);
    if report.passed() {
        return false;
    }
    best.options = candidate;
    best.report = report;
    true
}

fn shrink_operations(best: &mut ShrinkResult, runs_max: u64) {
    let mut step = best.options.ops / 2;
    while step > 0 && best.runs < runs_max {
        let mut candidate = best.options.clone();
        candidate.ops = best.options.ops.saturating_sub(step).max(1);
        if !try_candidate(best, candidate, runs_max) {
            step /= 2;
        }
    }
}

fn shrink_clients(best: &mut ShrinkResult, runs_max: u64) {
    let drawn = best.report.knobs.clients;
    for clients in 1..drawn {
        let mut candidate = best.options.clone();
        candidate.clients = Some(clients);
        if try_candidate(best, candidate, runs_max) {
            return;
        }
    }
}

/// Masks fault decisions one at a time, keeping each mask that still fails.
fn shrink_faults(best: &mut ShrinkResult, runs_max: u64) {
    let decisions = best.report.fault_decisions;
    for ordinal in 1..=decisions {
        let mut candidate = best.options.clone();
        candidate.fault_mask.insert(ordinal);
        try_candidate(best, candidate, runs_max);
    }
}

/// The command that reproduces `options`.
pub fn reproduce_command(options: &SimOptions) -> String {
    let faults = match options.faults {
        crate::FaultLevel::None => "none",
        crate::FaultLevel::Default => "default",
        crate::FaultLevel::Heavy => "heavy",
    };
    let mut command = format!("quill replay --seed {} --ops {} --faults {faults}", options.seed, options.ops);
    if let Some(clients) = options.clients {
        command.push_str(&format!(" --clients {clients}"));
    }
    if let Some(family) = options.family {
        command.push_str(&format!(" --family {}", family.name()));
    }
    #[cfg(feature = "planted-bugs")]
    if let Some(bug) = options.planted_bug {
        command.push_str(&format!(" --plant {}", bug.name()));
    }
    if !options.fault_mask.is_empty() {
        let mask: Vec<String> = options.fault_mask.iter().map(u64::to_string).collect();
        command.push_str(&format!(" --fault-mask {}", mask.join(",")));
    }
    command.push_str(" --trace");
    command
}
