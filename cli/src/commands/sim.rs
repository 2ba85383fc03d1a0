//! `quill sim`, `quill replay`, `quill shrink`: the simulation swarm and its tools.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use quill_core::engine::PlantedBug;
use quill_sim::{
    reproduce_command, run_seed, Family, FaultKind, FaultLedger, FaultLevel, Outcome, SeedReport, SimOptions,
};
use serde_json::json;

use super::common::EXIT_USAGE;

/// Operations per seed unless told otherwise.
pub const OPS_DEFAULT: u64 = 5_000;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Run this one seed.
    #[arg(long, conflicts_with_all = ["seeds", "seeds_file"])]
    seed: Option<u64>,
    /// Run the seeds listed in this file, one `seed ops faults [family]` per line (the format of
    /// tests/regressions/seeds.txt); each keeps its own ops, faults and family.
    #[arg(long, conflicts_with = "seeds")]
    seeds_file: Option<std::path::PathBuf>,
    /// Run this many seeds, from --start.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Client operations per seed (default 5,000; 400 with --replicas).
    #[arg(long)]
    ops: Option<u64>,
    /// Worker threads (seeds are independent). Default: one per core.
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only shard I of N (I from 0): seeds whose index modulo N is I.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// Fault injection: none, default or heavy.
    #[arg(long, default_value = "default")]
    faults: FaultLevel,
    /// Run every seed twice and compare the trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Print one JSON object at the end (and no progress bar).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    variant: Variant,
    #[command(flatten)]
    crash_images: super::crash_images::CrashImageArgs,
    /// Simulate a cluster of this many replicas (raft-rs, each over two simulated disks, a
    /// faulty network between them) instead of one engine. --ops then defaults to 400.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=9))]
    replicas: Option<u64>,
    /// With --replicas: switch on a planted cluster bug (ack-before-majority,
    /// apply-before-commit, vote-sent-before-persisted, follower-serves-reads).
    #[arg(long, requires = "replicas", value_parser = parse_cluster_bug)]
    plant_cluster: Option<quill_replica::ClusterBug>,
}

fn parse_cluster_bug(text: &str) -> Result<quill_replica::ClusterBug, String> {
    quill_replica::ClusterBug::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = quill_replica::ClusterBug::ALL.iter().map(|bug| bug.name()).collect();
        format!("unknown cluster bug; one of: {}", names.join(", "))
    })
}

/// What to run besides the seed's own draws: a family forced on every seed, a planted bug.
#[derive(clap::Args, Clone, Default)]
pub struct Variant {
    /// Run every seed in this family instead of its own: standard, production, full_disk,
    /// value_domains or ring_edge.
    #[arg(long)]
    family: Option<Family>,
    /// A demonstration: switch on a deliberately planted engine bug and watch the simulator
    /// catch it (for example ack-before-sync). Off by default.
    #[arg(long)]
    plant: Option<PlantedBug>,
}

impl Variant {
    pub fn options(&self, seed: u64, ops: u64, faults: FaultLevel) -> SimOptions {
        self.apply(SimOptions::new(seed, ops, faults))
    }

    /// Forces this variant's family (if any) and planted bug on `options`.
    pub fn apply(&self, mut options: SimOptions) -> SimOptions {
        options.family = self.family.or(options.family);
        options.planted_bug = self.plant;
        options
    }
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (index, count) = text.split_once('/').ok_or("expected I/N, for example 0/4")?;
    let index: u64 = index.parse().map_err(|_| "I must be a number")?;
    let count: u64 = count.parse().map_err(|_| "N must be a number")?;
    if count == 0 || index >= count {
        return Err("need 0 <= I < N".into());
    }
    Ok((index, count))
}

/// One seed's run, as `replay` and `shrink` name it.
#[derive(clap::Args)]
pub struct OneSeed {
    /// The seed to run (from a swarm's report or a regression list).
    #[arg(long)]
    seed: u64,
    /// Client operations, as the seed first ran.
    #[arg(long, default_value_t = OPS_DEFAULT)]
    ops: u64,
    /// Fault injection, as the seed first ran: none, default or heavy.
    #[arg(long, default_value = "default")]
    faults: FaultLevel,
    #[command(flatten)]
    variant: Variant,
}

