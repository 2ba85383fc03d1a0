//! `quill bench`: load keys into a volume, then drive the engine directly on this thread with
//! `--concurrency` simulated clients, each keeping one request outstanding, for `--duration`.
//!
//! For `--op get` the engine is reopened after the load phase, so nothing is cached from it;
//! with `--cache-bytes 0` every GET reads the disk.

mod report;
mod space;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quill_core::{EngineStats, Reply};
use quill_io_real::{
    config_for_volume, open_volume, EngineRunner, IoChoice, Volume, VolumeAccess, VolumeOptions, VolumeState,
};

use super::common::{size_notice, IoArg, PreallocateArg, EXIT_FAILURE, EXIT_USAGE, SIZE_DEFAULT_BYTES};
use report::{print_report, BenchReport};
use workload::{BenchOp, Workload};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The data file or block device.
    #[arg(long)]
    path: PathBuf,
    /// The data file's size if this run creates it, in bytes (default 1 GiB); ignored, with a
    /// notice, for a volume that exists.
    #[arg(long)]
    size: Option<u64>,
    #[arg(long, value_enum, default_value_t = BenchOp::Get)]
    op: BenchOp,
    /// Keys written in the load phase (and drawn from in the run phase).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Requests in flight: one per simulated client.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of the run phase, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The value cache's budget during the run phase (default: the engine's).
    #[arg(long)]
    cache_bytes: Option<usize>,
    #[arg(long, value_enum, default_value_t = IoArg::Uring)]
    io: IoArg,
    /// Format the volume first, even if it holds QuillKV data (which is lost).
    #[arg(long)]
    reformat: bool,
    /// Skip the load phase: the volume already holds the keys from an earlier run with the same
    /// --keys and --value-size (every GET still checks its value).
    #[arg(long, conflicts_with = "reformat")]
    skip_load: bool,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object on stdout at the end.
    #[arg(long)]
    json: bool,
    /// After the run: write a checkpoint, then time a restart from it and a restart that scans
    /// the whole log (`restart_*` figures).
    #[arg(long)]
    restart: bool,
    /// Compaction's space target, percent of the live bytes (the engine's default: 150). A
    /// large value on a large file runs without compaction, for comparison.
    #[arg(long)]
    space_target_percent: Option<u32>,
    /// Write an index checkpoint once the log to replay is this many blocks long (the engine's
    /// default: an eighth of the volume; 0: only at a clean shutdown).
    #[arg(long)]
    checkpoint_interval_blocks: Option<u64>,
    /// The share of a batch (percent) compaction's moves may fill (the engine's default: 50).
    #[arg(long)]
    compaction_batch_percent: Option<u32>,
    /// Format without mirror slots (format 5: every batch written once), to measure what the
    /// mirror costs. Only when the volume is formatted (new, or --reformat).
    #[arg(long)]
    no_mirror: bool,
    /// Let records of at most a block cross block boundaries (format 7 pads them to a fresh
    /// block by default, so that a GET reads one block): to measure what the padding costs.
    #[arg(long)]
    records_cross_blocks: bool,
    /// Index partitions (default 1). With more than one, a restart fills them on worker
    /// threads while the engine's thread reads the log, unless --index-built-in-place.
    #[arg(long)]
    index_partitions: Option<u32>,
    /// Recovery fills the index on the engine's thread (no worker threads): to measure them.
    #[arg(long)]
    index_built_in_place: bool,
    /// Batches in flight at once (the engine's default: 2; 1 commits one batch at a time). The
    /// volume bounds it: 2 needs four mirror slots (formats 6 and 7).
    #[arg(long)]
    commit_pipeline_depth: Option<u32>,
    /// Compaction reads a chunk in pieces of this many blocks, two at a time (the engine's
    /// default: 16, 64 KiB; the chunk's size reads it whole).
    #[arg(long)]
    compaction_read_piece_blocks: Option<u32>,
    /// With --reformat: format a block device even though it holds a filesystem, partition
    /// table or other known signature (its data is lost).
    #[arg(long, requires = "reformat")]
    force: bool,
    /// How a new data file is laid out (the figures depend on it: see docs/benchmarks.md).
    #[arg(long, value_enum, default_value_t = PreallocateArg::Write)]
    preallocate: PreallocateArg,
}

