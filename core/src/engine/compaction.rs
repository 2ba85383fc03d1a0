//! Compaction: cleaning the log's tail. The oldest batches are read a chunk at a time; every
//! record the index still points at is copied to the head (a move, in the same batches as
//! client writes), tombstones and overwritten records are dropped, and once the moves are
//! durable and no read in flight points into the chunk, the superblock moves the tail past it
//! and its blocks are free.
//!
//! Why the oldest batches, not the emptiest: dropping a tombstone is safe exactly when no older
//! record of its key can remain, and at the tail none can. Under overwrites the oldest batches
//! are also the emptiest ones, since their records have had the longest time to be replaced.
//!
//! Bounds: one chunk in flight at a time; moves fill at most `compaction_batch_percent` of a
//! batch, so a client write waits for at most one batch of moves beside it.

use std::collections::VecDeque;
use std::ops::Range;

use super::commit::{Log, LogRefused, NewRecord};
use super::keyspace::{Keyspace, Location};
use super::reads::ReadScheduler;
use super::reasons::HaltReason;
use super::space::{Ring, Writer};
use super::LogPosition;
use super::{IoPurpose, Shared};
use crate::format::CheckpointRef;
use crate::format::{BatchHeader, BatchRecords, RecordKind, LOG_START_BLOCK};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// What the cleaner reads and uses while it works: its siblings' state, borrowed for one step.
/// It appends its moves to the log directly (a sibling, not the engine); everything else it
/// wants done it returns as a [`CleanerStep`].
pub struct CleanerContext<'a> {
    pub shared: &'a mut Shared,
    pub log: &'a mut Log,
    pub keyspace: &'a Keyspace,
    pub reads: &'a ReadScheduler,
    pub superblock_busy: bool,
}

/// What the cleaner only reads: enough to say whether it wants to work.
pub struct View<'a> {
    pub shared: &'a Shared,
    pub log: &'a Log,
    pub keyspace: &'a Keyspace,
}

impl CleanerContext<'_> {
    fn view(&self) -> View<'_> {
        View { shared: self.shared, log: self.log, keyspace: self.keyspace }
    }
}

/// What the engine must do for the cleaner.
pub enum CleanerStep {
    Nothing,
    /// Seal the open batch (as any writer would: unless a seal waits for the tick, and waking
    /// the writers stalled on it), then hand `Resume` back to [`Cleaner::resume`].
    Seal(Resume),
    /// Rewrite the superblock with the tail at `new_tail` (and the checkpoint, if still usable).
    AdvanceTail {
        new_tail: LogPosition,
        checkpoint: Option<CheckpointRef>,
    },
    /// The tail advanced while writes waited for space: wake them.
    WakeWriters,
}

/// A tail advance waiting: once batch `sequence` (the last move's) is durable, the tail may
/// move to `new_tail`, freeing the chunks cleaned; `moved_bytes` of records were copied.
#[derive(Clone, Copy)]
struct Advance {
    sequence: u64,
    new_tail: LogPosition,
    moved_bytes: u64,
}

/// Where the cleaner goes on after the engine sealed the open batch for it.
pub struct Resume(ResumeAt);

enum ResumeAt {
    /// The batch was full: wait in this state for the next drive.
    Park(CleanerState),
    /// Every move is appended: try to advance the tail.
    Advance { sequence: u64, new_tail: LogPosition, moved_bytes: u64 },
}

/// Blocks the log uses, from the tail to the head.
pub fn used_blocks(shared: &Shared, log: &Log) -> u64 {
    shared.ring().used_blocks(shared.volume.tail.block, log.head_block())
}

/// Consecutive failed chunk reads before compaction gives up until restart.
const READ_FAILURES_MAX: u32 = 3;

/// A live record found in a chunk: where its key and value sit in the chunk, and its location.
struct Candidate {
    key: Range<usize>,
    value: Range<usize>,
    location: Location,
    /// The batch holding it (block, sequence): where the tail may move to if the moves before
    /// it are all that fit.
    batch: LogPosition,
    /// The copy keeps the record's expiry time.
    expires_at_ms: Option<u64>,
}

