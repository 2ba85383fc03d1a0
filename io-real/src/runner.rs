//! An engine joined to a driver: the loop every real-I/O user runs (the `Db` thread, `quill
//! bench`, `quill check`).
//!
//! Drain order: after every input to the engine (`submit`, `complete`), the runner drains
//! `poll_io` into the driver at once; callers drain replies with [`EngineRunner::poll_reply`]
//! after that. One loop turn ([`EngineRunner::turn`]) submits the pushed I/O in one batch,
//! optionally waits, and feeds every completion back to the engine.

use quill_core::{Config, Engine, IoCompletion, OpenError, Reply, Request};

use crate::driver::{open_driver, Driver, IoChoice};
use crate::index_workers::{IndexWorkHost, IndexWorkers};
use crate::volume::{random_volume_id, Volume, VolumeState};
use crate::{DbError, DriverError, VolumeError};

pub struct EngineRunner {
    /// The origin of the millisecond clock passed to `Engine::tick`.
    started: std::time::Instant,
    engine: Engine,
    driver: Box<dyn Driver>,
    completions: Vec<IoCompletion>,
    /// Fill the index's partitions during recovery (`Config::hand_out_index_work`).
    index_workers: IndexWorkers,
}

/// The engine settings a real volume gets: the defaults for its size, with the batch (and so the
/// largest value) clipped so that small volumes can still be formatted.
pub fn config_for_volume(volume: &Volume, cache_bytes_max: Option<usize>) -> Config {
    let mut config = Config::for_volume_bytes(volume.size_bytes);
    // Room for the checkpoint slots, and for the log to hold batches beyond its reserves (eight
    // batches' worth; see the engine's space.rs).
    let log_blocks = config.volume_blocks.saturating_sub(3 + 2 * u64::from(config.checkpoint_slot_blocks));
    let batch_blocks_limit = u32::try_from(log_blocks / 10).unwrap_or(u32::MAX);
    config.batch_blocks_max = config.batch_blocks_max.min(batch_blocks_limit).max(1);
    // A record (24-byte header, key, value) must fit in one batch; leave room for a 4 KiB key.
    let payload_bytes_max = Config::batch_payload_bytes_max(config.batch_blocks_max);
    config.value_bytes_max = config.value_bytes_max.min(payload_bytes_max.saturating_sub(4096 + 24));
    // One durable write per group commit: O_DSYNC on io_uring, write + fdatasync on the portable
    // driver. fio on this machine: 3,929 O_DSYNC 8 KiB writes/s vs 2,528 write+fdatasync pairs.
    config.write_through = true;
    // Random per process, so clients cannot aim keys at one hash bucket.
    config.hash_seed = random_volume_id().unwrap_or(0x5eed);
    // The index in one piece, filled on the engine's thread: worker threads measured no faster
    // on two processors (docs/benchmarks.md); `--index-partitions` turns them on.
    config.index_partitions = 1;
    config.hand_out_index_work = false;
    if let Some(cache_bytes_max) = cache_bytes_max {
        config.cache_bytes_max = cache_bytes_max;
    }
    config
}

impl EngineRunner {
    pub fn new(engine: Engine, driver: Box<dyn Driver>) -> EngineRunner {
        let mut runner = EngineRunner {
            started: std::time::Instant::now(),
            engine,
            driver,
            completions: Vec::new(),
            index_workers: IndexWorkers::default(),
        };
        runner.drain_io();
        runner
    }

    /// Formats a blank volume or recovers a formatted one, and runs until the engine is ready.
    pub fn start(volume: &Volume, config: Config, io: IoChoice) -> Result<EngineRunner, DbError> {
        EngineRunner::start_with_driver(volume, config, open_driver(io, volume.file.clone()))
    }

    /// [`EngineRunner::start`] over a driver the caller built (a recording wrapper, for one).
    pub fn start_with_driver(
        volume: &Volume,
        config: Config,
        driver: Box<dyn Driver>,
    ) -> Result<EngineRunner, DbError> {
        let engine = match volume.state {
            VolumeState::Blank => {
                let volume_id = random_volume_id().map_err(|source| VolumeError::Io {
                    path: volume.path.clone(),
                    action: "draw a random volume id for",
                    source,
                })?;
                Engine::format(config, volume_id)
            }
            VolumeState::Formatted => Engine::open(config),
        };
        let mut runner = EngineRunner::new(engine, driver);
        runner.run_until_open()?;
        Ok(runner)
    }

