//! `quill sim --replicas N`: the cluster swarm (sim/src/cluster). Each seed runs a whole
//! cluster in one process; the report counts every fault by name, the network's included.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use quill_sim::cluster::{reproduce_cluster_command, run_cluster_seed, ClusterOptions, ClusterReport};
use quill_sim::{FaultKind, FaultLedger, FaultLevel};
use serde_json::json;

/// Client operations per cluster seed unless told otherwise.
pub const CLUSTER_OPS_DEFAULT: u64 = 400;

pub struct ClusterArgs {
    pub replicas: usize,
    pub seeds: Vec<u64>,
    pub ops: u64,
    pub faults: FaultLevel,
    pub jobs: usize,
    pub check_determinism: bool,
    pub json: bool,
    pub planted_bug: Option<quill_replica::ClusterBug>,
}

struct Outcome {
    report: ClusterReport,
    determinism_mismatch: Option<(u64, u64)>,
}

pub fn run(args: ClusterArgs) -> u8 {
    let started = Instant::now();
    let progress = match args.json || !std::io::stderr().is_terminal() {
        true => indicatif::ProgressBar::hidden(),
        false => indicatif::ProgressBar::new(args.seeds.len() as u64),
    };
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(args.seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(args.seeds.len()).max(1) {
            scope.spawn(|| loop {
                let Some(&seed) = args.seeds.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                let outcome = run_one(&options(&args, seed), args.check_determinism);
                if !outcome.report.passed() || outcome.determinism_mismatch.is_some() {
                    progress.set_message(format!("seed {seed} FAILED"));
                }
                progress.inc(1);
                outcomes.lock().expect("no worker panics holding the lock").push(outcome);
            });
        }
    });
    progress.finish_and_clear();
    let mut outcomes = outcomes.into_inner().expect("workers finished");
    outcomes.sort_by_key(|outcome| outcome.report.seed);
    summarize(&args, &outcomes, started.elapsed().as_secs_f64())
}

fn options(args: &ClusterArgs, seed: u64) -> ClusterOptions {
    let mut options = ClusterOptions::new(seed, args.ops, args.faults, args.replicas);
    options.planted_bug = args.planted_bug;
    // One seed alone is a replay: keep its trace and print it.
    options.keep_trace = args.seeds.len() == 1 && !args.json;
    options
}

fn run_one(options: &ClusterOptions, check_determinism: bool) -> Outcome {
    let report = run_cluster_seed(options);
    let determinism_mismatch = check_determinism
        .then(|| run_cluster_seed(options).trace_hash)
        .filter(|again| *again != report.trace_hash)
        .map(|again| (report.trace_hash, again));
    Outcome { report, determinism_mismatch }
}

