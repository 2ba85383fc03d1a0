//! Space and restart figures: how much of the log the data takes while the run overwrites it
//! (sampled), and how long a restart takes with and without an index checkpoint.

use std::time::{Duration, Instant};

use quill_core::{Engine, EngineStats};
use quill_io_real::{config_for_volume, EngineRunner, IoChoice, Volume, VolumeState};
use serde_json::{json, Map, Value};

/// How often the run phase samples the log's use.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// How often a progress line goes to stderr on a terminal run.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// The log's use over the run phase.
#[derive(Default)]
pub struct SpaceSamples {
    last_sample: Option<Duration>,
    last_progress: Duration,
    /// The highest log-used over live-bytes ratio seen, and when.
    pub amplification_max: f64,
    pub amplification_max_at_s: f64,
    pub samples: u64,
}

fn amplification(engine: &Engine) -> f64 {
    let space = engine.space();
    if space.live_bytes == 0 {
        return 0.0;
    }
    space.log_used_bytes as f64 / space.live_bytes as f64
}

impl SpaceSamples {
    pub fn sample(&mut self, engine: &Engine, elapsed: Duration, progress: bool) {
        if self.last_sample.is_some_and(|last| elapsed < last + SAMPLE_INTERVAL) {
            return;
        }
        self.last_sample = Some(elapsed);
        self.samples += 1;
        let ratio = amplification(engine);
        if ratio > self.amplification_max {
            self.amplification_max = ratio;
            self.amplification_max_at_s = elapsed.as_secs_f64();
        }
        if progress && elapsed >= self.last_progress + PROGRESS_INTERVAL {
            self.last_progress = elapsed;
            let space = engine.space();
            eprintln!(
                "{:>5.0} s: log {:.1} MiB of {:.1} MiB, live {:.1} MiB, amplification {ratio:.2}, {} records moved",
                elapsed.as_secs_f64(),
                space.log_used_bytes as f64 / 1048576.0,
                space.log_capacity_bytes as f64 / 1048576.0,
                space.live_bytes as f64 / 1048576.0,
                engine.stats().records_moved
            );
        }
    }
}

pub fn report_space(
    runner: &EngineRunner,
    samples: &SpaceSamples,
    before: &EngineStats,
    after: &EngineStats,
    extra: &mut Map<String, Value>,
) {
    let engine = runner.engine();
    let space = engine.space();
    extra.insert("log_capacity_bytes".into(), json!(space.log_capacity_bytes));
    extra.insert("log_used_bytes".into(), json!(space.log_used_bytes));
    extra.insert("live_bytes".into(), json!(space.live_bytes));
    extra.insert("space_amplification_end".into(), json!(amplification(engine)));
    extra.insert("space_amplification_max".into(), json!(samples.amplification_max));
    extra.insert("space_amplification_max_at_s".into(), json!(samples.amplification_max_at_s));
    extra.insert("records_moved".into(), json!(after.records_moved - before.records_moved));
    extra.insert("tail_advances".into(), json!(after.tail_advances - before.tail_advances));
    extra.insert("compaction_pauses".into(), json!(after.compaction_pauses - before.compaction_pauses));
    extra.insert("checkpoints_written".into(), json!(after.checkpoints_written - before.checkpoints_written));
    extra.insert("compaction_halted".into(), json!(engine.compaction_halted().map(ToString::to_string)));
}

/// Writes a checkpoint, then opens the volume twice: from the checkpoint, and scanning the
/// whole log. Each open is timed from `Engine::open` to ready.
pub fn measure_restarts(
    mut runner: EngineRunner,
    volume: &mut Volume,
    io: IoChoice,
    extra: &mut Map<String, Value>,
) -> Result<(), String> {
    let started = Instant::now();
    runner.checkpoint_and_wait().map_err(|error| error.to_string())?;
    extra.insert("checkpoint_write_s".into(), json!(started.elapsed().as_secs_f64()));
    let keys = runner.engine().key_count();
    drop(runner);
    volume.state = VolumeState::Formatted;
    for (name, use_checkpoint) in [("restart_checkpoint", true), ("restart_full_scan", false)] {
        let mut config = config_for_volume(volume, None);
        config.use_checkpoint = use_checkpoint;
        let started = Instant::now();
        let runner = EngineRunner::start(volume, config, io).map_err(|error| error.to_string())?;
        let elapsed_s = started.elapsed().as_secs_f64();
        let stats = runner.engine().stats();
        if runner.engine().key_count() != keys {
            return Err(format!("{name}: {} keys after the restart, {keys} before", runner.engine().key_count()));
        }
        extra.insert(format!("{name}_s"), json!(elapsed_s));
        extra.insert(format!("{name}_bytes_read"), json!(stats.recovery_bytes_read));
        extra.insert(format!("{name}_mib_per_s"), json!(stats.recovery_bytes_read as f64 / 1048576.0 / elapsed_s));
        extra.insert(format!("{name}_used_checkpoint"), json!(stats.checkpoint_loaded));
    }
    extra.insert("restart_keys".into(), json!(keys));
    Ok(())
}