/// A chunk being parsed, a bounded number of bytes per step, so that a chunk never stalls
/// client requests for long.
struct ChunkScan {
    chunk: Vec<u8>,
    start_block: u64,
    /// Batches up to this one were durable when the chunk was read: only they are whole in it.
    durable_sequence: u64,
    block: u64,
    sequence: u64,
    candidates: VecDeque<Candidate>,
}

/// How far one parsing step got.
enum ScanStep {
    More,
    Done,
    /// The expected batch is not at the chunk's start: look at the region's start.
    Missing,
}

/// Chunk bytes parsed per step (per input to the engine).
const PARSE_BYTES_PER_STEP: usize = 256 * 1024;

/// Compaction's reads of one chunk in flight at once: the chunk is read in pieces, so that
/// commits reach the device between them instead of waiting behind one large read.
const CHUNK_PIECES_IN_FLIGHT_MAX: u64 = 2;

/// A chunk being read in pieces (`Config::compaction_read_piece_blocks`), at most
/// `CHUNK_PIECES_IN_FLIGHT_MAX` at a time; pieces may complete in any order.
struct ChunkRead {
    start_block: u64,
    blocks: u64,
    durable_sequence: u64,
    bytes: Vec<u8>,
    issued_blocks: u64,
    received_blocks: u64,
    in_flight: u64,
    error: Option<IoError>,
}

#[derive(Default)]
enum CleanerState {
    #[default]
    Idle,
    Reading(ChunkRead),
    Parsing(ChunkScan),
    Moving {
        chunk: Vec<u8>,
        candidates: VecDeque<Candidate>,
        last_sequence: u64,
        new_tail: LogPosition,
        moved_bytes: u64,
    },
    /// Moves appended: waiting for batch `sequence` to be durable and for reads into the freed
    /// blocks to finish.
    Settling {
        sequence: u64,
        new_tail: LogPosition,
        moved_bytes: u64,
    },
    Recording,
}

#[derive(Default)]
pub struct Cleaner {
    /// The next batch to clean: its block (or the wrap gap before it) and sequence.
    scan_block: u64,
    scan_sequence: u64,
    /// The expected batch was not at `scan_block`; it is being looked for at the region's start.
    wrap_tried: bool,
    state: CleanerState,
    /// Why compaction stopped for good (until restart): it never drops data it cannot read.
    pub halted: Option<HaltReason>,
    read_failures: u32,
    /// This lap of the log: blocks freed so far, and the log's use when it began. A lap that
    /// shrank the log by less than a chunk only moved live records in circles.
    lap_freed_blocks: u64,
    /// The log space compaction's moves had taken when this lap began (`Log::moved_space_bytes`).
    lap_start_moved_space_bytes: u64,
    /// Writes that had made garbage when this lap began (`EngineStats::records_replaced`): a
    /// lap during which deletes or overwrites made new garbage is not judged on the gain it
    /// measured before that garbage existed (seed 1588, full_disk: a drain of 64 of 88 keys
    /// mid-lap, then a pause with writes refused and most of the log reclaimable).
    lap_start_replaced: u64,
    /// Client records committed (`records_committed` less `records_moved`) and the log's used
    /// blocks when this lap began: a lap with no client write that left the log no smaller
    /// only carried the same records around the ring, and every later lap would too (seed 7567:
    /// a 54-block ring of 8 KB records, one per batch, whose padding kept it above its target).
    lap_start_client_records: u64,
    lap_start_used_blocks: u64,
    /// Chunks cleaned whose tail advance waits for more: one advance per few chunks, since each
    /// costs two superblock writes and syncs. (The last move's batch, the new tail, the bytes.)
    deferred: Option<Advance>,
    /// Paused after a lap without gain, until a write makes new garbage (this count changes).
    paused_at_garbage: Option<u64>,
}

impl Cleaner {
    pub fn reset(&mut self, tail: LogPosition) {
        *self = Cleaner { scan_block: tail.block, scan_sequence: tail.sequence, ..Cleaner::default() };
    }

    pub fn describe(&self) -> &'static str {
        match self.state {
            CleanerState::Idle => "idle",
            CleanerState::Reading(_) => "reading",
            CleanerState::Parsing(_) => "parsing",
            CleanerState::Moving { .. } => "moving",
            CleanerState::Settling { .. } => "settling",
            CleanerState::Recording => "recording",
        }
    }
}

