//! One seed's run: the event loop over virtual time. `Sim` is the coordinator: it owns the
//! simulated world (the disk and its I/O queue, the clients, the engine's server, the fault
//! ledger, the checker, the trace) and runs it tick by tick. Its parts are this module's
//! children, one concern each: issuing and completing storage I/O (`storage`), crashes and
//! recoveries (`crash`), the fault budget (`budget`), replies and their judgement (`replies`,
//! `domains`), connections (`connections`), seed families (`families`), the read-only stretch
//! (`read_only`), degraded paths (`degraded`), the engine's reports (`reports`), space
//! (`space`), and the published cache (`view`). The independent pieces they use (`disk`,
//! `faults`, `checker`, `trace`, `network`, `workload`, `knobs`, `images`) are the crate's other
//! modules, which never import the runner: no module circles.

mod budget;
mod connections;
mod crash;
mod degraded;
pub(crate) mod domains;
pub(crate) mod expiring;
pub(crate) mod families;
mod isolation;
mod isolation_models;
mod read_only;
mod replies;
mod reports;
mod scans;
mod settle;
pub mod space;
pub(crate) mod storage;
pub(crate) mod transfers;
mod view;
mod watches;

use crate::trace::TraceEvent;
use std::collections::{BTreeSet, VecDeque};

use quill_core::server::{Server, ServerConfig, DIRECT_CLIENT_BASE};
use quill_core::{Config, Engine, Request};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::{Checker, Violation};
use crate::disk::SimDisk;
use crate::faults::FaultLedger;
use crate::knobs::{op, FaultLevel, Knobs};
use crate::trace::Trace;
use crate::workload;

/// What to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub ops: u64,
    pub faults: FaultLevel,
    /// Overrides the seed's drawn client count (shrinking).
    pub clients: Option<usize>,
    /// Fault decisions (by ordinal, from 1) to skip (shrinking).
    pub fault_mask: BTreeSet<u64>,
    pub keep_trace: bool,
    /// Runs the seed in this family instead of the one it draws.
    pub family: Option<crate::knobs::Family>,
    /// Records, at each crash point (a sync or durable write about to complete), the writes a
    /// crash there would resolve (`quill sim --crash-images`).
    pub census: bool,
    /// Crashes once, at this crash point, leaving this image; the workload ends there.
    pub crash_image: Option<crate::images::CrashImage>,
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<quill_core::engine::PlantedBug>,
}

