//! Index checkpoints: now and then the durable index is written to one of two slots at the end
//! of the volume, and the superblock points at it together with where the log continues. A
//! restart then reads the checkpoint and replays only the log after it. A checkpoint is only an
//! accelerator: the log from the tail always holds the whole state, so a torn, corrupt or
//! unreadable checkpoint falls back to a full scan, and one the tail has moved past is dropped.
//!
//! The checkpointer owns the writing side; the engine records a durable checkpoint through the
//! superblock writer, and loading is part of recovery (`load` below does the decoding).
//!
//! The snapshot is taken at once (one pass over the index), then written in pieces beside
//! client traffic, synced, and recorded in the superblock.

use super::commit::Log;
use super::index::CompactIndex;
use super::keyspace::Location;
use super::reasons::ReadOnlyReason;
use super::{IoPurpose, LogPosition, Shared};
use crate::format::checkpoint::{
    checksum, decode_entry, decode_expiry, encode_entry, encode_expiry, CheckpointEntry, CHECKPOINT_EXPIRY_HEADER_BYTES,
};
use crate::format::{blocks_for, CheckpointRef, RECORD_HEADER_BYTES};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// Blocks per checkpoint write or read.
const PIECE_BLOCKS: usize = 256;
/// Checkpoint writes in flight at most.
const WRITES_IN_FLIGHT_MAX: usize = 4;
/// Loading touches the index slots of this many entries ahead of inserting them.
const TOUCH_AHEAD_ENTRIES: u64 = 32;

#[derive(Default)]
enum CheckpointState {
    #[default]
    Idle,
    Writing {
        pending: CheckpointRef,
        data: Vec<u8>,
        written_bytes: usize,
        writes_in_flight: usize,
    },
    Syncing {
        pending: CheckpointRef,
    },
    /// Durable in its slot: waiting for the superblock to be free to record it.
    Recording {
        pending: CheckpointRef,
    },
    Recorded,
}

#[derive(Default)]
pub struct Checkpointer {
    state: CheckpointState,
    /// The index did not fit a slot when the log head was at this batch: wait for another
    /// interval before trying again.
    skipped_at_sequence: Option<u64>,
    /// A driver asked for a checkpoint now (before a clean shutdown).
    forced: bool,
    /// The last checkpoint's size: the next waits until the log to replay is a few times
    /// larger, so checkpoints cost a bounded share of the writes.
    last_bytes: u64,
}

/// A new checkpoint once the log to replay is this many times the last checkpoint's size.
const INTERVAL_CHECKPOINT_MULTIPLE: u64 = 4;

/// What the engine must do for the checkpointer.
pub enum CheckpointStep {
    Nothing,
    /// The checkpoint is durable in its slot: point the superblock at it (with the tail as it is).
    Record(CheckpointRef),
    /// A checkpoint write or sync failed: the engine goes read-only with this reason.
    Failed(ReadOnlyReason),
}

/// The two slots are the volume's last blocks (after the log and its mirror slots).
fn slot_block(shared: &Shared, slot: u32) -> u64 {
    let volume = &shared.volume;
    let slot_blocks = u64::from(volume.checkpoint_slot_blocks);
    assert!((1..=2).contains(&slot), "checkpoint slots are 1 and 2");
    volume.volume_blocks - 2 * slot_blocks + u64::from(slot - 1) * slot_blocks
}

impl Checkpointer {
    /// Asks for a checkpoint as soon as possible (a clean shutdown makes the next restart fast).
    pub fn force(&mut self, shared: &Shared) {
        self.forced = shared.volume.checkpoint_slot_blocks > 0;
    }

    /// A checkpoint is asked for or being written.
    pub fn in_progress(&self, shared: &Shared) -> bool {
        self.forced && shared.read_only.is_none() || !matches!(self.state, CheckpointState::Idle)
    }

    /// A checkpoint is under way, or due: the next input moves it on.
    pub fn wants_tick(&self, shared: &Shared, log: &Log) -> bool {
        self.in_progress(shared) || self.due(shared, log)
    }

    /// The log a restart would replay is longer than the interval.
    fn due(&self, shared: &Shared, log: &Log) -> bool {
        if self.forced {
            return true;
        }
        let interval_blocks = shared.config.checkpoint_interval_blocks;
        if interval_blocks == 0 || shared.volume.checkpoint_slot_blocks == 0 {
            return false;
        }
        if self.skipped_at_sequence.is_some_and(|at| log.durable_sequence < at + interval_blocks) {
            return false;
        }
        let replay_from = match shared.volume.checkpoint {
            Some(checkpoint) => checkpoint.replay_block,
            None => shared.volume.tail.block,
        };
        let size_blocks = self.last_bytes.div_ceil(BLOCK_BYTES as u64);
        let due_blocks = interval_blocks.max(INTERVAL_CHECKPOINT_MULTIPLE * size_blocks);
        shared.ring().used_blocks(replay_from, log.head_block()) >= due_blocks
    }

