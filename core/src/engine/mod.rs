//! The engine state machine. See the crate documentation for the input/output contract and the
//! drain order.

mod cache;
mod checkpoint;
mod clients;
mod commit;
mod compaction;
mod config;
mod execute;
mod expiries;
mod hashing;
mod index;
mod keyspace;
mod mirror;
mod reads;
mod reasons;
mod recovery;
mod space;
mod superblock_writer;
mod tokens;
mod watches;

use std::collections::VecDeque;

pub use cache::CacheChange;
pub use compaction::CompactionState;
pub use config::PlantedBug;
pub use config::{Config, INDEX_BYTES_LIMIT};
pub use index::IndexWork;
pub use keyspace::Location;
pub use reasons::{HaltReason, ReadOnlyReason};
pub use recovery::OpenError;
pub use space::Ring;

use crate::command::{Reply, Request};
use crate::format::CheckpointRef;
use crate::io::{IoCompletion, IoKind, IoRequest};
use checkpoint::{CheckpointStep, Checkpointer};
use clients::ClientTable;
use commit::{AppendRefused, Log, LogRefused, LogStep, NewRecord};
use compaction::{Cleaner, CleanerContext, CleanerStep};
use keyspace::Keyspace;
use reads::{ReadJob, ReadScheduler};
use recovery::Recovery;
use space::Writer;
use superblock_writer::{SuperblockStep, SuperblockWriter, UpdateReason};
use tokens::TokenTable;

/// A place in the log: batch `sequence`, which starts at `block`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogPosition {
    pub block: u64,
    pub sequence: u64,
}

/// The bytes of index entry a key of `key_bytes` takes (what `Config::index_bytes_max` counts).
pub fn index_entry_bytes(key_bytes: usize) -> u64 {
    keyspace::CompactIndex::entry_bytes(key_bytes)
}

/// A client as the driver names it.
pub type ClientId = u64;

/// Counters a driver may report. They never influence the engine's behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub reads: u64,
    pub writes: u64,
    pub syncs: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub batches_committed: u64,
    /// Batches sealed while another was still in flight (pipelined group commit).
    pub batches_pipelined: u64,
    pub records_committed: u64,
    /// Payload bytes of the batches sealed (records and the padding before them).
    pub payload_bytes_sealed: u64,
    /// Of those, zero padding that starts a record on a fresh block (format 7).
    pub record_padding_bytes: u64,
    pub checksum_failures: u64,
    pub reads_in_flight_max: u64,
    pub recovered_batches: u64,
    /// Bytes the last open read (superblocks, checkpoint, log).
    pub recovery_bytes_read: u64,
    pub truncated_at_block: Option<u64>,
    pub superblock_copies_bad: u64,
    /// Live records compaction copied to the head (and the index repointed).
    pub records_moved: u64,
    /// Their bytes (headers, keys and values).
    pub records_moved_bytes: u64,
    /// Durable records that a later write replaced or deleted (new garbage for compaction).
    pub records_replaced: u64,
    /// Times compaction paused after a lap of the log that gained nothing.
    pub compaction_pauses: u64,
    pub compaction_chunks: u64,
    pub tail_advances: u64,
    pub checkpoints_written: u64,
    /// Checkpoints not written (the index did not fit a slot) or dropped (the tail passed them).
    pub checkpoints_skipped: u64,
    /// The last open started from a checkpoint.
    pub checkpoint_loaded: bool,
    /// Why the last open could not use its checkpoint (and scanned the whole log instead).
    pub checkpoint_rejected: Option<String>,
    /// Batches the last open found damaged in the log and rewrote from their mirror copy.
    pub batches_repaired: u64,
    /// Mirror slots the last open rewrote from the log: its newest batch's copy was not whole.
    pub mirrors_rewritten: u64,
    /// Keys active expiry deleted (their time had passed).
    pub keys_expired: u64,
}

/// How the log uses the volume, for INFO, benchmarks and the simulator's space check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceReport {
    /// The log region (between the superblocks and the checkpoint slots).
    pub log_capacity_bytes: u64,
    /// From the tail to the head, wrap gap included.
    pub log_used_bytes: u64,
    /// The records the index points at (headers, keys, values).
    pub live_bytes: u64,
}