impl SimOptions {
    pub fn new(seed: u64, ops: u64, faults: FaultLevel) -> SimOptions {
        SimOptions {
            seed,
            ops,
            faults,
            clients: None,
            fault_mask: BTreeSet::new(),
            keep_trace: false,
            family: None,
            census: false,
            crash_image: None,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

/// How a seed's run ended.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub violation: Option<Violation>,
    /// Set when the run stopped early because the engine detected damage beyond the fault budget
    /// (for example it refused to open a log corrupt in the middle): a pass.
    pub stopped_by_detection: Option<String>,
    pub ops: u64,
    pub ticks: u64,
    pub crashes: u64,
    pub ledger: FaultLedger,
    pub trace_hash: u64,
    pub trace_events: u64,
    pub trace: Vec<String>,
    pub knobs: Knobs,
    /// How many fault decisions were made (the mask's range, for shrinking).
    pub fault_decisions: u64,
    pub reads_checked: u64,
    pub space: crate::runner::space::SpaceTotals,
    /// With `census`: each crash point's writes not durable yet.
    pub crash_points: Vec<crate::images::CrashPoint>,
    /// With `crash_image`: whether the run reached that point and crashed there.
    pub crash_image_taken: bool,
}

impl SeedReport {
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }
}

/// A request a simulated client is waiting on.
/// The simulated wall clock starts here (2026-12-01, Unix milliseconds).
const SIM_EPOCH_UNIX_MS: u64 = 1_796_083_200_000;

pub(crate) struct Outstanding {
    pub op_id: u64,
    pub request: Request,
    pub invoked: u64,
    /// The tick it was sent at (for liveness while the engine is read-only).
    pub sent_tick: u64,
    /// The wall-clock time it was sent at: it ran at this moment or later (expiry).
    pub sent_unix_ms: u64,
    /// Replies to come first that belong to the framing of a MULTI … EXEC sent over a
    /// connection (+OK to MULTI, +QUEUED to each command).
    pub framing_replies: usize,
}

#[derive(Default)]
pub(crate) struct SimClient {
    pub outstanding: VecDeque<Outstanding>,
    /// In network mode: the client's connection, bytes not yet delivered, replies not yet parsed.
    pub connection: Option<u64>,
    pub unsent: Vec<u8>,
    pub received: Vec<u8>,
    /// The server answered a protocol error: it will close this connection.
    pub expect_close: bool,
    /// A SCAN under way (scans.rs).
    pub scan: Option<scans::ScanSession>,
    /// A request to send once the client has nothing outstanding and the tick has come (an
    /// EXEC some time after its WATCH, so that other clients' writes may land in between).
    pub follow_up: Option<(Request, u64)>,
    /// The client's WATCH, once answered (watches.rs).
    pub watched: Option<watches::Watched>,
}

pub(crate) struct Sim {
    pub options: SimOptions,
    pub knobs: Knobs,
    pub config: Config,
    pub workload_rng: ChaCha8Rng,
    /// Index partitions recovery handed out (`Config::hand_out_index_work`), each with the
    /// tick it comes back at: they come back late and out of order, as threads would.
    index_work: Vec<(u64, quill_core::IndexWork)>,
    index_work_rng: ChaCha8Rng,
    /// Turns drawn requests into sibling commands (variants.rs), on its own stream.
    pub variants: crate::variants::Variants,
    /// The expiry workload and the clock's jumps (expiring.rs).
    pub expiry: expiring::ExpiryWorkload,
    /// Fault injection: its random stream, its ledger, its switch.
    pub faults: crate::faults::Injector,
    pub server: Server,
    pub disk: SimDisk,
    /// The I/Os in flight and their latencies (see storage.rs).
    pub storage: storage::Storage,
    pub clients: Vec<SimClient>,
    pub checker: Checker,
    pub trace: Trace,
    pub tick: u64,
    pub op_id_next: u64,
    pub ops_submitted: u64,
    pub crashes: u64,
    /// When the last crash happened, on the checker's clock: writes invoked before it are
    /// decided by the next open.
    pub crash_time: u64,
    pub recovering: bool,
    /// Format has completed (a crash before that would only lose an unformatted volume).
    pub formatted: bool,
    /// The engine was last opened read-only: writes may be refused with READONLY.
    pub opened_read_only: bool,
    /// Bit rot aimed at the batch a crash left (see crash.rs, `aim_at_adopted_tail`).
    pub aimed_tail: AimedTail,
    pub stopped_by_detection: Option<String>,
    pub space: crate::runner::space::SpaceTotals,
    /// Full-disk seeds: where the fill, drain, refill cycle stands.
    pub fill_cycle: crate::runner::families::FillCycle,
    /// The engine turned read-only: how long it keeps serving (see read_only.rs).
    pub read_only: read_only::ReadOnlyStretch,
    /// The value-domain keys' model (see domains.rs).
    pub domains: domains::DomainModel,
    /// What the simulator saw of the engine, to check its reports against.
    pub watch: crate::runner::reports::Watch,
    /// A read-only open asked for a repair: the next open is writable.
    pub next_open_writable: bool,
    /// The engine's published cache (`Config::publish_cache`), as a `Db` keeps it.
    pub view: std::collections::BTreeMap<Vec<u8>, std::sync::Arc<[u8]>>,
    /// Crash points met, and the image a chosen one leaves (crash-image runs).
    pub crash_plan: crate::images::CrashPlan,
    /// The shared-key workload and its history (isolation.rs).
    pub isolation: isolation::IsolationWorkload,
}

/// See [`Sim::aimed_tail`]: bit rot on the batch a crash left at `flip_at`, then a crash at
/// `crash_at`.
#[derive(Default)]
pub(crate) struct AimedTail {
    pub flip_at: Option<u64>,
    pub crash_at: Option<u64>,
    /// The last crash met two batches' log writes in flight (see crash.rs, `aim_at_adopted_tail`).
    pub two_in_flight: bool,
    /// The crash at `crash_at` loses every write not durable (aimed after a read revealed a
    /// write: see crash.rs, `aim_after_reveal`).
    pub lose_unsynced: bool,
}

/// How far time jumps when nothing is scheduled and the engine asked for no tick.
const IDLE_TICKS_JUMP: u64 = 1_000;
/// Ticks allowed, once faults stop, for every outstanding request to complete.
pub const LIVENESS_TICKS_MAX: u64 = 200_000;
/// The id of the client that reads every key at the end.
const VERIFIER_CLIENT: usize = 1000;
/// The verifier's pipeline at most (and never above the engine's per-client limit).
pub(crate) const VERIFY_CHUNK_KEYS: usize = 256;

const _: () = assert!(VERIFY_CHUNK_KEYS < 4096);

/// A blank simulated disk laid out as the knobs' volume is (the log's end, the mirror slots).
pub(crate) fn volume_disk(knobs: &Knobs) -> SimDisk {
    let mirror_blocks = quill_core::format::superblock::mirror_blocks(
        quill_core::format::superblock::new_volume_mirror_slots(knobs.mirrored),
        knobs.batch_blocks_max,
    );
    let log_end_block = knobs.volume_blocks - 2 * u64::from(knobs.checkpoint_slot_blocks) - mirror_blocks;
    let mut disk = SimDisk::new(knobs.volume_blocks, log_end_block);
    disk.mirror_end_block = log_end_block + mirror_blocks;
    disk
}

pub(crate) fn stream(seed: u64, number: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(number);
    rng
}

/// Runs one seed to its end and reports.
pub fn run_seed(options: &SimOptions) -> SeedReport {
    let mut sim = Sim::new(options.clone());
    // A panic is a bug like any violation: report it with the seed that reproduces it.
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run())) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_string());
        sim.checker.fail("the engine or the simulator panicked", b"", "no panic".into(), message);
    }
    sim.report()
}