    /// Moves the checkpoint on as far as it can without waiting. `superblock_busy`: another
    /// superblock update is in progress, so recording waits.
    pub fn drive(
        &mut self,
        shared: &mut Shared,
        log: &Log,
        index: &CompactIndex,
        superblock_busy: bool,
    ) -> CheckpointStep {
        if shared.read_only.is_some() {
            return CheckpointStep::Nothing;
        }
        match std::mem::take(&mut self.state) {
            CheckpointState::Idle if self.due(shared, log) => self.start(shared, log, index),
            CheckpointState::Writing { pending, data, written_bytes, writes_in_flight } => {
                self.write_pieces(shared, pending, data, written_bytes, writes_in_flight)
            }
            CheckpointState::Recording { pending } => return self.record(shared, pending, superblock_busy),
            state => self.state = state,
        }
        CheckpointStep::Nothing
    }

    /// Snapshots the durable index: the state after batch `durable_sequence`, replayed from the
    /// first batch that is not durable yet.
    fn start(&mut self, shared: &mut Shared, log: &Log, index: &CompactIndex) {
        self.forced = false;
        let sequence = log.durable_sequence;
        let LogPosition { block: replay_block, sequence: replay_sequence } = log.first_not_durable();
        assert_eq!(replay_sequence, sequence + 1, "the first batch not durable follows the durable ones");
        let replay_block = shared.ring().next_head(replay_block);
        let slot_bytes = shared.volume.checkpoint_slot_blocks as usize * BLOCK_BYTES;
        let mut data = Vec::new();
        for (key, location) in index.iter() {
            let entry = CheckpointEntry {
                key,
                offset_bytes: location.offset_bytes,
                record_bytes: location.record_bytes,
                sequence_low: location.sequence_low,
            };
            encode_entry(&mut data, &entry);
            if data.len() > slot_bytes {
                return self.skip(shared, sequence);
            }
        }
        for (key, expires_at_ms) in index.expiries.iter() {
            encode_expiry(&mut data, key, expires_at_ms);
        }
        if data.len() > slot_bytes {
            return self.skip(shared, sequence);
        }
        let slot = if shared.volume.checkpoint.is_some_and(|checkpoint| checkpoint.slot == 1) { 2 } else { 1 };
        let pending = CheckpointRef {
            slot,
            checksum: checksum(shared.volume.volume_id, sequence, &data),
            bytes: data.len() as u64,
            sequence,
            replay_block,
            keys: index.len() as u64,
            epoch: shared.volume.epoch,
        };
        self.last_bytes = data.len() as u64;
        data.resize(blocks_for(data.len()).max(1) * BLOCK_BYTES, 0);
        self.write_pieces(shared, pending, data, 0, 0);
    }

    /// The index does not fit a slot: try again after another interval.
    fn skip(&mut self, shared: &mut Shared, sequence: u64) {
        self.skipped_at_sequence = Some(sequence);
        shared.stats.checkpoints_skipped += 1;
    }

    fn write_pieces(
        &mut self,
        shared: &mut Shared,
        pending: CheckpointRef,
        data: Vec<u8>,
        mut written_bytes: usize,
        mut writes_in_flight: usize,
    ) {
        let slot_offset_bytes = slot_block(shared, pending.slot) * BLOCK_BYTES as u64;
        while writes_in_flight < WRITES_IN_FLIGHT_MAX && written_bytes < data.len() {
            let end = (written_bytes + PIECE_BLOCKS * BLOCK_BYTES).min(data.len());
            let mut piece = data[written_bytes..end].to_vec();
            if shared.config.has_bug(super::config::Bug::SkipCheckpointData) {
                piece.fill(0);
            }
            let offset_bytes = slot_offset_bytes + written_bytes as u64;
            shared.push_io(IoPurpose::CheckpointWrite, IoKind::Write { offset_bytes, data: piece });
            written_bytes = end;
            writes_in_flight += 1;
        }
        debug_assert!(written_bytes <= data.len() && writes_in_flight <= WRITES_IN_FLIGHT_MAX);
        debug_assert!(data.len() <= shared.volume.checkpoint_slot_blocks as usize * BLOCK_BYTES, "within the slot");
        if writes_in_flight == 0 {
            self.state = CheckpointState::Syncing { pending };
            return shared.push_io(IoPurpose::CheckpointSync, IoKind::Sync);
        }
        self.state = CheckpointState::Writing { pending, data, written_bytes, writes_in_flight };
    }

    pub fn on_write(&mut self, result: Result<Vec<u8>, IoError>) -> CheckpointStep {
        if let Err(error) = result {
            self.state = CheckpointState::Idle;
            return CheckpointStep::Failed(ReadOnlyReason::CheckpointWriteFailed(error));
        }
        if let CheckpointState::Writing { writes_in_flight, .. } = &mut self.state {
            *writes_in_flight -= 1;
        }
        CheckpointStep::Nothing
    }