impl OneSeed {
    fn options(&self) -> SimOptions {
        self.variant.options(self.seed, self.ops, self.faults)
    }
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    run: OneSeed,
    /// Override the seed's drawn client count.
    #[arg(long)]
    clients: Option<usize>,
    /// Fault decisions to skip, by ordinal (from `quill shrink`).
    #[arg(long, value_delimiter = ',')]
    fault_mask: Vec<u64>,
    /// Print the event trace.
    #[arg(long)]
    trace: bool,
    /// Replay one crash image (from `quill sim --crash-images`): crash point and image number.
    #[arg(long, value_parser = super::crash_images::parse_image)]
    crash_image: Option<(u64, u64)>,
    /// The per-point image bound the crash-image run used.
    #[arg(long, default_value_t = 64)]
    images_per_point: u64,
}

#[derive(clap::Args)]
pub struct ShrinkArgs {
    #[command(flatten)]
    run: OneSeed,
    /// Re-runs allowed.
    #[arg(long, default_value_t = 400)]
    runs: u64,
}

/// A seed's result in the swarm.
struct SeedResult {
    options: SimOptions,
    report: SeedReport,
    determinism_mismatch: Option<(u64, u64)>,
}

/// Each seed frees its disk image and batch buffers and the next allocates them again: with
/// mimalloc's default, freed memory goes back to the OS after a second and comes back as fresh
/// pages the kernel must zero (`clear_page_erms` took 10-20 % of a swarm's time). The swarm
/// keeps it instead (`purge_delay` -1): page faults over 60 seeds fell from 11,621 to 252.
fn keep_freed_memory() {
    // mimalloc.h's `mi_option_purge_delay` (the Rust bindings do not name it); set only if it
    // holds its documented default, so a renumbered option is left alone.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const PURGE_DELAY_DEFAULT_MS: std::os::raw::c_long = 1000;
    // SAFETY: reading and setting an allocator option; both take plain integers.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT_MS {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}

pub fn run(args: SimArgs) -> u8 {
    keep_freed_memory();
    let runs = match seed_list(&args) {
        Ok(runs) if !runs.is_empty() => runs,
        Ok(_) => {
            eprintln!("quill sim: no seeds to run (--seeds 0, an empty --seeds-file, or a shard with no seeds)");
            return EXIT_USAGE;
        }
        Err(message) => {
            eprintln!("quill sim: {message}");
            return EXIT_USAGE;
        }
    };
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |count| count.get())).max(1);
    if let Some(replicas) = args.replicas {
        let seeds = runs.iter().map(|options| options.seed).collect();
        return super::sim_cluster::run(super::sim_cluster::ClusterArgs {
            replicas: replicas as usize,
            seeds,
            ops: args.ops.unwrap_or(super::sim_cluster::CLUSTER_OPS_DEFAULT),
            faults: args.faults,
            jobs,
            check_determinism: args.check_determinism,
            json: args.json,
            planted_bug: args.plant_cluster,
        });
    }
    if args.crash_images.crash_images {
        return super::crash_images::run(&runs, &args.crash_images, jobs, args.json);
    }
    let progress = progress_bar(runs.len() as u64, args.json);
    let started = Instant::now();
    let results = run_swarm(&runs, &args, jobs, &progress);
    progress.finish_and_clear();
    let elapsed_s = started.elapsed().as_secs_f64();
    summarize(&args, &results, elapsed_s)
}

/// The runs: from --seed, --seeds-file or --seeds/--start, then the shard's share.
fn seed_list(args: &SimArgs) -> Result<Vec<SimOptions>, String> {
    let all: Vec<SimOptions> = match (&args.seeds_file, args.seed) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
            let listed = quill_sim::parse_seed_list(&text).map_err(|error| format!("{}: {error}", path.display()))?;
            listed.into_iter().map(|listed| args.variant.apply(listed)).collect()
        }
        (None, Some(seed)) => vec![args.variant.options(seed, args.ops.unwrap_or(OPS_DEFAULT), args.faults)],
        (None, None) => (args.start..args.start.saturating_add(args.seeds))
            .map(|seed| args.variant.options(seed, args.ops.unwrap_or(OPS_DEFAULT), args.faults))
            .collect(),
    };
    Ok(match args.shard {
        Some((index, count)) => all
            .into_iter()
            .enumerate()
            .filter(|(position, _)| *position as u64 % count == index)
            .map(|(_, options)| options)
            .collect(),
        None => all,
    })
}