impl Sim {
    fn new(options: SimOptions) -> Sim {
        let mut knobs = Knobs::draw(&mut stream(options.seed, 0), options.faults);
        knobs.apply_family(&mut stream(options.seed, 4), options.family);
        // Its own stream, so every other draw of the seed stays as it was.
        knobs.publish_cache = stream(options.seed, 6).gen_bool(0.5);
        let mut isolation_rng = stream(options.seed, 11);
        knobs.apply_isolation(&mut isolation_rng);
        let mut index_rng = stream(options.seed, 7);
        if !knobs.production_config && index_rng.gen_ratio(1, 8) {
            knobs.index_bytes_max = index_rng.gen_range(64..2048);
        }
        if let Some(clients) = options.clients {
            knobs.clients = clients.max(1);
        }
        if knobs.mix[op::FLUSHALL] > 0 {
            knobs.mix[op::INCR] = 0; // FLUSHALL seeds use registers only (see the checker)
            knobs.mix[op::APPEND] = 0;
        }
        let config = Sim::engine_config(&knobs, &options);
        let mut fault_rng = stream(options.seed, 2);
        let volume_id = fault_rng.gen();
        let mut disk = volume_disk(&knobs);
        if knobs.stale_image {
            let mut aging_rng = stream(options.seed, 5);
            let drawn: u64 = aging_rng.gen();
            let old_volume_id = if drawn == volume_id { drawn ^ 1 } else { drawn }; // never the new id
            crate::aging::age(&mut disk, &config, &knobs, old_volume_id, &mut aging_rng);
            disk.recent_durable_log_writes.clear();
        }
        Sim {
            server: Server::new(Engine::format(config.clone(), volume_id), server_config()),
            disk,
            storage: storage::Storage::new(stream(options.seed, 3)),
            clients: (0..=VERIFIER_CLIENT.min(knobs.clients)).map(|_| SimClient::default()).collect(),
            checker: Checker::default(),
            trace: Trace::new(options.keep_trace),
            tick: 0,
            op_id_next: 1,
            ops_submitted: 0,
            crashes: 0,
            crash_time: 0,
            faults: crate::faults::Injector::new(
                fault_rng,
                options.faults != FaultLevel::None,
                options.fault_mask.clone(),
            ),
            // Format is judged like a recovery: an injected I/O error there means format again.
            recovering: true,
            formatted: false,
            opened_read_only: false,
            aimed_tail: AimedTail::default(),
            stopped_by_detection: None,
            space: Default::default(),
            fill_cycle: Default::default(),
            read_only: Default::default(),
            domains: Default::default(),
            watch: Default::default(),
            next_open_writable: false,
            view: Default::default(),
            crash_plan: Default::default(),
            workload_rng: stream(options.seed, 1),
            index_work: Vec::new(),
            index_work_rng: stream(options.seed, 10),
            variants: crate::variants::Variants::new(stream(options.seed, 8)),
            expiry: expiring::ExpiryWorkload::new(stream(options.seed, 9)),
            isolation: isolation::IsolationWorkload::new(isolation_rng, knobs.isolation_percent),
            knobs,
            config,
            options,
        }
    }

    pub(crate) fn engine_config(knobs: &Knobs, options: &SimOptions) -> Config {
        // Derived from the seed: the index's iteration order is reproducible.
        let hash_seed = options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x0051_5749_4c4c_4b56;
        let volume_bytes = knobs.volume_blocks * quill_core::BLOCK_BYTES as u64;
        if knobs.production_config {
            #[allow(unused_mut)]
            let mut config = crate::runner::families::production_config(volume_bytes, hash_seed);
            config.publish_cache = knobs.publish_cache;
            #[cfg(feature = "planted-bugs")]
            {
                config.planted_bug = options.planted_bug;
            }
            return config;
        }
        let mut config = Config::for_volume_bytes(volume_bytes);
        config.queue_depth_max = knobs.queue_depth;
        config.client_pipeline_max = knobs.client_pipeline_max;
        config.write_through = knobs.write_through;
        config.hash_seed = hash_seed;
        config.cache_bytes_max = knobs.cache_bytes;
        config.batch_blocks_max = knobs.batch_blocks_max;
        config.compaction_chunk_blocks = knobs.compaction_chunk_blocks;
        config.compaction_batch_percent = knobs.compaction_batch_percent;
        config.compaction_chunks_per_advance = knobs.compaction_chunks_per_advance;
        config.space_amplification_percent = knobs.space_amplification_percent;
        config.checkpoint_slot_blocks = knobs.checkpoint_slot_blocks;
        config.checkpoint_interval_blocks = knobs.checkpoint_interval_blocks;
        config.value_bytes_max = knobs.value_bytes_max;
        config.index_bytes_max = knobs.index_bytes_max;
        config.mirror_batches = knobs.mirrored;
        config.commit_pipeline_depth = knobs.commit_pipeline_depth;
        config.compaction_read_piece_blocks = knobs.compaction_read_piece_blocks;
        config.small_records_whole = knobs.small_records_whole;
        config.index_partitions = knobs.index_partitions;
        config.hand_out_index_work = knobs.hand_out_index_work;
        config.index_work_records_min = knobs.index_work_records_min;
        config.index_backlog_records_max = knobs.index_backlog_records_max;
        config.publish_cache = knobs.publish_cache;
        #[cfg(feature = "planted-bugs")]
        {
            config.planted_bug = options.planted_bug;
        }
        config
    }

    /// Decides whether a fault with probability `ppm` happens now, honouring the shrink mask.
    pub fn fault(&mut self, ppm: u32) -> bool {
        self.faults.fault(ppm)
    }