/// What compaction is doing, for drivers and the simulator's space check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionState {
    /// Nothing to do: the log is within its target.
    Idle,
    /// Cleaning, or wanting to.
    Working,
    /// A whole lap of the log gained nothing (headers and padding only); waits for new garbage.
    Paused,
    /// Stopped for good (until restart) at data it could not read.
    Halted,
}

impl Cleaner {
    /// What compaction is doing (the engine is ready).
    pub fn compaction_state(&self, cx: &View) -> CompactionState {
        if self.halted.is_some() {
            return CompactionState::Halted;
        }
        if self.paused_at_garbage == Some(cx.shared.stats.records_replaced) {
            return CompactionState::Paused;
        }
        let idle = matches!(self.state, CleanerState::Idle) && self.deferred.is_none();
        if idle && (!self.compaction_wanted(cx) || self.scan_sequence > cx.log.durable_sequence) {
            CompactionState::Idle
        } else {
            CompactionState::Working
        }
    }

    /// Garbage beyond the target, or free space running low with garbage worth a chunk and a
    /// quarter of the live bytes (headers and padding are never reclaimed entirely).
    fn compaction_wanted(&self, cx: &View) -> bool {
        if self.paused_at_garbage == Some(cx.shared.stats.records_replaced) {
            return false;
        }
        let chunk_blocks = cx.shared.chunk_blocks();
        let batch_blocks = cx.shared.volume.batch_blocks_max;
        let used_blocks = used_blocks(cx.shared, cx.log);
        let live_bytes = cx.keyspace.index.live_record_bytes();
        let slack_blocks = Ring::reserve_blocks(Writer::Put, chunk_blocks, batch_blocks) + u64::from(chunk_blocks);
        if Ring::over_target(used_blocks, live_bytes, cx.shared.config.space_amplification_percent, slack_blocks) {
            return true;
        }
        if cx.shared.config.has_bug(super::config::Bug::CompactionIgnoresLowSpace) {
            return false;
        }
        let free_blocks = cx.shared.ring().free_blocks(cx.shared.volume.tail.block, cx.log.head_block());
        // Low: a largest batch, and the gap a wrap may leave before it, might not fit beside the
        // put reserve (a 64 KB value was refused with compaction idle, seed 617 value_domains).
        let put_blocks_max = 2 * u64::from(batch_blocks);
        let reserve_blocks = Ring::reserve_blocks(Writer::Put, chunk_blocks, batch_blocks);
        let low = free_blocks < reserve_blocks + u64::from(chunk_blocks).max(put_blocks_max);
        // Low on space, anything beyond the live records and a chunk is worth a lap: deletes must
        // get their space back. A lap that gains nothing pauses compaction (`end_lap_if_done`).
        low && used_blocks * BLOCK_BYTES as u64 > live_bytes + u64::from(chunk_blocks) * BLOCK_BYTES as u64
    }

    /// Moves compaction forward as far as it can without waiting. Called after every
    /// completion and tick.
    pub fn drive(&mut self, cx: &mut CleanerContext) -> CleanerStep {
        if cx.shared.read_only.is_some() || self.halted.is_some() {
            return CleanerStep::Nothing;
        }
        match std::mem::take(&mut self.state) {
            CleanerState::Idle => {
                if self.compaction_wanted(&cx.view()) && self.scan_sequence <= cx.log.durable_sequence {
                    self.read_tail_chunk(cx);
                } else if let Some(Advance { sequence, new_tail, moved_bytes }) = self.deferred.take() {
                    return self.try_advance_tail(cx, sequence, new_tail, moved_bytes);
                }
                CleanerStep::Nothing
            }
            CleanerState::Parsing(scan) => self.continue_chunk(cx, scan),
            CleanerState::Moving { chunk, candidates, last_sequence, new_tail, moved_bytes } => {
                self.append_moves(cx, chunk, candidates, last_sequence, new_tail, moved_bytes)
            }
            CleanerState::Settling { sequence, new_tail, moved_bytes } => {
                self.try_advance_tail(cx, sequence, new_tail, moved_bytes)
            }
            state @ (CleanerState::Reading(_) | CleanerState::Recording) => {
                self.state = state;
                CleanerStep::Nothing
            }
        }
    }