fn progress_bar(length: u64, json: bool) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {elapsed} (eta {eta}) {msg}");
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

fn run_swarm(runs: &[SimOptions], args: &SimArgs, jobs: usize, progress: &indicatif::ProgressBar) -> Vec<SeedResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(runs.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(runs.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(options) = runs.get(index) else { break };
                let seed = options.seed;
                let result = run_one(options, args);
                if !result.report.passed() || result.determinism_mismatch.is_some() {
                    progress.set_message(format!("seed {seed} FAILED"));
                }
                progress.inc(1);
                results.lock().expect("no worker panics while holding the lock").push(result);
            });
        }
    });
    let mut results = results.into_inner().expect("workers finished");
    results.sort_by_key(|result| (result.report.seed, result.options.ops));
    results
}

fn run_one(options: &SimOptions, args: &SimArgs) -> SeedResult {
    let report = run_seed(options);
    let determinism_mismatch = if args.check_determinism {
        let again = run_seed(options);
        (again.trace_hash != report.trace_hash).then_some((report.trace_hash, again.trace_hash))
    } else {
        None
    };
    SeedResult { options: options.clone(), report, determinism_mismatch }
}

fn summarize(args: &SimArgs, results: &[SeedResult], elapsed_s: f64) -> u8 {
    let mut ledger = FaultLedger::default();
    let (mut ops, mut ticks, mut crashes, mut detections) = (0, 0, 0, 0);
    let mut space = quill_sim::space::SpaceTotals::default();
    let (mut space_endings, mut seeds_compacted, mut seeds_checkpointed) = ([0u64; 3], 0u64, 0u64);
    let mut seeds_delete_heavy = 0u64;
    let mut failed = Vec::new();
    for result in results {
        ledger.merge(&result.report.ledger);
        ops += result.report.ops;
        space.merge(&result.report.space);
        space_endings[0] += u64::from(result.report.space.ended_within_target);
        space_endings[1] += u64::from(result.report.space.ended_paused);
        space_endings[2] += u64::from(result.report.space.ended_halted);
        seeds_compacted += u64::from(result.report.space.tail_advances > 0);
        seeds_delete_heavy += u64::from(result.report.knobs.delete_heavy);
        seeds_checkpointed += u64::from(result.report.space.checkpoints_loaded > 0);
        ticks += result.report.ticks;
        crashes += result.report.crashes;
        detections += u64::from(result.report.stopped_by_detection.is_some());
        if !result.report.passed() || result.determinism_mismatch.is_some() {
            failed.push(result);
        }
    }
    for result in &failed {
        print_failure(result, args);
    }
    let faults: serde_json::Map<String, serde_json::Value> =
        FaultKind::ALL.iter().map(|kind| (kind.name().to_string(), json!(ledger.count(*kind)))).collect();
    let outcomes: serde_json::Map<String, serde_json::Value> = Outcome::ALL
        .iter()
        .map(|outcome| (outcome.name().to_string(), json!(ledger.outcomes.get(outcome).copied().unwrap_or(0))))
        .collect();
    // Each failing seed with what reproduces it, so a merged fleet report is actionable.
    let failed_seeds: Vec<serde_json::Value> = failed
        .iter()
        .map(|result| {
            json!({
                "seed": result.report.seed,
                "ops": result.options.ops,
                "faults": fault_name(result.options.faults),
                "family": result.options.family.map(|family| family.name()),
                "what": result.report.violation.as_ref().map(|violation| violation.what.clone()),
                "replay": reproduce_command(&result.options),
            })
        })
        .collect();
    let summary = json!({
        "seeds_run": results.len(),
        "seeds_failed": failed.len(),
        "failed_seeds": failed_seeds,
        "ops": ops,
        "ticks": ticks,
        "crashes": crashes,
        "faults": faults,
        "faults_total": ledger.total(),
        "faults_detected": ledger.outcomes.get(&Outcome::Detected).copied().unwrap_or(0),
        "fault_outcomes": outcomes,
        "seeds_stopped_by_detection": detections,
        "compaction": {
            "seeds_with_tail_advance": seeds_compacted,
            "seeds_restarted_from_checkpoint": seeds_checkpointed,
            "seeds_delete_heavy": seeds_delete_heavy,
            "tail_advances": space.tail_advances,
            "records_moved": space.records_moved,
            "checkpoints_written": space.checkpoints_written,
            "checkpoints_loaded": space.checkpoints_loaded,
            "checkpoints_rejected": space.checkpoints_rejected,
            "crashes_while_compacting": space.crashes_while_compacting,
            "crashes_while_checkpointing": space.crashes_while_checkpointing,
            "seeds_ended_within_target": space_endings[0],
            "seeds_ended_paused": space_endings[1],
            "seeds_ended_halted": space_endings[2],
        },
        "commit": {
            "batches_pipelined": space.batches_pipelined,
            "crashes_with_two_batches_in_flight": space.crashes_with_batches_in_flight,
            "reads_revealing_a_write_before_its_reply": space.reveals_before_reply,
            "crashes_aimed_after_a_reveal": space.crashes_after_reveal,
        },
        "isolation": {
            "shared_operations_judged": space.shared_operations,
            "linearizability_partitions": space.shared_partitions,
            "linearizability_partitions_undecided": space.shared_partitions_undecided,
            "list_transactions": space.shared_transactions,
        },
        "determinism_checked": args.check_determinism,
        "elapsed_s": elapsed_s,
        "ops_per_s": ops as f64 / elapsed_s.max(1e-9),
        "trace_hash": (results.len() == 1).then(|| format!("{:016x}", results[0].report.trace_hash)),
        "swarm_trace_hash": format!("{:016x}", swarm_trace_hash(results)),
    });
    if args.json {
        say(&summary.to_string());
    } else {
        print_human_summary(&summary);
    }
    u8::from(!failed.is_empty())
}