    fn run(&mut self) {
        self.reconnect_all();
        self.drain_engine();
        let tick_limit = self.options.ops * 2_000 + 1_000_000;
        while self.ops_submitted < self.options.ops && self.tick < tick_limit && self.is_running() {
            self.step();
        }
        if !self.is_running() {
            return;
        }
        self.faults.enabled = false;
        self.settle("the workload");
        self.settle_compaction();
        self.check_expired_keys_deleted();
        self.clean_restart();
        let keys: Vec<Vec<u8>> = self.checker.keys.keys().cloned().collect();
        let compaction_before = self.compaction_activity();
        for chunk in keys.chunks(self.verify_chunk_keys()) {
            if !self.is_running() {
                break;
            }
            self.verify_keys(chunk);
            self.settle("the final verification");
        }
        self.judge_isolation();
        if self.is_running() {
            self.check_no_unknown_keys();
            self.check_view_mirrors_cache();
            self.check_cache_serves_second_pass(&keys, compaction_before);
            self.check_view_mirrors_cache();
        }
    }

    /// Compaction's reads and moves so far: a pass during which they changed may have read for
    /// compaction, or had a value move under a read (which then is not cached).
    fn compaction_activity(&self) -> (u64, u64, u64) {
        let stats = self.engine().stats();
        (stats.compaction_chunks, stats.records_moved, stats.tail_advances)
    }

    /// The cache works: when every live value fits in it, a second read of every key (after the
    /// verification read each once, from disk) needs no disk read at all.
    fn check_cache_serves_second_pass(&mut self, keys: &[Vec<u8>], compaction_before: (u64, u64, u64)) {
        let engine = self.engine();
        let cached_bytes: usize = engine
            .durable_index()
            .map(|(key, location)| key.len() + location.value_bytes(key.len(), engine.durable_expiry(key).is_some()))
            .sum();
        // Damage at rest (bit rot, a misdirected write) makes a read fail: nothing to cache.
        let damaged = self.faults.ledger.beyond_budget;
        // Keys with an expiry time may be uncached (a published cache leaves them out) or gone
        // by the second pass: the pass proves something only without them.
        let expiring = engine.expiring_key_count() > 0;
        if cached_bytes > self.config.cache_bytes_max
            || damaged
            || expiring
            || !engine.is_ready()
            || engine.read_only_reason().is_some()
        {
            return;
        }
        let reads_before = engine.stats().reads;
        for chunk in keys.chunks(self.verify_chunk_keys()) {
            self.verify_keys(chunk);
            self.settle("the cache pass");
        }
        let reads = self.engine().stats().reads - reads_before;
        // A read that completes after compaction moved its record is not cached (the index
        // points elsewhere): both checks hold only for a pass compaction left alone (seed 7567).
        let compaction_still = self.compaction_activity() == compaction_before;
        if self.is_running() && compaction_still && self.engine().cache_bytes() != cached_bytes {
            let got =
                format!("{} bytes reported, {cached_bytes} bytes of keys and values held", self.engine().cache_bytes());
            return self.checker.fail("the cache reports another size than it holds", b"", "agreement".into(), got);
        }
        if self.is_running() && reads > 0 && compaction_still {
            let got = format!(
                "{reads} disk reads for {} keys, {cached_bytes} bytes, cache of {}",
                keys.len(),
                self.config.cache_bytes_max
            );
            self.checker.fail("the cache held every value, yet reads went to disk", b"", "no disk reads".into(), got);
        }
    }

    /// A clean shutdown and restart before the final check: a checkpoint on request (what `Db`
    /// close and `quill serve` do), then a restart that opens from it, so every seed with
    /// checkpoint slots reaches both.
    fn clean_restart(&mut self) {
        self.crash_plan.closed = true;
        if !self.is_running() || !self.engine().is_ready() || self.engine().read_only_reason().is_some() {
            return;
        }
        let (written_before, skipped_before) =
            (self.engine().stats().checkpoints_written, self.engine().stats().checkpoints_skipped);
        self.server.checkpoint_now();
        self.drain_engine();
        let deadline = self.tick + LIVENESS_TICKS_MAX;
        while self.is_running() && self.engine().checkpoint_in_progress() && self.tick < deadline {
            self.step();
        }
        if self.engine().checkpoint_in_progress() && self.engine().read_only_reason().is_none() {
            let state = self.engine().debug_state();
            self.checker.fail("liveness: a requested checkpoint never finished", b"", "recorded".into(), state);
            return;
        }
        let stats = self.engine().stats();
        let skipped = stats.checkpoints_skipped > skipped_before;
        let written = stats.checkpoints_written > written_before;
        if self.knobs.checkpoint_slot_blocks > 0 && !written && !skipped && self.engine().read_only_reason().is_none() {
            let state = self.engine().debug_state();
            return self.checker.fail(
                "a requested checkpoint was neither written nor skipped",
                b"",
                "written".into(),
                state,
            );
        }
        // Skipped only when the index does not fit a slot (each entry: a header and the key; each
        // key with a time also has an item in the expiry section: seed 102701 heavy).
        let entry_header_bytes = quill_core::format::checkpoint::CHECKPOINT_ENTRY_HEADER_BYTES as u64;
        let expiry_header_bytes = quill_core::format::checkpoint::CHECKPOINT_EXPIRY_HEADER_BYTES as u64;
        let engine = self.engine();
        let index_bytes: u64 = engine
            .durable_index()
            .map(|(key, _)| {
                let expiry_item = engine.durable_expiry(key).map_or(0, |_| expiry_header_bytes + key.len() as u64);
                entry_header_bytes + key.len() as u64 + expiry_item
            })
            .sum();
        let slot_bytes = u64::from(self.knobs.checkpoint_slot_blocks) * quill_core::BLOCK_BYTES as u64;
        if skipped && index_bytes <= slot_bytes {
            let got = format!("skipped, with {index_bytes} bytes of index for a {slot_bytes}-byte slot");
            return self.checker.fail("a checkpoint was skipped though the index fits", b"", "written".into(), got);
        }
        self.crash();
        self.settle("a clean restart");
        // The checkpoint written on request is what the next open starts from.
        let stats = self.engine().stats();
        if self.is_running() && written && !stats.checkpoint_loaded && stats.checkpoint_rejected.is_none() {
            let got = format!("a full scan of {} batches", stats.recovered_batches);
            self.checker.fail(
                "the open after a clean shutdown ignored its checkpoint",
                b"",
                "the checkpoint".into(),
                got,
            );
        }
    }