    /// Goes on after the engine sealed the open batch for a [`CleanerStep::Seal`].
    pub fn resume(&mut self, cx: &mut CleanerContext, resume: Resume) -> CleanerStep {
        match resume.0 {
            ResumeAt::Park(state) => {
                self.state = state;
                CleanerStep::Nothing
            }
            ResumeAt::Advance { sequence, new_tail, moved_bytes } => {
                self.try_advance_tail(cx, sequence, new_tail, moved_bytes)
            }
        }
    }

    fn read_tail_chunk(&mut self, cx: &mut CleanerContext) {
        let ring = cx.shared.ring();
        if self.scan_block >= ring.end {
            self.scan_block = ring.start;
        }
        let start_block = self.scan_block;
        let blocks = u64::from(cx.shared.chunk_blocks()).min(ring.end - start_block);
        let bytes = vec![0; usize::try_from(blocks * BLOCK_BYTES as u64).expect("a chunk fits memory")];
        let durable_sequence = cx.log.durable_sequence;
        let mut read = ChunkRead {
            start_block,
            blocks,
            durable_sequence,
            bytes,
            issued_blocks: 0,
            received_blocks: 0,
            in_flight: 0,
            error: None,
        };
        for _ in 0..CHUNK_PIECES_IN_FLIGHT_MAX {
            issue_piece(cx, &mut read);
        }
        self.state = CleanerState::Reading(read);
    }

    /// A piece of the chunk being read arrived: the next piece goes out; once every piece
    /// issued is back (all of them, or up to a failure), the chunk is parsed.
    pub fn on_read(
        &mut self,
        cx: &mut CleanerContext,
        piece_block: u64,
        result: Result<Vec<u8>, IoError>,
    ) -> CleanerStep {
        let CleanerState::Reading(read) = &mut self.state else {
            unreachable!("a compaction read completes only while the chunk is being read");
        };
        assert!(read.in_flight > 0, "a piece was in flight");
        read.in_flight -= 1;
        match result {
            Ok(piece) => {
                let at = usize::try_from((piece_block - read.start_block) * BLOCK_BYTES as u64).expect("in memory");
                read.bytes[at..at + piece.len()].copy_from_slice(&piece);
                read.received_blocks += (piece.len() / BLOCK_BYTES) as u64;
            }
            Err(error) => read.error = read.error.take().or(Some(error)),
        }
        if read.error.is_none() {
            issue_piece(cx, read);
        }
        if read.in_flight > 0 {
            return CleanerStep::Nothing;
        }
        let CleanerState::Reading(read) = std::mem::take(&mut self.state) else { unreachable!("matched above") };
        debug_assert!(read.error.is_some() || read.received_blocks == read.blocks, "every piece arrived");
        let (start_block, durable_sequence) = (read.start_block, read.durable_sequence);
        let result = match read.error {
            Some(error) => Err(error),
            None => Ok(read.bytes),
        };
        self.on_chunk(cx, start_block, durable_sequence, result)
    }

    fn on_chunk(
        &mut self,
        cx: &mut CleanerContext,
        start_block: u64,
        durable_sequence: u64,
        result: Result<Vec<u8>, IoError>,
    ) -> CleanerStep {
        self.state = CleanerState::Idle;
        let chunk = match result {
            Ok(chunk) => chunk,
            Err(error) => {
                self.read_failures += 1;
                if self.read_failures >= READ_FAILURES_MAX {
                    self.halted = Some(HaltReason::TailReadsFailed { attempts: READ_FAILURES_MAX, error });
                }
                return CleanerStep::Nothing;
            }
        };
        self.read_failures = 0;
        if cx.shared.read_only.is_some() {
            return CleanerStep::Nothing;
        }
        let sequence = self.scan_sequence;
        let candidates = VecDeque::new();
        let scan = ChunkScan { chunk, start_block, durable_sequence, block: start_block, sequence, candidates };
        self.continue_chunk(cx, scan)
    }