enum Phase {
    Formatting,
    Recovering(Box<Recovery>),
    Ready,
    Failed(OpenError),
}

/// What an I/O in flight is for.
enum IoPurpose {
    SuperblockRead,
    /// A format reads the superblocks an older volume may have left, to number its own above
    /// them (recovery.rs, `on_format_probe`).
    FormatProbe {
        volume_id: u64,
    },
    RecoveryChunk {
        start_block: u64,
        prefetch: bool,
    },
    SuperblockWrite,
    SuperblockSync,
    BatchWrite {
        sequence: u64,
    },
    BatchSync {
        sequence: u64,
    },
    /// Recovery reads the mirror slot of batch `sequence`, expected at `block` in the log.
    MirrorRead {
        block: u64,
        sequence: u64,
    },
    /// Recovery rewrites a damaged batch from its mirror copy.
    MirrorRepair,
    /// A writable open reads the newest batch's mirror slot, then perhaps its log copy, and
    /// writes the copy to the slot (mirror.rs, `check_newest_mirror`).
    NewestMirrorRead,
    NewestLogRead,
    NewestMirrorWrite,
    ValueRead(ReadJob),
    /// A piece of the chunk compaction reads, starting at `piece_block`.
    CompactionRead {
        piece_block: u64,
    },
    CheckpointWrite,
    CheckpointSync,
    CheckpointRead(crate::format::CheckpointRef),
}

impl IoPurpose {
    /// The reads only an open makes (their bytes are `EngineStats::recovery_bytes_read`).
    fn is_recovery_read(&self) -> bool {
        matches!(
            self,
            IoPurpose::SuperblockRead
                | IoPurpose::FormatProbe { .. }
                | IoPurpose::RecoveryChunk { .. }
                | IoPurpose::MirrorRead { .. }
                | IoPurpose::NewestMirrorRead
                | IoPurpose::NewestLogRead
                | IoPurpose::CheckpointRead(_)
        )
    }
}

/// The volume's identity, read from (or written to) the superblock.
#[derive(Clone, Debug, Default)]
struct Volume {
    volume_id: u64,
    epoch: u64,
    superblock_sequence: u64,
    batch_blocks_max: u32,
    volume_blocks: u64,
    /// The log region ends here; the checkpoint slots follow.
    log_end_block: u64,
    checkpoint_slot_blocks: u32,
    /// The oldest batch recovery must read, as the superblock on disk says (both copies).
    tail: LogPosition,
    checkpoint: Option<crate::format::CheckpointRef>,
    /// Every batch is also written to mirror slot `sequence % mirror_slots` (0: no slots).
    mirror_slots: u32,
    /// The sequence of the first batch this epoch writes (see `Superblock::epoch_first_sequence`).
    epoch_first_sequence: u64,
    /// Records may be preceded by padding to a fresh block (format 7).
    records_padded: bool,
}

impl Volume {
    fn mirrored(&self) -> bool {
        self.mirror_slots > 0
    }

    /// Where batch `sequence`'s mirror copy goes: one of the slots right after the log region.
    fn mirror_slot_block(&self, sequence: u64) -> u64 {
        debug_assert!(self.mirrored());
        self.log_end_block + (sequence % u64::from(self.mirror_slots)) * u64::from(self.batch_blocks_max)
    }

    /// The most batches any writer may have had in flight on this volume: what recovery's
    /// torn-tail rule allows for.
    fn pipeline_depth_max(&self) -> u64 {
        crate::format::superblock::pipeline_depth_max(self.mirror_slots).into()
    }
}

/// What every subsystem reads or feeds: the configuration, the volume's identity and layout,
/// the I/O queue, the counters and the read-only switch. A subsystem takes it by `&mut` beside
/// its own state; no subsystem reaches into another's fields.
struct Shared {
    config: Config,
    volume: Volume,
    io: IoQueue,
    stats: EngineStats,
    /// Why writes are refused (a failed write or sync); never cleared until restart.
    read_only: Option<ReadOnlyReason>,
    /// Large read buffers the engine is done with, for the driver to fill again (see
    /// `Engine::poll_spare_buffer`).
    spare_buffers: Vec<Vec<u8>>,
}