fn summarize(args: &ClusterArgs, outcomes: &[Outcome], elapsed_s: f64) -> u8 {
    let mut disk = FaultLedger::default();
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    for outcome in outcomes {
        let report = &outcome.report;
        disk.merge(&report.disk_faults);
        totals.add(report);
        if !report.passed() || outcome.determinism_mismatch.is_some() {
            failed.push(outcome);
        }
    }
    let mut faults: serde_json::Map<String, serde_json::Value> =
        FaultKind::ALL.iter().map(|kind| (kind.name().to_string(), json!(disk.count(*kind)))).collect();
    for (name, count) in totals.network_faults() {
        faults.insert(name.to_string(), json!(count));
    }
    let failed_seeds: Vec<serde_json::Value> = failed
        .iter()
        .map(|outcome| {
            let what = match (&outcome.report.violation, outcome.determinism_mismatch) {
                (Some(violation), _) => violation.clone(),
                (None, Some((first, second))) => format!("trace hash {first:#x} then {second:#x}"),
                (None, None) => unreachable!("a failed seed"),
            };
            json!({ "seed": outcome.report.seed, "what": what, "replay": reproduce_cluster_command(&options(args, outcome.report.seed)) })
        })
        .collect();
    let summary = json!({
        "replicas": args.replicas,
        "seeds_run": outcomes.len(),
        "seeds_failed": failed.len(),
        "failed_seeds": failed_seeds,
        "ops": totals.ops,
        "ticks": totals.ticks,
        "faults": faults,
        "acknowledged_writes": totals.acknowledged_writes,
        "unknown_writes": totals.unknown_writes,
        "leaders_elected": totals.leaders_elected,
        "redirects": totals.redirects,
        "keys_checked": totals.keys_checked,
        "keys_undecided": totals.keys_undecided,
        "seeds_production_config": totals.production,
        "seeds_with_truncated_logs": totals.truncated,
        "recovery_ticks_max": totals.recovery_ticks_max,
        "messages_delivered": totals.delivered,
        "determinism_checked": args.check_determinism,
        "elapsed_s": elapsed_s,
    });
    if args.json {
        println!("{summary}");
    } else {
        if let [only] = outcomes {
            for line in &only.report.trace {
                println!("{line}");
            }
        }
        for outcome in &failed {
            let seed = outcome.report.seed;
            eprintln!(
                "seed {seed} FAILED: {}",
                failed_seeds.iter().find(|f| f["seed"] == seed).map_or(String::new(), |f| f["what"].to_string())
            );
            eprintln!("  replay: {}", reproduce_cluster_command(&options(args, seed)));
        }
        println!(
            "{} seeds of {} replicas, {} failed; {} ops, {} acknowledged writes, {} unknown; {} leaders elected; \
             {} keys checked ({} undecided); {} seeds truncated their logs; recovery after heal at most {} ticks; {:.1} s",
            outcomes.len(),
            args.replicas,
            failed.len(),
            totals.ops,
            totals.acknowledged_writes,
            totals.unknown_writes,
            totals.leaders_elected,
            totals.keys_checked,
            totals.keys_undecided,
            totals.truncated,
            totals.recovery_ticks_max,
            elapsed_s
        );
        let listed: Vec<String> = faults.iter().map(|(name, count)| format!("{name} {count}")).collect();
        println!("faults: {}", listed.join(", "));
    }
    u8::from(!failed.is_empty())
}

#[derive(Default)]
struct Totals {
    ops: u64,
    ticks: u64,
    acknowledged_writes: u64,
    unknown_writes: u64,
    leaders_elected: u64,
    redirects: u64,
    keys_checked: u64,
    keys_undecided: u64,
    production: u64,
    truncated: u64,
    recovery_ticks_max: u64,
    delivered: u64,
    crashes: u64,
    halts: u64,
    dropped: u64,
    duplicated: u64,
    reordered: u64,
    cut: u64,
    heals: u64,
    partitions: std::collections::BTreeMap<&'static str, u64>,
}

impl Totals {
    fn add(&mut self, report: &ClusterReport) {
        self.ops += report.ops;
        self.ticks += report.ticks;
        self.acknowledged_writes += report.acknowledged_writes;
        self.unknown_writes += report.unknown_writes;
        self.leaders_elected += report.leaders_elected;
        self.redirects += report.redirects;
        self.keys_checked += report.keys_checked;
        self.keys_undecided += report.keys_undecided;
        self.production += u64::from(report.production_config);
        self.truncated += u64::from(report.log_first_index_max > 1);
        self.recovery_ticks_max = self.recovery_ticks_max.max(report.recovery_ticks);
        self.delivered += report.network.delivered;
        self.crashes += report.crashes;
        self.halts += report.halts;
        self.dropped += report.network.dropped;
        self.duplicated += report.network.duplicated;
        self.reordered += report.network.reordered;
        self.cut += report.network.cut;
        self.heals += report.network.heals;
        for (kind, count) in &report.network.partitions {
            *self.partitions.entry(kind.name()).or_insert(0) += count;
        }
    }

    fn network_faults(&self) -> Vec<(&'static str, u64)> {
        let mut faults = vec![
            ("replica_crash", self.crashes),
            ("replica_halt", self.halts),
            ("message_dropped", self.dropped),
            ("message_duplicated", self.duplicated),
            ("message_reordered", self.reordered),
            ("message_cut_by_partition", self.cut),
            ("partition_heal", self.heals),
        ];
        for kind in ["partition_symmetric", "partition_asymmetric", "partition_bridge"] {
            faults.push((kind, self.partitions.get(kind).copied().unwrap_or(0)));
        }
        faults
    }
}
