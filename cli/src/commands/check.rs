//! `quill check`: verify a volume — both superblock copies, every batch's checksum (recovery
//! replays the whole log), and every indexed record (each key is read back from disk with the
//! cache off, so each record's own checksum is verified).
//!
//! The volume is opened read-only (`Config::open_read_only`): recovery runs in memory and
//! nothing is written, not even the epoch bump; a torn tail is reported, not discarded. A data
//! file is opened with a shared lock: checks may run side by side, but never beside a writer
//! (`quill serve`, `quill bench`, a `Db`), whose unsynced and in-flight writes would look like
//! damage.
//!
//! Exit codes: 0 clean; 1 corruption found (the message names the block and byte offset), or
//! nothing could be checked (missing, not a volume, in use by a writer); 2 usage error.

use std::path::PathBuf;

use super::common::{IoArg, EXIT_FAILURE};
use quill_core::format::Superblock;
use quill_core::{Reply, Request, BLOCK_BYTES};
use quill_io_real::{
    config_for_volume, open_volume, DbError, EngineRunner, IoChoice, Volume, VolumeAccess, VolumeOptions,
};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The data file or block device to verify.
    #[arg(long)]
    path: PathBuf,
    /// The I/O driver.
    #[arg(long, value_enum, default_value_t = IoArg::Uring)]
    io: IoArg,
    /// The same as `--io sync` (kept for older scripts).
    #[arg(long, hide = true)]
    io_sync: bool,
}

/// Record reads in flight while verifying.
const VERIFY_CONCURRENCY: usize = 64;

pub fn run(args: CheckArgs) -> u8 {
    let options = VolumeOptions { access: VolumeAccess::Shared, ..VolumeOptions::default() };
    let volume = match open_volume(&args.path, &options) {
        Ok(volume) => volume,
        Err(error) => {
            eprintln!("quill check: {error}");
            return EXIT_FAILURE;
        }
    };
    println!("volume {}: {} bytes", args.path.display(), volume.size_bytes);
    let mut problems = superblock_problems(&volume);
    let io = if args.io_sync { IoChoice::Sync } else { args.io.choice() };
    let mut config = config_for_volume(&volume, Some(0));
    config.open_read_only = true; // verify without writing: not even the epoch bump
    config.use_checkpoint = false; // replay and verify the whole log from its tail
    let replay_started = std::time::Instant::now();
    let mut runner = match EngineRunner::start(&volume, config, io) {
        Ok(runner) => runner,
        Err(DbError::Open(error)) => {
            println!("CORRUPT: {error}");
            return 1;
        }
        Err(error) => {
            eprintln!("quill check: {error}");
            return 1;
        }
    };
    print_log_summary(&volume, &runner, replay_started.elapsed());
    match verify_records(&mut runner) {
        Ok(record_problems) => problems.extend(record_problems),
        Err(message) => problems.push(message),
    }
    for problem in &problems {
        println!("CORRUPT: {problem}");
    }
    if problems.is_empty() {
        println!("clean");
        0
    } else {
        println!("{} problem(s) found", problems.len());
        1
    }
}

/// Decodes both superblock copies before the engine rewrites one of them.
fn superblock_problems(volume: &Volume) -> Vec<String> {
    let head = match volume.read_at(0, 2 * BLOCK_BYTES) {
        Ok(head) => head,
        Err(error) => return vec![format!("cannot read the superblocks: {error}")],
    };
    let mut problems = Vec::new();
    for (block, copy) in head.chunks_exact(BLOCK_BYTES).enumerate() {
        match Superblock::decode(copy, block as u64) {
            Ok(superblock) => println!(
                "superblock copy {block}: ok (sequence {}, epoch {}, volume id {:#018x})",
                superblock.sequence, superblock.epoch, superblock.volume_id
            ),
            Err(error) => problems.push(format!(
                "superblock copy {block} at block {block} (byte offset {}): {error}",
                block * BLOCK_BYTES
            )),
        }
    }
    problems
}

fn print_log_summary(volume: &Volume, runner: &EngineRunner, replay: std::time::Duration) {
    let engine = runner.engine();
    let stats = engine.stats();
    println!("log: {} batches verified, {} keys", stats.recovered_batches, engine.key_count());
    // The figure a restart without a checkpoint takes (docs/benchmarks.md, restarts).
    let mebibytes = stats.recovery_bytes_read as f64 / f64::from(1 << 20);
    let seconds = replay.as_secs_f64();
    println!("replay: {mebibytes:.1} MiB read in {seconds:.3} s ({:.0} MiB/s)", mebibytes / seconds.max(1e-9));
    let Some(block) = stats.truncated_at_block else {
        println!("log end: the log fills the volume");
        return;
    };
    let offset = block * BLOCK_BYTES as u64;
    match volume.read_at(offset, BLOCK_BYTES) {
        Ok(bytes) if bytes.iter().all(|&byte| byte == 0) => {
            println!("log end: block {block} (byte offset {offset}), unused space after it");
        }
        Ok(_) => println!(
            "log end: block {block} (byte offset {offset}) held an incomplete batch (a torn tail from a crash), discarded"
        ),
        Err(error) => println!("log end: block {block}; cannot read it: {error}"),
    }
}

/// Reads every indexed key with the cache off; each read verifies the record's checksum.
fn verify_records(runner: &mut EngineRunner) -> Result<Vec<String>, String> {
    let index: Vec<(Vec<u8>, u64)> =
        runner.engine().durable_index().map(|(key, location)| (key.to_vec(), location.offset_bytes)).collect();
    let mut problems = Vec::new();
    let mut in_flight: Vec<Option<usize>> = vec![None; VERIFY_CONCURRENCY];
    let (mut next, mut done) = (0usize, 0usize);
    while done < index.len() {
        for (client, slot) in in_flight.iter_mut().enumerate() {
            if slot.is_none() && next < index.len() {
                *slot = Some(next);
                runner.submit(client as u64, Request::Get { key: index[next].0.clone() });
                next += 1;
            }
        }
        runner.turn(true).map_err(|error| format!("I/O driver failed: {error}"))?;
        while let Some((client, reply)) = runner.poll_reply() {
            let Some(position) = in_flight.get_mut(client as usize).and_then(Option::take) else { continue };
            done += 1;
            let (key, offset) = &index[position];
            if let Some(reason) = record_problem(&reply) {
                let key = String::from_utf8_lossy(key);
                let block = offset / BLOCK_BYTES as u64;
                problems.push(format!("record of key {key:?} at byte offset {offset} (block {block}): {reason}"));
            }
        }
    }
    let checksum_failures = runner.engine().stats().checksum_failures;
    println!(
        "records: {} read back, {} failed verification ({checksum_failures} checksum failures)",
        index.len(),
        problems.len()
    );
    Ok(problems)
}

fn record_problem(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(Some(_)) => None,
        Reply::Bulk(None) => Some("indexed but read back as missing".to_string()),
        Reply::Error(text) => Some(text.clone()),
        other => Some(format!("unexpected reply {other:?}")),
    }
}