/// I/O requests waiting for the driver, and the tokens of those in flight.
struct IoQueue {
    tokens: TokenTable<IoPurpose>,
    out: VecDeque<IoRequest>,
}

/// Spare buffers kept for the driver at most: recovery has a chunk and a read-ahead.
const SPARE_BUFFERS_MAX: usize = 4;
/// Buffers smaller than this are not worth handing back: the allocator reuses them cheaply.
const SPARE_BUFFER_BYTES_MIN: usize = 64 * 1024;

impl Shared {
    /// Keeps a large buffer the engine no longer needs for the driver's next read.
    fn give_back(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() >= SPARE_BUFFER_BYTES_MIN && self.spare_buffers.len() < SPARE_BUFFERS_MAX {
            self.spare_buffers.push(buffer);
        }
    }

    /// The ring of the log region.
    fn ring(&self) -> Ring {
        Ring { start: crate::format::LOG_START_BLOCK, end: self.volume.log_end_block }
    }

    /// Where the log writer puts records: padding needs format 7.
    fn record_placement(&self) -> crate::format::RecordPlacement {
        use crate::format::RecordPlacement;
        match (self.volume.records_padded, self.config.small_records_whole) {
            (false, _) => RecordPlacement::BackToBack,
            (true, false) => RecordPlacement::HeadersWhole,
            (true, true) => RecordPlacement::SmallRecordsWhole,
        }
    }

    /// Compaction's chunk: the configured size, at most a sixteenth of the log region, and at
    /// least one whole batch.
    fn chunk_blocks(&self) -> u32 {
        let capacity_blocks = u32::try_from(self.ring().capacity_blocks() / 16).unwrap_or(u32::MAX);
        self.config.compaction_chunk_blocks.min(capacity_blocks).max(self.volume.batch_blocks_max)
    }

    /// Queues an I/O for the driver and counts it.
    fn push_io(&mut self, purpose: IoPurpose, kind: IoKind) {
        match &kind {
            IoKind::Read { offset_bytes, length_bytes } => {
                if purpose.is_recovery_read() {
                    self.stats.recovery_bytes_read += u64::from(*length_bytes);
                }
                debug_assert!(*offset_bytes % crate::BLOCK_BYTES as u64 == 0);
                debug_assert!((*length_bytes as usize).is_multiple_of(crate::BLOCK_BYTES) && *length_bytes > 0);
                self.stats.reads += 1;
                self.stats.bytes_read += u64::from(*length_bytes);
            }
            IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                debug_assert!(*offset_bytes % crate::BLOCK_BYTES as u64 == 0);
                debug_assert!(data.len() % crate::BLOCK_BYTES == 0 && !data.is_empty());
                assert!(
                    *offset_bytes >= crate::format::LOG_START_BLOCK * crate::BLOCK_BYTES as u64
                        || matches!(purpose, IoPurpose::SuperblockWrite)
                );
                self.stats.writes += 1;
                self.stats.bytes_written += data.len() as u64;
            }
            IoKind::Sync => self.stats.syncs += 1,
        }
        let token = self.io.tokens.insert(purpose);
        self.io.out.push_back(IoRequest { token, kind });
    }
}

pub struct Engine {
    shared: Shared,
    phase: Phase,
    now: u64,
    keyspace: Keyspace,
    clients: ClientTable,
    reads: ReadScheduler,
    log: Log,
    cleaner: Cleaner,
    checkpointer: Checkpointer,
    superblock: SuperblockWriter,
    watches: watches::Watches,
    /// Active expiry found keys due that it could not delete yet (a newer write pending, a key
    /// locked): an input that settles them wakes it, not the clock.
    expiry_blocked: bool,
}