    /// The simulated wall clock, Unix milliseconds.
    pub(crate) fn unix_now(&self) -> u64 {
        SIM_EPOCH_UNIX_MS + self.tick + self.expiry.clock_jump_ms
    }

    pub fn is_running(&self) -> bool {
        self.checker.violation.is_none() && self.stopped_by_detection.is_none()
    }

    /// One tick: completions due, faults, new requests.
    pub(crate) fn step(&mut self) {
        let (tick, idle) = self.next_tick();
        if idle && self.formatted && !self.recovering && self.engine().is_ready() {
            let waiting: usize = self.clients.iter().map(|client| client.outstanding.len()).sum();
            if waiting > 0 {
                let got = format!("{waiting} requests waiting; engine: {}", self.engine().debug_state());
                let what = "liveness: clients wait, but no I/O is in flight and the engine asked for no tick";
                return self.checker.fail(what, b"", "a timeout or an I/O".into(), got);
            }
        }
        self.tick = tick;
        // Virtual wall-clock time (TIME, LASTSAVE, expiry): a fixed epoch plus the virtual tick,
        // plus the clock's jumps ahead.
        self.expiry.clock_jump();
        self.server.set_unix_time_ms(self.unix_now());
        self.server.tick(self.tick);
        self.drain_engine();
        self.check_reports();
        self.deliver_due_completions();
        self.give_back_index_work();
        self.after_recovery_if_done();
        if !self.is_running() {
            return;
        }
        self.formatted |= self.engine().is_ready();
        if self.read_only.until.is_none() {
            self.check_read_only_explained();
        }
        if self.engine().read_only_reason().is_some() && self.read_only_stretch_over() {
            return self.crash();
        }
        if self.formatted
            && self.crashes < u64::from(self.knobs.crashes_max)
            && self.fault(self.knobs.crash_per_tick_ppm)
        {
            return self.crash();
        }
        if self.aimed_tail.crash_at.is_some_and(|at| self.tick >= at) && !self.crash_plan.closed {
            self.aimed_tail.crash_at = None;
            return self.crash();
        }
        self.aim_after_reveal();
        if self.aimed_tail.flip_at.is_some_and(|at| self.tick >= at) && !self.crash_plan.closed {
            self.aimed_tail.flip_at = None;
            self.flip_adopted_tail();
        }
        if self.fault(self.knobs.bit_flip_per_tick_ppm) {
            if let Some(block) = self.flip_a_bit() {
                self.faults.ledger.inject_damage(crate::faults::FaultKind::BitFlip, std::iter::once(block));
                self.trace.record(self.tick, &[TraceEvent::Fault.word(), block], |line| {
                    line.push_str(&format!("fault bit_flip block {block}"))
                });
            }
        }
        self.submit_requests();
        self.deliver_network();
        if self.knobs.network && self.fault(self.knobs.disconnect_per_tick_ppm) {
            self.disconnect_one();
        }
    }

    /// The aimed bit rot: a bit of the batch the last open took from the crash, if it may still
    /// be the newest and the budget allows; a crash follows soon, so recovery meets it.
    fn flip_adopted_tail(&mut self) {
        let count = self.disk.adopted_tails.len();
        if count == 0 {
            return;
        }
        let tail = self.disk.adopted_tails[self.faults.rng.gen_range(0..count)];
        let block = self.faults.rng.gen_range(tail.first..tail.end);
        if !self.corruption_within_budget(block, block + 1, false) {
            return;
        }
        let bit = block * quill_core::BLOCK_BYTES as u64 * 8
            + self.faults.rng.gen_range(0..quill_core::BLOCK_BYTES as u64 * 8);
        let Some(block) = self.disk.flip_bit_at(bit) else { return };
        self.faults.ledger.inject_damage(crate::faults::FaultKind::BitFlip, std::iter::once(block));
        self.trace.record(self.tick, &[TraceEvent::Fault.word(), block], |line| {
            line.push_str(&format!("fault bit_flip block {block} (aimed at the batch taken from the crash)"))
        });
        self.aimed_tail.crash_at = Some(self.tick + self.faults.rng.gen_range(5..60));
    }