    /// Parses the next part of the chunk; once it is all parsed, moves its live records.
    fn continue_chunk(&mut self, cx: &mut CleanerContext, mut scan: ChunkScan) -> CleanerStep {
        match self.parse_step(cx, &mut scan) {
            Ok(ScanStep::More) => self.state = CleanerState::Parsing(scan),
            Ok(ScanStep::Done) => {
                let next_block =
                    if scan.block >= cx.shared.volume.log_end_block { LOG_START_BLOCK } else { scan.block };
                self.scan_block = next_block;
                self.scan_sequence = scan.sequence;
                self.wrap_tried = false;
                cx.shared.stats.compaction_chunks += 1;
                let new_tail = LogPosition { block: next_block, sequence: scan.sequence };
                return self.append_moves(cx, scan.chunk, scan.candidates, 0, new_tail, 0);
            }
            Ok(ScanStep::Missing) => {}
            Err(reason) => self.halted = Some(reason),
        }
        CleanerStep::Nothing
    }

    /// Collects the live records of the chunk's next whole durable batches, up to
    /// `PARSE_BYTES_PER_STEP` bytes of them, in log order.
    fn parse_step(&mut self, cx: &mut CleanerContext, scan: &mut ChunkScan) -> Result<ScanStep, HaltReason> {
        let chunk_blocks = (scan.chunk.len() / BLOCK_BYTES) as u64;
        let mut parsed_bytes = 0;
        for _ in 0..chunk_blocks {
            if scan.sequence > scan.durable_sequence || scan.block >= scan.start_block + chunk_blocks {
                return Ok(ScanStep::Done);
            }
            if parsed_bytes >= PARSE_BYTES_PER_STEP {
                return Ok(ScanStep::More);
            }
            let (block, sequence) = (scan.block, scan.sequence);
            let at = ((block - scan.start_block) as usize) * BLOCK_BYTES;
            let header = BatchHeader::decode(
                &scan.chunk[at..],
                block,
                cx.shared.volume.volume_id,
                cx.shared.volume.batch_blocks_max,
            )
            .ok()
            .filter(|header| header.sequence == sequence && of_this_epoch(cx.shared, header));
            let Some(header) = header else {
                if block != scan.start_block {
                    return Ok(ScanStep::Done); // the next batch starts a new chunk, or at the region's start
                }
                return self.expected_batch_missing(block, sequence);
            };
            let end = at + header.block_count as usize * BLOCK_BYTES;
            if end > scan.chunk.len() {
                if block == scan.start_block {
                    return Err(HaltReason::BatchPastRegion { sequence, block });
                }
                return Ok(ScanStep::Done);
            }
            header.verify_payload(&scan.chunk[at..end]).map_err(|error| HaltReason::BatchCorrupt {
                sequence,
                block,
                error,
            })?;
            self.collect_live(cx, &header, &scan.chunk[..end], at, &mut scan.candidates)?;
            parsed_bytes += end - at;
            scan.block += u64::from(header.block_count);
            scan.sequence += 1;
        }
        Ok(ScanStep::Done)
    }

    fn expected_batch_missing(&mut self, block: u64, sequence: u64) -> Result<ScanStep, HaltReason> {
        debug_assert!(sequence > 0, "batch sequences start at 1");
        if self.wrap_tried || block == LOG_START_BLOCK {
            return Err(HaltReason::BatchMissing { sequence, block });
        }
        self.wrap_tried = true;
        self.scan_block = LOG_START_BLOCK;
        Ok(ScanStep::Missing)
    }

    /// Adds the batch's records that the index still points at.
    fn collect_live(
        &self,
        cx: &CleanerContext,
        header: &BatchHeader,
        chunk: &[u8],
        batch_at: usize,
        candidates: &mut VecDeque<Candidate>,
    ) -> Result<(), HaltReason> {
        let batch = &chunk[batch_at..];
        for record in BatchRecords::new(batch, header, cx.shared.volume.records_padded) {
            let (at_in_batch, record) =
                record.map_err(|error| HaltReason::RecordUndecodable { sequence: header.sequence, error })?;
            let at = batch_at + at_in_batch;
            let key = at + record.key_offset()..at + record.value_offset();
            let location = Location {
                offset_bytes: header.block * BLOCK_BYTES as u64 + at_in_batch as u64,
                record_bytes: crate::format::batch_size_u32(record.total_bytes()),
                sequence_low: crate::format::low_32_bits(header.sequence),
            };
            if record.kind == RecordKind::Put && cx.keyspace.index.get(&chunk[key.clone()]) == Some(location) {
                let batch = LogPosition { block: header.block, sequence: header.sequence };
                let value = key.end..at + record.total_bytes();
                candidates.push_back(Candidate { value, key, location, batch, expires_at_ms: record.expires_at_ms });
            }
        }
        Ok(())
    }