impl Engine {
    fn new(config: Config, phase: Phase) -> Engine {
        assert!(config.queue_depth_max > 0);
        assert!(config.client_pipeline_max > 0);
        assert!(config.index_bytes_max <= config::INDEX_BYTES_LIMIT, "index_bytes_max above the arena's bound");
        // A configuration is code, not input: one whose batches could not be stored is a bug.
        assert!(
            config.batch_blocks_max <= crate::format::BATCH_BLOCKS_LIMIT,
            "batch_blocks_max {} is above the format's limit {}",
            config.batch_blocks_max,
            crate::format::BATCH_BLOCKS_LIMIT
        );
        Engine {
            phase,
            now: 0,
            keyspace: Keyspace::new(&config),
            clients: ClientTable::default(),
            reads: ReadScheduler::default(),
            log: Log::default(),
            cleaner: Cleaner::default(),
            checkpointer: Checkpointer::default(),
            superblock: SuperblockWriter::default(),
            watches: watches::Watches::default(),
            expiry_blocked: false,
            shared: Shared {
                volume: Volume::default(),
                io: IoQueue { tokens: TokenTable::new(), out: VecDeque::new() },
                stats: EngineStats::default(),
                read_only: None,
                spare_buffers: Vec::new(),
                config,
            },
        }
    }

    /// Formats a fresh volume: writes both superblock copies and syncs. `volume_id` must differ
    /// between formats of the same device (the driver draws it at random) so that records left
    /// by an earlier format can never verify.
    pub fn format(config: Config, volume_id: u64) -> Engine {
        let mut engine = Engine::new(config, Phase::Formatting);
        engine.start_format(volume_id);
        engine
    }

    /// Opens an existing volume and recovers its state from the log.
    pub fn open(config: Config) -> Engine {
        let mut engine = Engine::new(config, Phase::Recovering(Box::default()));
        engine.start_recovery();
        engine
    }

    /// Input: a client's request. The reply comes out of [`Engine::poll_reply`], in the order
    /// the client submitted its requests.
    pub fn submit(&mut self, client: ClientId, request: Request) {
        self.clients.enqueue(client, request, self.shared.config.client_pipeline_max);
        self.run_client(client);
        self.release_replies(client);
    }

    /// Input: the completion of an I/O this engine asked for.
    ///
    /// # Panics
    /// If the token is not in flight: a driver that completes an I/O twice is broken.
    pub fn complete(&mut self, completion: IoCompletion) {
        let purpose =
            self.shared.io.tokens.remove(completion.token).expect("completion for a token that is not in flight");
        match purpose {
            IoPurpose::SuperblockRead => self.on_superblock_read(completion.result),
            IoPurpose::FormatProbe { volume_id } => self.on_format_probe(volume_id, completion.result),
            IoPurpose::RecoveryChunk { start_block, prefetch } => {
                self.on_recovery_chunk(start_block, prefetch, completion.result)
            }
            IoPurpose::SuperblockWrite => {
                let step = self.superblock.on_write(completion.result, &mut self.shared);
                self.on_superblock_step(step);
            }
            IoPurpose::SuperblockSync => {
                let keys_hint = self.keyspace.index.len();
                let step = self.superblock.on_sync(completion.result, keys_hint, &mut self.shared);
                self.on_superblock_step(step);
            }
            IoPurpose::BatchWrite { sequence } => {
                let step = self.log.on_write(sequence, completion.result, &mut self.shared);
                self.on_log_step(step);
            }
            IoPurpose::MirrorRead { block, sequence } => self.on_mirror_read(block, sequence, completion.result),
            IoPurpose::MirrorRepair => self.on_mirror_repaired(completion.result),
            IoPurpose::NewestMirrorRead => self.on_newest_mirror_read(completion.result),
            IoPurpose::NewestLogRead => self.on_newest_log_read(completion.result),
            IoPurpose::NewestMirrorWrite => self.on_newest_mirror_written(completion.result),
            IoPurpose::BatchSync { sequence } => {
                let step = self.log.on_sync(sequence, completion.result, &mut self.shared);
                self.on_log_step(step);
            }
            IoPurpose::ValueRead(job) => self.on_value_read(job, completion.result),
            IoPurpose::CompactionRead { piece_block } => {
                let (cleaner, mut cx) = self.cleaner_parts();
                let step = cleaner.on_read(&mut cx, piece_block, completion.result);
                self.on_cleaner_step(step);
            }
            IoPurpose::CheckpointWrite => {
                let step = self.checkpointer.on_write(completion.result);
                self.on_checkpoint_step(step);
            }
            IoPurpose::CheckpointSync => {
                let step = self.checkpointer.on_sync(completion.result);
                self.on_checkpoint_step(step);
            }
            IoPurpose::CheckpointRead(checkpoint) => self.on_checkpoint_read(checkpoint, completion.result),
        }
        self.reads.issue(&mut self.shared);
        self.drive_background();
    }