    /// Bit rot: half the time in a live value (what reads will meet), else anywhere on disk.
    fn flip_a_bit(&mut self) -> Option<u64> {
        // Ring-edge seeds aim half their bit rot at the superblocks, which they rewrite often.
        let superblock = self.faults.rng.gen_range(0..20) == 0
            || self.knobs.family == crate::knobs::Family::RingEdge && self.faults.rng.gen_bool(0.5);
        if superblock {
            // A superblock copy, now and then: the other copy must carry the open.
            let copy = self.faults.rng.gen_range(0..quill_core::format::SUPERBLOCK_COPIES as u64);
            let bit = self.faults.rng.gen_range(0..64 * 8); // within the fields and checksum
            return self.disk.flip_bit_at(copy * quill_core::BLOCK_BYTES as u64 * 8 + bit);
        }
        let bit = self.bit_to_flip()?;
        let block = bit / 8 / quill_core::BLOCK_BYTES as u64;
        if !self.corruption_within_budget(block, block + 1, false) {
            return None;
        }
        self.disk.flip_bit_at(bit)
    }

    /// Half the time a bit of a live value, else any durable bit.
    fn bit_to_flip(&mut self) -> Option<u64> {
        let live = self.engine().durable_index().count();
        if live == 0 || self.faults.rng.gen_bool(0.5) {
            return self.disk.random_bit(&mut self.faults.rng);
        }
        let pick = self.faults.rng.gen_range(0..live);
        let engine = self.engine();
        let (key, location, expires) = engine
            .durable_index()
            .nth(pick)
            .map(|(key, location)| (key.len(), location, engine.durable_expiry(key).is_some()))?;
        let expiry_bytes = if expires { quill_core::format::EXPIRY_BYTES } else { 0 };
        let value_start = location.offset_bytes + (quill_core::format::RECORD_HEADER_BYTES + expiry_bytes + key) as u64;
        let value_end = location.offset_bytes + u64::from(location.record_bytes);
        if value_end <= value_start {
            return self.disk.random_bit(&mut self.faults.rng);
        }
        Some(self.faults.rng.gen_range(value_start * 8..value_end * 8))
    }

    /// The next tick with something to do: now + 1 if a client may submit, else the next
    /// completion or the time the engine asked for (`poll_timeout`), whichever comes first.
    /// With neither, time jumps ahead: an engine that needs a tick must ask for it.
    fn next_tick(&self) -> (u64, bool) {
        let may_send = self.clients.iter().any(|client| !client.unsent.is_empty());
        let may_submit = may_send
            || self.ops_submitted < self.options.ops
                && self.clients[..self.knobs.clients]
                    .iter()
                    .any(|client| client.outstanding.len() < self.knobs.pipeline_depth);
        if may_submit {
            return (self.tick + 1, false);
        }
        let timeout = self.engine().poll_timeout();
        let index_work_due = self.index_work.iter().map(|(due, _)| *due).min();
        let timeout = match (timeout, index_work_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (self.storage.next_due(), timeout) {
            (Some(due), Some(timeout)) => (due.min(timeout).max(self.tick + 1), false),
            (Some(at), None) | (None, Some(at)) => (at.max(self.tick + 1), false),
            (None, None) => (self.tick + IDLE_TICKS_JUMP, true),
        }
    }

    fn submit_requests(&mut self) {
        for client in 0..self.knobs.clients {
            if self.ops_submitted >= self.options.ops
                || self.clients[client].outstanding.len() >= self.knobs.pipeline_depth
            {
                continue;
            }
            if let Some((_, due)) = self.clients[client].follow_up {
                if self.clients[client].outstanding.is_empty() && self.tick >= due {
                    let (request, _) = self.clients[client].follow_up.take().expect("checked");
                    self.send(client, request);
                    self.ops_submitted += 1;
                }
                continue;
            }
            if self.clients[client]
                .outstanding
                .iter()
                .any(|outstanding| matches!(outstanding.request, Request::Watch { .. }))
            {
                continue; // nothing between a WATCH and its EXEC: any EXEC would end the watch
            }
            if self.workload_rng.gen_range(0..4) == 0 {
                continue; // clients think, so arrivals spread out
            }
            let op_id = self.op_id_next;
            let family = self.knobs.family;
            let request = if family == crate::knobs::Family::FullDisk {
                self.next_fill_request(client, op_id)
            } else if self.isolation.chosen() {
                let limits = crate::runner::domains::Limits::of(&self.config);
                let in_flight = self
                    .clients
                    .iter()
                    .flat_map(|client| client.outstanding.iter())
                    .map(|outstanding| isolation::linearizability_kind(&outstanding.request))
                    .fold((0, 0), |(single, group), (is_single, is_group)| {
                        (single + usize::from(is_single), group + usize::from(is_group))
                    });
                let state = &self.clients[client];
                let may_watch = state.outstanding.is_empty() && state.follow_up.is_none() && state.watched.is_none();
                self.isolation.next_request(self.unix_now(), &limits, in_flight, may_watch)
            } else if self.expiry.chosen() {
                // An EXEC of one command, for direct clients with no WATCH of their own pending.
                let state = &self.clients[client];
                let direct = !self.knobs.network && state.watched.is_none() && state.follow_up.is_none();
                self.expiry.next_request(client, self.unix_now(), direct, self.config.value_bytes_max)
            } else if family == crate::knobs::Family::ValueDomains && self.workload_rng.gen_bool(0.5) {
                let request = self.next_domain_request(client);
                self.variants.domain(request)
            } else {
                let request = workload::next_request(&mut self.workload_rng, &self.knobs, client, op_id);
                let request = self.read_neighbour_write(client, request);
                let request = self.variants.register(request);
                let request = self.transfer_variant(client, request);
                let request = self.watch_variant(client, request);
                self.keyset_variant(client, request)
            };
            if self.read_from_view(client, &request) {
                self.ops_submitted += 1;
                continue;
            }
            self.send(client, request);
            self.ops_submitted += 1;
        }
    }

    /// A third of GETs read the key of a SET or DEL another client has in flight: the window where
    /// a write is in the engine but not durable, which no reply may reveal (nor lose, once
    /// revealed: see crash.rs, `aim_after_reveal`).
    fn read_neighbour_write(&mut self, client: usize, request: Request) -> Request {
        if !matches!(request, Request::Get { .. }) || !self.workload_rng.gen_bool(1.0 / 3.0) {
            return request;
        }
        let neighbour_key = self
            .clients
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != client)
            .flat_map(|(_, state)| state.outstanding.iter())
            .filter_map(|outstanding| match &outstanding.request {
                Request::Set { key, .. } => Some(key),
                Request::Del { keys } => keys.first(),
                _ => None,
            })
            // Registers only: the other families judge their keys with models of their own.
            .rfind(|key| crate::checker::family(key) == Some(crate::checker::Family::Register));
        match neighbour_key {
            Some(key) => Request::Get { key: key.clone() },
            None => request,
        }
    }