    /// Appends moves while the open batch has room for them. A record is moved only if it is
    /// still the key's newest state: no newer write, durable or pending, may come before its
    /// copy in the log (recovery replays the copy as a plain put).
    fn append_moves(
        &mut self,
        cx: &mut CleanerContext,
        chunk: Vec<u8>,
        mut candidates: VecDeque<Candidate>,
        mut last_sequence: u64,
        new_tail: LogPosition,
        mut moved_bytes: u64,
    ) -> CleanerStep {
        while let Some(candidate) = candidates.front() {
            let key = &chunk[candidate.key.clone()];
            // A newer write not yet durable replaces the record only once it is durable: the
            // tail may not pass the record before that (if the write is lost in a crash, the
            // record is the key's state again).
            let newer_pending = cx.keyspace.overlay.get(key).map(|pending| pending.sequence).or(cx.keyspace.cleared_at);
            if let Some(sequence) = newer_pending {
                last_sequence = last_sequence.max(sequence);
            }
            let still_newest = cx.keyspace.index.get(key) == Some(candidate.location) && newer_pending.is_none();
            if still_newest {
                let value = &chunk[candidate.value.clone()];
                let from = candidate.location;
                let expires_at_ms = candidate.expires_at_ms;
                debug_assert_eq!(expires_at_ms, cx.keyspace.index.expiry(key), "the index knows the record's expiry");
                match cx.log.append(
                    &[NewRecord::Move { key, value, from, expires_at_ms }],
                    Writer::Compaction,
                    cx.shared,
                ) {
                    Ok(sequence) => {
                        last_sequence = sequence;
                        moved_bytes += u64::from(candidate.location.record_bytes);
                    }
                    // Refused with nothing in flight or open: no room in the ring at all (an open
                    // batch with records would only be full).
                    Err(LogRefused::Reply(_)) => return CleanerStep::Nothing, // read-only: compaction stops
                    // Any other refusal: no room now. With nothing in flight or open, there is no
                    // room in the ring at all (an open batch with records would only be full).
                    Err(_) if !cx.log.unsettled() => {
                        let stop = candidate.batch;
                        return self.advance_before(cx, stop, last_sequence, moved_bytes);
                    }
                    Err(_) => {
                        let state = CleanerState::Moving { chunk, candidates, last_sequence, new_tail, moved_bytes };
                        return CleanerStep::Seal(Resume(ResumeAt::Park(state)));
                    }
                }
            }
            candidates.pop_front();
        }
        let advance = ResumeAt::Advance { sequence: last_sequence, new_tail, moved_bytes };
        CleanerStep::Seal(Resume(advance))
    }

    /// The log has no room for the next move, and nothing pending will make any: the tail moves
    /// up to the batch `stop` (its live records are not moved yet), and cleaning goes on from
    /// there once it has. If that frees nothing, the log is full of live records: compaction
    /// pauses until deletes make garbage, and writes waiting for space get their answer.
    fn advance_before(
        &mut self,
        cx: &mut CleanerContext,
        stop: LogPosition,
        last_sequence: u64,
        moved_bytes: u64,
    ) -> CleanerStep {
        self.scan_block = stop.block;
        self.scan_sequence = stop.sequence;
        self.wrap_tried = false;
        if stop.sequence <= cx.shared.volume.tail.sequence {
            debug_assert!(self.deferred.is_none(), "a deferred advance lies before the stop");
            self.state = CleanerState::Idle;
            self.paused_at_garbage = Some(cx.shared.stats.records_replaced);
            cx.shared.stats.compaction_pauses += 1;
            return CleanerStep::Nothing;
        }
        // `stop` is at or past the end of every chunk cleaned so far (any deferred advance).
        self.try_advance_tail(cx, last_sequence, stop, moved_bytes)
    }