    /// Appends a command's records to the open batch, all or none; returns the batch sequence.
    /// A writer refused for space learns here whether it waits (compaction will free some) or
    /// hears that the disk is full.
    fn append_records(&mut self, records: &[NewRecord<'_>], writer: Writer) -> Result<u64, AppendRefused> {
        let refused = match self.log.append(records, writer, &self.shared) {
            Ok(sequence) => return Ok(sequence),
            Err(refused) => refused,
        };
        let waits = match refused {
            LogRefused::BatchFull => return Err(AppendRefused::BatchFull),
            LogRefused::Reply(reply) => return Err(AppendRefused::Reply(reply)),
            LogRefused::MustSeal => true,
            LogRefused::NoRoom => writer == Writer::Compaction || self.space_may_come(),
        };
        if !waits {
            let why = match &self.cleaner.halted {
                Some(reason) => format!("compaction is halted: {reason}"),
                None => "compaction cannot free more until keys are deleted".to_string(),
            };
            let text = format!("OOM disk full: no room left in the log for this write ({why})");
            return Err(AppendRefused::Reply(Reply::error(text)));
        }
        if writer != Writer::Compaction {
            self.log.waiting_for_space = true;
        }
        Err(AppendRefused::BatchFull)
    }

    /// Whether a write refused for space now may fit soon: compaction is at work, or a batch
    /// about to become durable may turn records into garbage it can free.
    fn space_may_come(&self) -> bool {
        self.shared.read_only.is_none() && (self.compaction_state() == CompactionState::Working || self.log.unsettled())
    }

    /// Seals the open batch at once if no batch is in flight (a lone writer waits for nothing);
    /// with one in flight and room for another, at the end of the driver's loop turn (`tick`),
    /// so the turn's other writes join it; with the pipeline full, once a batch is durable.
    fn maybe_seal(&mut self) {
        if self.log.seal_at_tick {
            return;
        }
        if self.log.in_flight_count() == 0 {
            self.seal_now();
        } else if self.log.has_pending_records() && self.log.pipeline_has_room(&self.shared) {
            self.log.seal_at_tick = true;
        }
    }

    fn seal_now(&mut self) {
        if self.log.seal(&mut self.shared) {
            // Room in the open batch again: clients stalled on a full batch may go on.
            self.wake_stalled();
        }
    }

    fn on_log_step(&mut self, step: LogStep) {
        match step {
            LogStep::Nothing => {}
            LogStep::Durable { batches } => {
                for (sequence, effects) in batches {
                    self.keyspace.apply_durable(sequence, effects, &mut self.shared.stats);
                }
                self.release_all_replies();
            }
            LogStep::Failed(reason) => self.fail_writes(reason),
        }
    }

    /// After a failed write or sync nothing more is written: the open and in-flight batches are
    /// dropped, every reply that waited on them becomes an error, and reads see only what is
    /// durable. A restart runs recovery.
    fn fail_writes(&mut self, reason: ReadOnlyReason) {
        self.shared.read_only = Some(reason);
        self.log.abandon();
        if !self.shared.config.has_bug(config::Bug::ReadOnlyKeepsPendingWrites) {
            self.keyspace.discard_overlay();
            assert!(
                self.keyspace.overlay.is_empty() && self.keyspace.cleared_at.is_none(),
                "read-only shows durable state only"
            );
        }
        self.clients.fail_waiting(self.log.durable_sequence);
        self.release_all_replies();
        self.wake_stalled();
    }

    /// Starts rewriting both superblock copies (see superblock_writer.rs).
    fn start_superblock_update(&mut self, reason: UpdateReason, tail: LogPosition, checkpoint: Option<CheckpointRef>) {
        let keys_hint = self.keyspace.index.len();
        self.superblock.start(reason, tail, checkpoint, keys_hint, &mut self.shared);
    }

    /// A superblock update finished (both copies durable) or failed: the volume, and whoever
    /// asked for the update, learn of it.
    fn on_superblock_step(&mut self, step: SuperblockStep) {
        match step {
            SuperblockStep::Continues => {}
            SuperblockStep::Durable { reason, tail, checkpoint } => {
                if reason == UpdateReason::TailAdvance {
                    let tail_block = self.shared.volume.tail.block;
                    compaction::debug_assert_nothing_points_between(
                        &self.shared,
                        &self.keyspace,
                        tail_block,
                        tail.block,
                    );
                    assert!(tail.sequence > self.shared.volume.tail.sequence, "the tail moves forward");
                }
                (self.shared.volume.tail, self.shared.volume.checkpoint) = (tail, checkpoint);
                match reason {
                    UpdateReason::Open => {
                        self.phase = Phase::Ready;
                        self.run_all_clients();
                    }
                    UpdateReason::TailAdvance => {
                        let (cleaner, mut cx) = self.cleaner_parts();
                        let step = cleaner.on_tail_advanced(&mut cx);
                        self.on_cleaner_step(step);
                    }
                    UpdateReason::Checkpoint => self.checkpointer.recorded(&mut self.shared),
                }
            }
            SuperblockStep::Failed { reason: UpdateReason::Open, error } => self.fail_open(OpenError::Io(error)),
            SuperblockStep::Failed { error, .. } => self.fail_writes(ReadOnlyReason::SuperblockWriteFailed(error)),
        }
    }

    /// The cleaner, and its borrow of its siblings for one step.
    fn cleaner_parts(&mut self) -> (&mut Cleaner, CleanerContext<'_>) {
        let context = CleanerContext {
            shared: &mut self.shared,
            log: &mut self.log,
            keyspace: &self.keyspace,
            reads: &self.reads,
            superblock_busy: self.superblock.busy(),
        };
        (&mut self.cleaner, context)
    }

    /// Does what the cleaner asked for. A seal may hand the cleaner back a step (at most one
    /// more: resuming never seals again).
    fn on_cleaner_step(&mut self, step: CleanerStep) {
        let mut step = step;
        for _ in 0..2 {
            match step {
                CleanerStep::Nothing => return,
                CleanerStep::Seal(resume) => {
                    self.maybe_seal();
                    let (cleaner, mut cx) = self.cleaner_parts();
                    step = cleaner.resume(&mut cx, resume);
                }
                CleanerStep::AdvanceTail { new_tail, checkpoint } => {
                    return self.start_superblock_update(UpdateReason::TailAdvance, new_tail, checkpoint);
                }
                CleanerStep::WakeWriters => return self.wake_stalled(),
            }
        }
        unreachable!("a resumed cleaner asked for a second seal");
    }

    /// What compaction is doing.
    pub fn compaction_state(&self) -> CompactionState {
        if !matches!(self.phase, Phase::Ready) {
            return CompactionState::Idle;
        }
        self.cleaner.compaction_state(&compaction::View {
            shared: &self.shared,
            log: &self.log,
            keyspace: &self.keyspace,
        })
    }

    fn drive_background_checkpoint(&mut self) {
        if matches!(self.phase, Phase::Ready) {
            let busy = self.superblock.busy();
            let step = self.checkpointer.drive(&mut self.shared, &self.log, &self.keyspace.index, busy);
            self.on_checkpoint_step(step);
        }
    }

    fn on_checkpoint_step(&mut self, step: CheckpointStep) {
        match step {
            CheckpointStep::Nothing => {}
            CheckpointStep::Record(checkpoint) => {
                let tail = self.shared.volume.tail;
                self.start_superblock_update(UpdateReason::Checkpoint, tail, Some(checkpoint));
            }
            CheckpointStep::Failed(reason) => self.fail_writes(reason),
        }
    }

    /// Asks for a checkpoint as soon as possible (a clean shutdown makes the next restart fast).
    /// [`Engine::checkpoint_in_progress`] says when it is recorded.
    pub fn checkpoint_now(&mut self) {
        self.checkpointer.force(&self.shared);
        self.drive_background_checkpoint();
    }

    /// A checkpoint is asked for or being written.
    pub fn checkpoint_in_progress(&self) -> bool {
        self.checkpointer.in_progress(&self.shared)
    }

    /// Active expiry, compaction and checkpoints go on after every input that may unblock them.
    fn drive_background(&mut self) {
        let due = self.next_expiry_tick().is_some_and(|tick| tick <= self.now);
        self.expiry_blocked = due && !self.expire_due_keys();
        if matches!(self.phase, Phase::Ready) {
            let (cleaner, mut cx) = self.cleaner_parts();
            let step = cleaner.drive(&mut cx);
            self.on_cleaner_step(step);
        }
        self.drive_background_checkpoint();
        // Writes waiting for space learn that none is coming (compaction paused, halted or idle,
        // no batch pending, read-only): they run again and get their answer.
        if self.log.waiting_for_space && !self.space_may_come() {
            self.log.waiting_for_space = false;
            self.wake_stalled();
        }
    }

    /// Input: the end of the driver's loop turn, with the time: `now_ms`, milliseconds of a
    /// monotonic clock whose origin the driver picks (never decreasing; equal values are fine).
    /// Call it once per turn, after feeding the turn's completions and requests, and whenever
    /// [`Engine::poll_timeout`] asks. When a batch becomes durable the next one is sealed here,
    /// not at once, so that clients answered in this turn can put their next writes into it.
    /// The engine keeps no timers of its own: `poll_timeout` is how it asks for the next tick.
    pub fn tick(&mut self, now_ms: u64) {
        let now = now_ms;
        debug_assert!(now >= self.now, "time runs forward");
        self.now = now;
        if std::mem::take(&mut self.log.seal_at_tick) {
            self.seal_now();
        }
        self.drive_background();
    }

    /// Input: wall-clock time, Unix milliseconds, for expiry (a key expires at a Unix time,
    /// which survives restarts). Call it before `tick` each turn; a value below the last one
    /// (the wall clock stepped back) is ignored, so keys never come back within a run.
    pub fn set_unix_time_ms(&mut self, unix_ms: u64) {
        self.keyspace.now_unix_ms = self.keyspace.now_unix_ms.max(unix_ms);
    }

    /// Output: the next I/O to perform.
    pub fn poll_io(&mut self) -> Option<IoRequest> {
        self.shared.io.out.pop_front()
    }

    /// Output, during recovery: a large buffer the engine is done with (a chunk of the log). A
    /// driver may return a read's bytes in it instead of in freshly allocated memory: a new
    /// 4 MiB allocation is fresh pages the kernel zeroes on first touch, which was 43 % of a
    /// restart's CPU time. Draining these is optional; undrained ones are dropped when the
    /// open completes. A driver should drop its own once the open completes
    /// (`Driver::forget_spare_buffers` in io-real): later reads are small.
    pub fn poll_spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.shared.spare_buffers.pop()
    }