    /// Sends a request from `client` and records it with the checker.
    pub fn send(&mut self, client: usize, request: Request) {
        let op_id = self.op_id_next;
        self.op_id_next += 1;
        let invoked = self.checker.now();
        if isolation::is_isolation_request(&request) {
            self.isolation_sent(client, op_id, &request, invoked);
        } else {
            self.begin_in_checker(op_id, &request, invoked);
        }
        let name = request.name();
        self.trace.record(
            self.tick,
            &[TraceEvent::Send.word(), client as u64, op_id, crate::trace::digest(name.as_bytes())],
            |line| {
                line.push_str(&format!(
                    "client {client} sends op {op_id}: {}",
                    crate::runner::replies::describe_request(&request)
                ))
            },
        );
        let inline = self.workload_rng.gen_range(0..5) == 0;
        let sent_unix_ms = self.unix_now();
        let state = &mut self.clients[client];
        let framing_replies = match (&request, state.connection) {
            (Request::Exec { commands }, Some(_)) => commands.len() + 1,
            _ => 0,
        };
        state.outstanding.push_back(Outstanding {
            op_id,
            request: request.clone(),
            invoked,
            sent_tick: self.tick,
            sent_unix_ms,
            framing_replies,
        });
        if let (Request::Exec { commands }, Some(_)) = (&request, state.connection) {
            // MULTI, each command (the server queues it), EXEC: one command at a time.
            crate::network::encode(&[b"MULTI".to_vec()], inline, &mut state.unsent);
            for command in commands {
                crate::network::encode(&crate::network::arguments(command), false, &mut state.unsent);
            }
            crate::network::encode(&[b"EXEC".to_vec()], inline, &mut state.unsent);
        } else if state.connection.is_some() {
            crate::network::encode(&crate::network::arguments(&request), inline, &mut state.unsent);
        } else {
            self.server.submit_direct(DIRECT_CLIENT_BASE + client as u64, request);
        }
        self.drain_engine();
    }

    /// Drains the server's outputs in the documented order: I/O, output bytes, closes; and the
    /// replies to direct clients.
    pub fn drain_engine(&mut self) {
        while let Some(request) = self.server.poll_io() {
            self.issue_io(request);
        }
        // As a real driver: only one that asked for index work drains it (an engine handing
        // work out unasked would wait for it forever: a liveness failure).
        while let Some(work) = self.config.hand_out_index_work.then(|| self.server.poll_index_work()).flatten() {
            let due = self.tick + self.index_work_rng.gen_range(0..=3);
            self.index_work.push((due, work));
        }
        // Before any reply: the published cache never lags a reply a client has seen.
        while let Some(change) = self.server.poll_cache_change() {
            self.apply_cache_change(change);
        }
        while let Some((connection, bytes)) = self.server.poll_output() {
            self.on_output(connection, &bytes);
        }
        while let Some(connection) = self.server.poll_close() {
            self.on_close(connection);
        }
        while let Some((client, reply)) = self.server.poll_direct_reply() {
            self.on_reply((client - DIRECT_CLIENT_BASE) as usize, reply);
        }
    }

    /// Gives back the index partitions due now, in a random order; one in four without running
    /// it first (the engine applies its records then).
    fn give_back_index_work(&mut self) {
        for _ in 0..self.index_work.len() {
            let due: Vec<usize> = (0..self.index_work.len()).filter(|&at| self.index_work[at].0 <= self.tick).collect();
            if due.is_empty() || !self.is_running() {
                return;
            }
            let pick = due[self.index_work_rng.gen_range(0..due.len())];
            let (_, mut work) = self.index_work.swap_remove(pick);
            if self.index_work_rng.gen_range(0..4) != 0 {
                work.run();
            }
            self.server.complete_index_work(work);
            self.drain_engine();
        }
    }

    pub fn engine(&self) -> &Engine {
        self.server.engine()
    }