    /// Moves the tail once the moves are durable and no read points into the freed blocks.
    fn try_advance_tail(
        &mut self,
        cx: &mut CleanerContext,
        mut sequence: u64,
        new_tail: LogPosition,
        mut moved_bytes: u64,
    ) -> CleanerStep {
        if let Some(deferred) = self.deferred.take() {
            sequence = sequence.max(deferred.sequence);
            moved_bytes += deferred.moved_bytes;
        }
        if self.may_clean_further(cx, new_tail.block) {
            self.deferred = Some(Advance { sequence, new_tail, moved_bytes });
            self.state = CleanerState::Idle;
            return CleanerStep::Nothing;
        }
        let ring = cx.shared.ring();
        debug_assert!(new_tail.block >= ring.start && new_tail.block <= ring.end, "the new tail lies in the log");
        debug_assert!(new_tail.sequence >= cx.shared.volume.tail.sequence, "the tail never moves back");
        self.state = CleanerState::Settling { sequence, new_tail, moved_bytes };
        if cx.log.durable_sequence < sequence || cx.superblock_busy || self.reads_into(cx, new_tail.block) {
            return CleanerStep::Nothing;
        }
        // The checkpoint stays usable only while the log it replays from is still there.
        let checkpoint = cx.shared.volume.checkpoint.filter(|checkpoint| checkpoint.sequence + 1 >= new_tail.sequence);
        let ring = cx.shared.ring();
        let freed_blocks = ring.used_blocks(cx.shared.volume.tail.block, new_tail.block.max(ring.start));
        self.lap_freed_blocks += freed_blocks;
        cx.shared.stats.records_moved_bytes += moved_bytes;
        self.state = CleanerState::Recording;
        CleanerStep::AdvanceTail { new_tail, checkpoint }
    }

    /// Whether to clean another chunk before moving the tail to `new_tail_block`: fewer than
    /// `compaction_chunks_per_advance` chunks are cleaned, more is wanted and readable, and the
    /// free space holds the moves of every chunk cleaned so far plus one more, beyond the put
    /// reserve (so the reserves keep their meaning).
    fn may_clean_further(&self, cx: &CleanerContext, new_tail_block: u64) -> bool {
        let ring = cx.shared.ring();
        let chunk_blocks = u64::from(cx.shared.chunk_blocks());
        let chunks_max = u64::from(cx.shared.config.compaction_chunks_per_advance);
        let cleaned_blocks = ring.used_blocks(cx.shared.volume.tail.block, new_tail_block.max(ring.start));
        if cleaned_blocks + chunk_blocks > chunks_max * chunk_blocks {
            return false;
        }
        let free_blocks = ring.free_blocks(cx.shared.volume.tail.block, cx.log.head_block());
        let reserve_blocks =
            Ring::reserve_blocks(Writer::Put, cx.shared.chunk_blocks(), cx.shared.volume.batch_blocks_max);
        free_blocks >= reserve_blocks + (chunks_max + 1) * chunk_blocks
            && self.compaction_wanted(&cx.view())
            && self.scan_sequence <= cx.log.durable_sequence
    }

    /// Whether a value read, in flight or queued, points between the tail and `new_tail_block`.
    fn reads_into(&self, cx: &CleanerContext, new_tail_block: u64) -> bool {
        let ring = cx.shared.ring();
        let tail = cx.shared.volume.tail.block;
        let freed = |location: &Location| {
            let block = location.offset_bytes / BLOCK_BYTES as u64;
            let last = (location.offset_bytes + u64::from(location.record_bytes) - 1) / BLOCK_BYTES as u64;
            ring.interval_contains(tail, new_tail_block, block) || ring.interval_contains(tail, new_tail_block, last)
        };
        cx.reads.any_points_into(cx.shared, freed)
    }