/// One hash over every seed's trace hash: a refactor that must not change behaviour keeps it
/// (see docs/engine.md, "Refactoring under the trace hash"). A wrapping sum of one digest per
/// seed, so that shards merge into the whole swarm's value (`quill sim-report`).
fn swarm_trace_hash(results: &[SeedResult]) -> u64 {
    results.iter().fold(0u64, |sum, result| {
        let words = [result.report.seed, result.options.ops, result.report.trace_hash];
        let digest =
            words.iter().fold(0xcbf2_9ce4_8422_2325, |hash, word| quill_sim::trace::fnv(hash, &word.to_le_bytes()));
        sum.wrapping_add(digest)
    })
}

/// Prints a line; a closed pipe (`quill replay --trace | head`) ends the output quietly.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn print_human_summary(summary: &serde_json::Value) {
    println!(
        "{} seeds, {} failed; {} ops in {:.2} s ({:.0} ops/s); {} crashes; faults {} ({} detected); outcomes {}",
        summary["seeds_run"],
        summary["seeds_failed"],
        summary["ops"],
        summary["elapsed_s"].as_f64().unwrap_or(0.0),
        summary["ops_per_s"].as_f64().unwrap_or(0.0),
        summary["crashes"],
        summary["faults"],
        summary["faults_detected"],
        summary["fault_outcomes"]
    );
    println!(
        "pipelined commits: {} batches sealed while another was in flight; {} crashes met two in flight",
        summary["commit"]["batches_pipelined"], summary["commit"]["crashes_with_two_batches_in_flight"]
    );
    println!(
        "reads that returned a write's value before its reply: {}; crashes aimed right after one: {}",
        summary["commit"]["reads_revealing_a_write_before_its_reply"],
        summary["commit"]["crashes_aimed_after_a_reveal"]
    );
    println!(
        "shared keys: {} operations judged; {} linearizability partitions ({} undecided at the search limit); {} list transactions",
        summary["isolation"]["shared_operations_judged"],
        summary["isolation"]["linearizability_partitions"],
        summary["isolation"]["linearizability_partitions_undecided"],
        summary["isolation"]["list_transactions"]
    );
    if let Some(hash) = summary["trace_hash"].as_str() {
        println!("trace hash {hash}");
    } else if let Some(hash) = summary["swarm_trace_hash"].as_str() {
        println!("swarm trace hash {hash}");
    }
}