    /// Runs with faults off until every outstanding request is answered, or fails liveness.
    fn settle(&mut self, phase: &str) {
        let deadline = self.tick + LIVENESS_TICKS_MAX;
        while self.is_running() && self.tick < deadline {
            if self.engine().read_only_reason().is_some() || self.engine().open_error().is_some() && !self.recovering {
                self.check_read_only_explained();
                self.crash();
                continue;
            }
            let waiting = self.clients.iter().any(|client| !client.outstanding.is_empty());
            // The engine's own work due now (a batch of expired keys' deletions) settles too.
            let due = self.engine().poll_timeout().is_some_and(|at| at <= self.tick);
            if !waiting && self.storage.is_empty() && !self.recovering && !due {
                return;
            }
            self.step();
        }
        if self.is_running() {
            let outstanding: usize = self.clients.iter().map(|client| client.outstanding.len()).sum();
            self.checker.fail(
                format!("liveness: after {phase}, with faults off, requests were still outstanding after {LIVENESS_TICKS_MAX} ticks"),
                b"",
                "every request answered".into(),
                format!("{outstanding} outstanding, {} I/Os in flight; engine: {}", self.storage.len(), self.engine().debug_state()),
            );
        }
    }

    /// Keys the verifier reads at once: within the engine's per-client limit, so that no read
    /// of the final check is refused (a refused read checks nothing).
    fn verify_chunk_keys(&self) -> usize {
        VERIFY_CHUNK_KEYS.min(self.knobs.client_pipeline_max)
    }

    /// Reads keys the model knows, through the engine, as one more client.
    fn verify_keys(&mut self, keys: &[Vec<u8>]) {
        let verifier = self.clients.len() - 1;
        for key in keys {
            self.send(verifier, Request::Get { key: key.clone() });
        }
    }

    /// Once idle, active expiry has deleted every key whose time has passed (the engine asked
    /// for its ticks): none is left in the durable index. Checked before the final reads,
    /// whose lazy expiry would delete them anyway.
    fn check_expired_keys_deleted(&mut self) {
        if !self.is_running() || !self.engine().is_ready() || self.engine().read_only_reason().is_some() {
            return;
        }
        // Compaction halted on damage it may not skip: the log fills, and deletions too may find
        // no room (seed 9349); the keys stay expired, unseen, until space comes back.
        if self.engine().compaction_halted().is_some() {
            return;
        }
        let now = self.unix_now();
        let engine = self.engine();
        let left = engine.durable_index().find(|(key, _)| engine.durable_expiry(key).is_some_and(|time| time < now));
        if let Some((key, _)) = left {
            let (key, time) = (key.to_vec(), engine.durable_expiry(key));
            let got = format!("expiry time {time:?}, now {now}");
            return self.checker.fail("an expired key was never deleted (active expiry)", &key, "deleted".into(), got);
        }
        // INFO's `expires`: the durable keys with an expiry time.
        let expiring = engine.durable_index().filter(|(key, _)| engine.durable_expiry(key).is_some()).count();
        if engine.expiring_key_count() != expiring {
            let got = format!("{} reported, {expiring} in the index", engine.expiring_key_count());
            self.checker.fail("the count of keys with an expiry time is wrong", b"", "agreement".into(), got);
        }
    }

    /// No key the workload never wrote may exist.
    fn check_no_unknown_keys(&mut self) {
        let unknown = self
            .engine()
            .durable_index()
            .map(|(key, _)| key.to_vec())
            .find(|key| crate::checker::family(key).is_none() || !self.checker.keys.contains_key(key));
        if let Some(key) = unknown {
            self.checker.fail("a key that was never written exists", &key, "absent".into(), "present".into());
        }
        if self.engine().key_count() != self.engine().durable_index().count() as u64 {
            let got = format!(
                "{} keys in DBSIZE, {} in the index",
                self.engine().key_count(),
                self.engine().durable_index().count()
            );
            self.checker.fail("DBSIZE disagrees with the index once idle", b"", "equal".into(), got);
        }
    }

    fn report(mut self) -> SeedReport {
        self.faults.ledger.finish();
        let stats = self.engine().stats().clone();
        self.space.add(&stats);
        SeedReport {
            seed: self.options.seed,
            violation: self.checker.violation.take(),
            stopped_by_detection: self.stopped_by_detection.take(),
            ops: self.ops_submitted,
            ticks: self.tick,
            crashes: self.crashes,
            trace_hash: self.trace.hash(),
            trace_events: self.trace.events,
            trace: self.trace.lines().to_vec(),
            knobs: self.knobs.clone(),
            fault_decisions: self.faults.ordinal,
            reads_checked: self.checker.reads_checked,
            space: self.space,
            ledger: self.faults.ledger,
            crash_points: self.crash_plan.points,
            crash_image_taken: self.crash_plan.image_taken,
        }
    }
}

/// The simulated server's limits (the defaults; the engine's own limits are knobs).
pub(crate) fn server_config() -> ServerConfig {
    ServerConfig::default()
}

/// Keys a request writes, for the checker (FLUSHALL is recorded apart: it writes every key).
pub(crate) fn written_keys(request: &Request) -> Vec<&[u8]> {
    match request {
        Request::Set { key, .. }
        | Request::IncrBy { key, .. }
        | Request::Append { key, .. }
        | Request::GetSet { key, .. }
        | Request::GetDel { key }
        | Request::SetRange { key, .. } => vec![key],
        Request::MSet { pairs } | Request::MSetNx { pairs } => pairs.iter().map(|(key, _)| key.as_slice()).collect(),
        Request::Del { keys } => {
            let mut keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            keys.sort();
            keys.dedup();
            keys
        }
        _ => Vec::new(),
    }
}