    /// Pauses compaction after a lap of the log that freed less than a chunk beyond the space
    /// its own moves took (headers and padding only, or records too large to pack), and during
    /// which no write made new garbage, until a write makes some. Net of the moves, not the log's size: client writes during the
    /// lap may have used all it freed, and that lap was worth it.
    fn end_lap_if_done(&mut self, cx: &mut CleanerContext) {
        if self.lap_freed_blocks < cx.shared.ring().capacity_blocks() {
            return;
        }
        let freed_bytes = std::mem::take(&mut self.lap_freed_blocks) * BLOCK_BYTES as u64;
        let garbage_made = cx.shared.stats.records_replaced != self.lap_start_replaced;
        self.lap_start_replaced = cx.shared.stats.records_replaced;
        let moved_space_bytes = cx.log.moved_space_bytes - self.lap_start_moved_space_bytes;
        self.lap_start_moved_space_bytes = cx.log.moved_space_bytes;
        let chunk_bytes = u64::from(cx.shared.chunk_blocks()) * BLOCK_BYTES as u64;
        let stats = &cx.shared.stats;
        let client_records = stats.records_committed - stats.records_moved;
        let clients_idle = client_records == std::mem::replace(&mut self.lap_start_client_records, client_records);
        let used_blocks_now = used_blocks(cx.shared, cx.log);
        let used_blocks_before = std::mem::replace(&mut self.lap_start_used_blocks, used_blocks_now);
        let shrank = used_blocks_now + u64::from(cx.shared.chunk_blocks()) <= used_blocks_before;
        let circling = clients_idle && !shrank;
        if (freed_bytes.saturating_sub(moved_space_bytes) < chunk_bytes || circling) && !garbage_made {
            self.paused_at_garbage = Some(cx.shared.stats.records_replaced);
            cx.shared.stats.compaction_pauses += 1;
        }
    }

    /// The superblock records the new tail: its blocks are free.
    pub fn on_tail_advanced(&mut self, cx: &mut CleanerContext) -> CleanerStep {
        assert!(matches!(self.state, CleanerState::Recording), "a tail advance the cleaner asked for");
        self.state = CleanerState::Idle;
        cx.shared.stats.tail_advances += 1;
        self.end_lap_if_done(cx);
        if std::mem::take(&mut cx.log.waiting_for_space) {
            return CleanerStep::WakeWriters;
        }
        CleanerStep::Nothing
    }
}

/// Invariant (checked in debug builds, O(keys)): no index entry points into blocks the tail is
/// about to free.
pub fn debug_assert_nothing_points_between(shared: &Shared, keyspace: &Keyspace, from_block: u64, to_block: u64) {
    if !cfg!(debug_assertions) {
        return;
    }
    let ring = shared.ring();
    for (key, location) in keyspace.index.iter() {
        let block = location.offset_bytes / BLOCK_BYTES as u64;
        assert!(
            !ring.interval_contains(from_block, to_block, block),
            "key {key:?} points at block {block}, which the tail frees ({from_block}..{to_block})"
        );
    }
}

/// Issues the chunk's next piece, if any is left.
fn issue_piece(cx: &mut CleanerContext, read: &mut ChunkRead) {
    if read.issued_blocks == read.blocks {
        return;
    }
    let piece_blocks =
        u64::from(cx.shared.config.compaction_read_piece_blocks.max(1)).min(read.blocks - read.issued_blocks);
    let piece_block = read.start_block + read.issued_blocks;
    let offset_bytes = piece_block * BLOCK_BYTES as u64;
    let length_bytes = u32::try_from(piece_blocks * BLOCK_BYTES as u64).expect("a piece is under 4 GiB");
    cx.shared.push_io(IoPurpose::CompactionRead { piece_block }, IoKind::Read { offset_bytes, length_bytes });
    read.issued_blocks += piece_blocks;
    read.in_flight += 1;
}

/// Whether a batch compaction meets is not a stale one of an earlier open (seed 7314): from
/// this open's first sequence on, every batch is of this epoch. A batch an earlier open wrote
/// with such a sequence (a write that failed, left beside the head when the engine turned
/// read-only) was never acknowledged; taking it for the next batch sends the scan off the
/// chain. Batches before that sequence are the ones recovery replayed and checked.
fn of_this_epoch(shared: &Shared, header: &crate::format::BatchHeader) -> bool {
    header.sequence < shared.volume.epoch_first_sequence || header.epoch == shared.volume.epoch
}