fn print_failure(result: &SeedResult, args: &SimArgs) {
    let report = &result.report;
    eprintln!("seed {} FAILED", report.seed);
    if let Some((first, second)) = result.determinism_mismatch {
        eprintln!("  nondeterminism: trace hash {first:016x} on the first run, {second:016x} on the second");
    }
    if let Some(violation) = &report.violation {
        eprintln!("  violated: {}", violation.what);
        eprintln!("  key: {:?}", violation.key);
        eprintln!("  expected: {}", violation.expected);
        eprintln!("  got: {}", violation.got);
        for line in &violation.history {
            eprintln!("  history: {line}");
        }
    }
    let options = &result.options;
    eprintln!("  reproduce: {}", reproduce_command(options));
    let family = options.family.map(|family| format!(" --family {}", family.name())).unwrap_or_default();
    let plant = args.variant.plant.map(|bug| format!(" --plant {}", bug.name())).unwrap_or_default();
    eprintln!(
        "  shrink:    quill shrink --seed {} --ops {} --faults {}{family}{plant}",
        report.seed,
        options.ops,
        fault_name(options.faults)
    );
}

fn fault_name(level: FaultLevel) -> &'static str {
    match level {
        FaultLevel::None => "none",
        FaultLevel::Default => "default",
        FaultLevel::Heavy => "heavy",
    }
}

pub fn replay(args: ReplayArgs) -> u8 {
    let mut options = args.run.options();
    options.clients = args.clients;
    options.fault_mask = args.fault_mask.into_iter().collect::<BTreeSet<u64>>();
    options.keep_trace = args.trace;
    if let Some(image) = args.crash_image {
        options = match super::crash_images::replay_options(&options, image, args.images_per_point) {
            Ok(options) => options,
            Err(message) => {
                eprintln!("quill replay: {message}");
                return 2;
            }
        };
    }
    let report = run_seed(&options);
    for line in &report.trace {
        say(line);
    }
    print_report(&report);
    u8::from(!report.passed())
}

fn print_report(report: &SeedReport) {
    println!("seed {}: {}", report.seed, if report.passed() { "passed" } else { "FAILED" });
    println!("knobs: {}", serde_json::to_string(&report.knobs).unwrap_or_default());
    println!(
        "{} ops, {} ticks, {} crashes, {} reads checked, {} trace events, trace hash {:016x}",
        report.ops, report.ticks, report.crashes, report.reads_checked, report.trace_events, report.trace_hash
    );
    let faults: Vec<String> =
        FaultKind::ALL.iter().map(|kind| format!("{} {}", kind.name(), report.ledger.count(*kind))).collect();
    println!("faults: {}", faults.join(", "));
    if let Some(reason) = &report.stopped_by_detection {
        println!("stopped early (a pass): {reason}");
    }
    if let Some(violation) = &report.violation {
        println!(
            "violated: {}\n  key {:?}\n  expected {}\n  got {}",
            violation.what, violation.key, violation.expected, violation.got
        );
        for line in &violation.history {
            println!("  history: {line}");
        }
    }
}

pub fn shrink(args: ShrinkArgs) -> u8 {
    let options = args.run.options();
    match quill_sim::shrink(&options, args.runs) {
        None => {
            println!("seed {} passes; nothing to shrink", options.seed);
            0
        }
        Some(result) => {
            print_report(&result.report);
            println!(
                "smallest reproduction found in {} runs ({} ops, {} faults masked):",
                result.runs,
                result.options.ops,
                result.options.fault_mask.len()
            );
            println!("  {}", reproduce_command(&result.options));
            1
        }
    }
}