/// Clients writing the load phase: many, so group commit fills large batches.
const LOAD_CONCURRENCY: usize = 1024;

pub fn run(args: BenchArgs) -> u8 {
    if args.concurrency == 0 || args.keys == 0 || args.duration.is_nan() || args.duration <= 0.0 {
        eprintln!("quill bench: --concurrency, --keys and --duration must be positive");
        return EXIT_USAGE;
    }
    let io = args.io.choice();
    let options = VolumeOptions {
        create_size_bytes: Some(args.size.unwrap_or(SIZE_DEFAULT_BYTES)),
        reformat: args.reformat,
        direct: true,
        access: VolumeAccess::Exclusive,
        preallocate: args.preallocate.layout(),
        force: args.force,
    };
    let mut volume = match open_volume(&args.path, &options) {
        Ok(volume) => volume,
        Err(error) => {
            eprintln!("quill bench: {error}");
            return EXIT_FAILURE;
        }
    };
    size_notice("bench", args.size, &volume);
    match bench(&args, io, &mut volume) {
        Ok(report) => {
            print_report(&report, args.json);
            u8::from(report.errors > 0)
        }
        Err(message) => {
            eprintln!("quill bench: {message}");
            1
        }
    }
}

fn bench(args: &BenchArgs, io: IoChoice, volume: &mut Volume) -> Result<BenchReport, String> {
    let mut workload = Workload::new(args.op, args.keys, args.value_size, args.seed);
    let engine_config = |volume: &Volume, cache_bytes: Option<usize>| {
        let mut config = config_for_volume(volume, cache_bytes);
        if let Some(percent) = args.space_target_percent {
            config.space_amplification_percent = percent;
        }
        if let Some(blocks) = args.checkpoint_interval_blocks {
            config.checkpoint_interval_blocks = blocks;
        }
        if let Some(percent) = args.compaction_batch_percent {
            config.compaction_batch_percent = percent;
        }
        config.mirror_batches = !args.no_mirror;
        config.small_records_whole = !args.records_cross_blocks;
        if let Some(partitions) = args.index_partitions {
            config.index_partitions = partitions;
            config.hand_out_index_work = partitions > 1 && !args.index_built_in_place;
        }
        if let Some(depth) = args.commit_pipeline_depth {
            config.commit_pipeline_depth = depth.max(1);
        }
        if let Some(blocks) = args.compaction_read_piece_blocks {
            config.compaction_read_piece_blocks = blocks.max(1);
        }
        config
    };
    let mut runner = EngineRunner::start(volume, engine_config(volume, None), io).map_err(|e| e.to_string())?;
    if args.skip_load {
        if runner.engine().key_count() < args.keys {
            return Err(format!(
                "--skip-load: the volume holds {} keys, fewer than --keys",
                runner.engine().key_count()
            ));
        }
    } else {
        load_phase(args, volume, &mut runner, &workload)?;
    }
    if args.op != BenchOp::Set {
        // Reopen so the run phase starts with an empty cache: GETs measure the disk.
        drop(runner);
        volume.state = VolumeState::Formatted;
        runner = EngineRunner::start(volume, engine_config(volume, args.cache_bytes), io).map_err(|e| e.to_string())?;
    }
    let before = runner.engine().stats().clone();
    let duration = Duration::from_secs_f64(args.duration);
    let phase = run_phase(&mut runner, &mut workload, args.concurrency, duration, !args.json)?;
    let after = runner.engine().stats().clone();
    let mut report = BenchReport::new(args, runner.driver_name(), volume.direct, &phase, &stats_delta(&before, &after));
    space::report_space(&runner, &phase.space, &before, &after, &mut report.extra);
    if args.restart {
        space::measure_restarts(runner, volume, io, &mut report.extra)?;
    }
    Ok(report)
}