    pub fn on_sync(&mut self, result: Result<Vec<u8>, IoError>) -> CheckpointStep {
        if let Err(error) = result {
            self.state = CheckpointState::Idle;
            return CheckpointStep::Failed(ReadOnlyReason::CheckpointSyncFailed(error));
        }
        if let CheckpointState::Syncing { pending } = std::mem::take(&mut self.state) {
            self.state = CheckpointState::Recording { pending };
        }
        CheckpointStep::Nothing
    }

    /// Hands the checkpoint to the superblock writer, unless the tail has moved past the log it
    /// replays from meanwhile (then it is dropped).
    fn record(&mut self, shared: &mut Shared, pending: CheckpointRef, superblock_busy: bool) -> CheckpointStep {
        if superblock_busy {
            self.state = CheckpointState::Recording { pending };
            return CheckpointStep::Nothing;
        }
        if pending.sequence + 1 < shared.volume.tail.sequence {
            shared.stats.checkpoints_skipped += 1;
            return CheckpointStep::Nothing;
        }
        self.state = CheckpointState::Recorded;
        CheckpointStep::Record(pending)
    }

    /// The superblock points at the checkpoint.
    pub fn recorded(&mut self, shared: &mut Shared) {
        assert!(matches!(self.state, CheckpointState::Recorded), "only a checkpoint being recorded is recorded");
        self.state = CheckpointState::Idle;
        shared.stats.checkpoints_written += 1;
    }
}

/// Loading, during recovery: the next piece of the checkpoint to read, `read_bytes` in.
pub fn read_piece(shared: &mut Shared, checkpoint: CheckpointRef, read_bytes: usize) {
    let total_bytes = blocks_for(checkpoint.bytes as usize).max(1) * BLOCK_BYTES;
    let length_bytes = (total_bytes - read_bytes).min(PIECE_BLOCKS * 4 * BLOCK_BYTES);
    let offset_bytes = slot_block(shared, checkpoint.slot) * BLOCK_BYTES as u64 + read_bytes as u64;
    let length_bytes = u32::try_from(length_bytes).expect("a piece is under 4 GiB");
    shared.push_io(IoPurpose::CheckpointRead(checkpoint), IoKind::Read { offset_bytes, length_bytes });
}

/// Loading, during recovery: verifies the whole checkpoint and inserts its entries into `index`.
/// An error says why it cannot be used (the open then scans the whole log).
pub fn load(shared: &Shared, index: &mut CompactIndex, checkpoint: &CheckpointRef, data: &[u8]) -> Result<(), String> {
    if checksum(shared.volume.volume_id, checkpoint.sequence, data) != checkpoint.checksum {
        return Err("its checksum does not match".to_string());
    }
    let ring = shared.ring();
    let entries_max = (data.len() / crate::format::checkpoint::CHECKPOINT_ENTRY_HEADER_BYTES) as u64;
    index.reserve(checkpoint.keys.min(entries_max) as usize);
    let mut at = 0;
    for entry_number in 0..checkpoint.keys.min(entries_max + 1) {
        if entry_number % TOUCH_AHEAD_ENTRIES == 0 {
            touch_entries(index, data, at);
        }
        let (entry, next) = decode_entry(data, at).map_err(|error| format!("an entry is malformed ({error})"))?;
        let block = entry.offset_bytes / BLOCK_BYTES as u64;
        let plausible = (ring.start..ring.end).contains(&block)
            && entry.record_bytes as usize >= RECORD_HEADER_BYTES + entry.key.len();
        if !plausible {
            return Err(format!("an entry points outside the log (byte offset {})", entry.offset_bytes));
        }
        let location = Location {
            offset_bytes: entry.offset_bytes,
            record_bytes: entry.record_bytes,
            sequence_low: entry.sequence_low,
        };
        index.insert(entry.key, location, None);
        at = next;
    }
    load_expiries(index, data, at)
}

/// The expiry section, after the entries: every item names a key loaded above.
fn load_expiries(index: &mut CompactIndex, data: &[u8], mut at: usize) -> Result<(), String> {
    // Each item takes at least its header, which bounds the loop by the bytes at hand.
    for _ in 0..data.len().saturating_sub(at) / CHECKPOINT_EXPIRY_HEADER_BYTES + 1 {
        if at == data.len() {
            return Ok(());
        }
        let (key, expires_at_ms, next) =
            decode_expiry(data, at).map_err(|error| format!("an expiry item is malformed ({error})"))?;
        let Some(location) = index.get(key) else {
            return Err("an expiry item names a key it does not hold".to_string());
        };
        index.insert(key, location, Some(expires_at_ms));
        at = next;
    }
    Err("its expiry items do not fill it exactly".to_string())
}

/// Loads the index slots of the next entries before inserting them, so that their cache misses
/// overlap (loading is bound by them). Entries that do not decode are left to the caller.
fn touch_entries(index: &CompactIndex, data: &[u8], mut at: usize) {
    let mut touched = 0u64;
    for _ in 0..TOUCH_AHEAD_ENTRIES {
        let Ok((entry, next)) = decode_entry(data, at) else { break };
        touched ^= index.touch(entry.key);
        at = next;
    }
    std::hint::black_box(touched);
}