    /// Runs format or recovery to the end. `Err` carries the engine's reason for refusing.
    pub fn run_until_open(&mut self) -> Result<(), DbError> {
        while !self.engine.is_ready() {
            if let Some(error) = self.engine.open_error() {
                return Err(DbError::Open(error.clone()));
            }
            if self.driver.pending() == 0 && self.index_workers.out() > 0 {
                self.exchange_index_work(true);
                continue;
            }
            if self.driver.pending() == 0 {
                // Neither ready nor failed, and nothing to wait for: an engine bug, not input.
                return Err(DbError::Open(OpenError::Io(quill_core::IoError::Other(
                    "the engine stalled while opening".to_string(),
                ))));
            }
            self.turn(true)?;
        }
        self.index_workers = IndexWorkers::default(); // only recovery hands partitions out
        self.driver.forget_spare_buffers();
        Ok(())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Writes an index checkpoint now and waits until the superblock records it, so the next
    /// open reads the checkpoint instead of the whole log (what a clean shutdown does).
    pub fn checkpoint_and_wait(&mut self) -> Result<(), DriverError> {
        self.engine.checkpoint_now();
        self.drain_io();
        while self.engine.checkpoint_in_progress() && self.engine.read_only_reason().is_none() {
            self.turn(true)?;
        }
        Ok(())
    }

    pub fn driver_name(&self) -> &'static str {
        self.driver.name()
    }

    /// Input: a client's request; its I/O goes to the driver at once.
    pub fn submit(&mut self, client: u64, request: Request) {
        // The command runs now: at this time, not the last turn's (the thread may have waited
        // long for it), or a relative expiry time would start in the past.
        self.engine.set_unix_time_ms(crate::clock::unix_time_ms());
        self.engine.submit(client, request);
        self.drain_io();
    }

    pub fn disconnect(&mut self, client: u64) {
        self.engine.disconnect(client);
        self.drain_io();
    }

    /// Output (with `Config::publish_cache`): the cache's changes, applied to `view`. Call it
    /// before handing out replies (`poll_reply`).
    pub fn publish_cache(&mut self, view: &crate::read_view::ReadView) {
        while let Some(change) = self.engine.poll_cache_change() {
            view.apply(change);
        }
    }

    /// Output: the next reply.
    pub fn poll_reply(&mut self) -> Option<(u64, Reply)> {
        self.engine.poll_reply()
    }

    /// Work pending: I/O requests the driver holds that have not completed, plus one if the
    /// engine waits for the end of the loop turn (a deferred group commit; see `turn`).
    pub fn io_pending(&self) -> usize {
        let due = self.engine.poll_timeout().is_some_and(|at| at <= self.now_ms());
        usize::from(due) + self.driver_pending()
    }

    /// How long until the engine wants a tick (a key's expiry time), if it does.
    pub fn wake_in(&self) -> Option<std::time::Duration> {
        let at = self.engine.poll_timeout()?;
        Some(std::time::Duration::from_millis(at.saturating_sub(self.now_ms())))
    }

    /// The engine's monotonic clock: milliseconds since the runner started.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn driver_pending(&self) -> usize {
        self.driver.pending()
    }

    /// One loop turn: submit, wait for a completion if `wait` and anything is pending, complete.
    /// Returns how many completions were fed to the engine.
    pub fn turn(&mut self, wait: bool) -> Result<usize, DriverError> {
        // The caller has handled the last turn's replies and submitted what they provoked: the
        // turn ends here, and a group commit waiting for it is sealed.
        self.end_turn();
        let wait = wait && self.driver.pending() > 0;
        self.driver.run(wait, &mut self.completions)?;
        // Reuse the vector's allocation from turn to turn.
        let mut completions = std::mem::take(&mut self.completions);
        let count = completions.len();
        for completion in completions.drain(..) {
            self.engine.complete(completion);
            self.drain_io();
        }
        self.completions = completions;
        while let Some(buffer) = self.engine.poll_spare_buffer() {
            self.driver.recycle(buffer);
        }
        self.exchange_index_work(false);
        Ok(count)
    }

    /// The end of a loop turn, after this turn's completions and requests: lets the engine seal
    /// the group commit that waited for them. `turn` runs it first. The time is milliseconds
    /// of a monotonic clock (the engine's contract; see `Engine::tick`).
    fn end_turn(&mut self) {
        self.engine.set_unix_time_ms(crate::clock::unix_time_ms());
        self.engine.tick(self.now_ms());
        self.drain_io();
    }

    /// Recovery's index partitions to the workers and back; with `wait`, waits for one.
    fn exchange_index_work(&mut self, wait: bool) {
        let mut workers = std::mem::take(&mut self.index_workers);
        workers.exchange(self, wait);
        self.index_workers = workers;
    }

    fn drain_io(&mut self) {
        while let Some(request) = self.engine.poll_io() {
            self.driver.push(request);
        }
    }
}

impl IndexWorkHost for EngineRunner {
    fn poll_index_work(&mut self) -> Option<quill_core::IndexWork> {
        self.engine.poll_index_work()
    }

    fn complete_index_work(&mut self, work: quill_core::IndexWork) {
        self.engine.complete_index_work(work);
        self.drain_io();
    }
}