fn load_phase(args: &BenchArgs, volume: &Volume, runner: &mut EngineRunner, workload: &Workload) -> Result<(), String> {
    let started = Instant::now();
    let load_errors = load(runner, workload)?;
    if load_errors > 0 {
        return Err(format!("{load_errors} SETs failed in the load phase"));
    }
    if !args.json {
        eprintln!(
            "loaded {} keys of {} bytes in {:.1} s ({} driver, O_DIRECT {})",
            args.keys,
            args.value_size,
            started.elapsed().as_secs_f64(),
            runner.driver_name(),
            volume.direct
        );
    }
    Ok(())
}

/// Writes every key once, `LOAD_CONCURRENCY` SETs in flight. Returns the failed SETs.
fn load(runner: &mut EngineRunner, workload: &Workload) -> Result<u64, String> {
    let mut next_key = 0;
    let mut in_flight = 0usize;
    let mut errors = 0;
    while next_key < workload.keys() || in_flight > 0 {
        while in_flight < LOAD_CONCURRENCY && next_key < workload.keys() {
            runner.submit(next_key % LOAD_CONCURRENCY as u64, workload.load_request(next_key));
            next_key += 1;
            in_flight += 1;
        }
        runner.turn(true).map_err(|error| error.to_string())?;
        while let Some((_, reply)) = runner.poll_reply() {
            in_flight -= 1;
            errors += u64::from(reply.is_error());
        }
    }
    Ok(errors)
}

/// What the run phase measured.
pub struct PhaseResult {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    pub space: space::SpaceSamples,
}

/// Keeps one request outstanding per client until `duration` has passed, then drains.
fn run_phase(
    runner: &mut EngineRunner,
    workload: &mut Workload,
    concurrency: usize,
    duration: Duration,
    progress: bool,
) -> Result<PhaseResult, String> {
    let mut space = space::SpaceSamples::default();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut outstanding: Vec<Option<(Instant, Option<Vec<u8>>)>> = vec![None; concurrency];
    let (mut ops, mut errors, mut in_flight) = (0u64, 0u64, 0usize);
    let start = Instant::now();
    loop {
        let issuing = start.elapsed() < duration;
        if issuing {
            for (client, slot) in outstanding.iter_mut().enumerate().filter(|(_, slot)| slot.is_none()) {
                let (request, expected) = workload.next_request();
                *slot = Some((Instant::now(), expected));
                runner.submit(client as u64, request);
                in_flight += 1;
            }
        } else if in_flight == 0 {
            break;
        }
        runner.turn(true).map_err(|error| error.to_string())?;
        let now = Instant::now();
        space.sample(runner.engine(), now.duration_since(start), progress);
        while let Some((client, reply)) = runner.poll_reply() {
            let Some((sent, expected)) = outstanding.get_mut(client as usize).and_then(Option::take) else {
                return Err(format!("a reply for client {client}, which has nothing outstanding"));
            };
            in_flight -= 1;
            ops += 1;
            errors += u64::from(!reply_matches(&reply, expected.as_deref()));
            let micros = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            latency_us.saturating_record(micros.max(1));
        }
    }
    Ok(PhaseResult { ops, errors, elapsed: start.elapsed(), latency_us, space })
}

/// A GET must return the value the load phase wrote; a SET must say OK.
fn reply_matches(reply: &Reply, expected: Option<&[u8]>) -> bool {
    match (reply, expected) {
        (Reply::Bulk(Some(value)), Some(expected)) => value.as_slice() == expected,
        (Reply::Simple(_), None) => true,
        _ => false,
    }
}

fn stats_delta(before: &EngineStats, after: &EngineStats) -> EngineStats {
    EngineStats {
        reads: after.reads - before.reads,
        writes: after.writes - before.writes,
        syncs: after.syncs - before.syncs,
        bytes_read: after.bytes_read - before.bytes_read,
        bytes_written: after.bytes_written - before.bytes_written,
        batches_committed: after.batches_committed - before.batches_committed,
        batches_pipelined: after.batches_pipelined - before.batches_pipelined,
        records_committed: after.records_committed - before.records_committed,
        payload_bytes_sealed: after.payload_bytes_sealed - before.payload_bytes_sealed,
        record_padding_bytes: after.record_padding_bytes - before.record_padding_bytes,
        checksum_failures: after.checksum_failures - before.checksum_failures,
        reads_in_flight_max: after.reads_in_flight_max,
        ..EngineStats::default()
    }
}