    /// Output: the next reply, with the client it is for.
    pub fn poll_reply(&mut self) -> Option<(ClientId, Reply)> {
        self.clients.poll_reply()
    }

    /// Output (with `Config::publish_cache`): the next change of the value cache. Drain these
    /// before `poll_reply`, so that a copy of the cache never lags a reply already released.
    pub fn poll_cache_change(&mut self) -> Option<CacheChange> {
        self.keyspace.cache.poll_change()
    }

    /// Output: the time (in `tick`'s milliseconds) at which the engine next wants
    /// [`Engine::tick`]: now, if a sealed-at-tick batch waits, or if background work
    /// (compaction, a checkpoint) can go on with no I/O in flight to wake it; otherwise `None`,
    /// since nothing in the engine waits on time today. A driver that ticks when asked, at the
    /// end of each loop turn and on completions, loses no progress.
    pub fn poll_timeout(&self) -> Option<u64> {
        let writable = matches!(self.phase, Phase::Ready) && self.shared.read_only.is_none();
        let background = writable
            && self.shared.io.tokens.is_empty()
            && (self.compaction_state() == CompactionState::Working
                || self.checkpointer.wants_tick(&self.shared, &self.log));
        let now = (self.log.seal_at_tick || background).then_some(self.now);
        // The next key to expire, unless the keys due now wait on an input (a batch, a read).
        let expiry = self.next_expiry_tick().filter(|tick| writable && !(self.expiry_blocked && *tick <= self.now));
        match (now, expiry) {
            (Some(now), _) => Some(now),
            (None, expiry) => expiry,
        }
    }

    /// The client has gone: its queued commands still run (a write sent is a write made), but
    /// their replies are dropped.
    pub fn disconnect(&mut self, client: ClientId) {
        self.watches.unwatch(client);
        self.clients.disconnect(client);
        self.release_replies(client);
    }

    /// A one-line summary of what the engine waits on, for liveness reports.
    pub fn debug_state(&self) -> String {
        let (clients, front) = self.clients.debug_state();
        format!(
            "{clients}, {} reads queued, {} I/Os in flight, {}, log tail {} head {} of {:?}, compaction {}; {front}",
            self.reads.queued(),
            self.shared.io.tokens.len(),
            self.log.debug_state(),
            self.shared.volume.tail.block,
            self.log.head_block(),
            self.shared.ring(),
            self.cleaner.describe(),
        )
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    pub fn open_error(&self) -> Option<&OpenError> {
        match &self.phase {
            Phase::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// Why the engine refuses writes, if it does.
    pub fn read_only_reason(&self) -> Option<&ReadOnlyReason> {
        self.shared.read_only.as_ref()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    /// How much of the log region is in use and how much of that is live.
    pub fn space(&self) -> SpaceReport {
        if !matches!(self.phase, Phase::Ready) {
            return SpaceReport::default();
        }
        SpaceReport {
            log_capacity_bytes: self.shared.ring().capacity_blocks() * crate::BLOCK_BYTES as u64,
            log_used_bytes: compaction::used_blocks(&self.shared, &self.log) * crate::BLOCK_BYTES as u64,
            live_bytes: self.keyspace.index.live_record_bytes(),
        }
    }

    /// Why compaction stopped for good, if it did (it never drops data it cannot read).
    pub fn compaction_halted(&self) -> Option<&HaltReason> {
        self.cleaner.halted.as_ref()
    }

    pub fn io_in_flight(&self) -> usize {
        self.shared.io.tokens.len()
    }

    pub fn reads_in_flight(&self) -> usize {
        self.reads.in_flight()
    }

    /// Commands the client has submitted that have not been answered yet.
    pub fn client_backlog(&self, client: ClientId) -> usize {
        self.clients.backlog(client)
    }

    /// Keys in the newest state (what DBSIZE answers, durable or not).
    pub fn key_count(&self) -> u64 {
        self.keyspace.live_keys
    }

    /// A durable key's expiry time, if it has one (for checkers).
    pub fn durable_expiry(&self, key: &[u8]) -> Option<u64> {
        self.keyspace.index.expiry(key)
    }

    /// Durable keys with an expiry time (INFO's `expires`).
    pub fn expiring_key_count(&self) -> usize {
        self.keyspace.index.expiries.len()
    }

    /// The durable keys and their locations, in the index's (seeded, deterministic) order: for
    /// checkers and `quill check`.
    pub fn durable_index(&self) -> impl Iterator<Item = (&[u8], Location)> + '_ {
        self.keyspace.index.iter()
    }

    /// Where the durable record of `key` lives, if the index has one: for checkers.
    pub fn durable_location(&self, key: &[u8]) -> Option<Location> {
        self.keyspace.index.get(key)
    }

    /// The highest batch sequence number known durable.
    pub fn durable_sequence(&self) -> u64 {
        self.log.durable_sequence
    }

    pub fn volume_id(&self) -> u64 {
        self.shared.volume.volume_id
    }

    pub fn epoch(&self) -> u64 {
        self.shared.volume.epoch
    }

    /// The largest value this engine accepts.
    pub fn value_bytes_max(&self) -> usize {
        self.shared.config.value_bytes_max
    }

    pub fn cache_bytes(&self) -> usize {
        self.keyspace.cache.bytes()
    }
}
