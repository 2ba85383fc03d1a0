//! Index checkpoints: now and then the durable index is written to one of two slots at the end
//! of the volume, and the superblock points at it together with where the log continues. A
//! restart then reads the checkpoint and replays only the log after it. A checkpoint is only an
//! accelerator: the log from the tail always holds the whole state, so a torn, corrupt or
//! unreadable checkpoint falls back to a full scan, and one the tail has moved past is dropped.
//!
//! The snapshot is taken at once (one pass over the index), then written in pieces beside
//! client traffic, synced, and recorded in the superblock.

use super::keyspace::Location;
use super::superblock_writer::UpdateReason;
use super::{Engine, IoPurpose, Phase};
use crate::format::checkpoint::{checksum, decode_entry, encode_entry, CheckpointEntry};
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

impl Engine {
    /// The two slots are the volume's last blocks (after the log and its mirror slots).
    fn checkpoint_slot_block(&self, slot: u32) -> u64 {
        let slot_blocks = u64::from(self.shared.volume.checkpoint_slot_blocks);
        self.shared.volume.volume_blocks - 2 * slot_blocks + u64::from(slot - 1) * slot_blocks
    }

    /// Asks for a checkpoint as soon as possible (a clean shutdown makes the next restart fast).
    /// [`Engine::checkpoint_in_progress`] says when it is recorded.
    pub fn checkpoint_now(&mut self) {
        self.checkpointer.forced = self.shared.volume.checkpoint_slot_blocks > 0;
        self.drive_checkpoint();
    }

    /// A checkpoint is asked for or being written.
    pub fn checkpoint_in_progress(&self) -> bool {
        self.checkpointer.forced && self.shared.read_only.is_none()
            || !matches!(self.checkpointer.state, CheckpointState::Idle)
    }

    /// A checkpoint is under way, or due: the next input moves it on.
    pub(super) fn checkpoint_wants_tick(&self) -> bool {
        self.checkpoint_in_progress() || self.checkpoint_due()
    }

    /// The log a restart would replay is longer than the interval.
    fn checkpoint_due(&self) -> bool {
        if self.checkpointer.forced {
            return true;
        }
        let interval_blocks = self.shared.config.checkpoint_interval_blocks;
        if interval_blocks == 0 || self.shared.volume.checkpoint_slot_blocks == 0 {
            return false;
        }
        if self.checkpointer.skipped_at_sequence.is_some_and(|at| self.log.durable_sequence < at + interval_blocks) {
            return false;
        }
        let ring = self.shared.ring();
        let replay_from = match self.shared.volume.checkpoint {
            Some(checkpoint) => checkpoint.replay_block,
            None => self.shared.volume.tail_block,
        };
        let head = self.log.head_block();
        let size_blocks = self.checkpointer.last_bytes.div_ceil(BLOCK_BYTES as u64);
        let due_blocks = interval_blocks.max(INTERVAL_CHECKPOINT_MULTIPLE * size_blocks);
        ring.used_blocks(replay_from, head) >= due_blocks
    }

    pub(super) fn drive_checkpoint(&mut self) {
        if !matches!(self.phase, Phase::Ready) || self.shared.read_only.is_some() {
            return;
        }
        match std::mem::take(&mut self.checkpointer.state) {
            CheckpointState::Idle if self.checkpoint_due() => self.start_checkpoint(),
            CheckpointState::Writing { pending, data, written_bytes, writes_in_flight } => {
                self.write_checkpoint_pieces(pending, data, written_bytes, writes_in_flight)
            }
            CheckpointState::Recording { pending } => self.record_checkpoint(pending),
            state => self.checkpointer.state = state,
        }
    }

    /// Snapshots the durable index: the state after batch `durable_sequence`, replayed from the
    /// first batch that is not durable yet.
    fn start_checkpoint(&mut self) {
        self.checkpointer.forced = false;
        let sequence = self.log.durable_sequence;
        let (replay_block, replay_sequence) = self.log.first_not_durable();
        assert_eq!(replay_sequence, sequence + 1, "the first batch not durable follows the durable ones");
        let replay_block = self.shared.ring().next_head(replay_block);
        let slot_bytes = self.shared.volume.checkpoint_slot_blocks as usize * BLOCK_BYTES;
        let mut data = Vec::new();
        for (key, location) in self.keyspace.index.iter() {
            let entry = CheckpointEntry {
                key,
                offset_bytes: location.offset_bytes,
                record_bytes: location.record_bytes,
                sequence_low: location.sequence_low,
            };
            encode_entry(&mut data, &entry);
            if data.len() > slot_bytes {
                self.checkpointer.skipped_at_sequence = Some(sequence);
                self.shared.stats.checkpoints_skipped += 1;
                return;
            }
        }
        let slot = if self.shared.volume.checkpoint.is_some_and(|checkpoint| checkpoint.slot == 1) { 2 } else { 1 };
        let pending = CheckpointRef {
            slot,
            checksum: checksum(self.shared.volume.volume_id, sequence, &data),
            bytes: data.len() as u64,
            sequence,
            replay_block,
            keys: self.keyspace.index.len() as u64,
        };
        self.checkpointer.last_bytes = data.len() as u64;
        data.resize(blocks_for(data.len()).max(1) * BLOCK_BYTES, 0);
        self.write_checkpoint_pieces(pending, data, 0, 0);
    }

    fn write_checkpoint_pieces(
        &mut self,
        pending: CheckpointRef,
        data: Vec<u8>,
        mut written_bytes: usize,
        mut writes_in_flight: usize,
    ) {
        let slot_offset_bytes = self.checkpoint_slot_block(pending.slot) * BLOCK_BYTES as u64;
        while writes_in_flight < WRITES_IN_FLIGHT_MAX && written_bytes < data.len() {
            let end = (written_bytes + PIECE_BLOCKS * BLOCK_BYTES).min(data.len());
            let mut piece = data[written_bytes..end].to_vec();
            if self.shared.config.has_bug(super::config::Bug::SkipCheckpointData) {
                piece.fill(0);
            }
            let offset_bytes = slot_offset_bytes + written_bytes as u64;
            self.shared.push_io(IoPurpose::CheckpointWrite, IoKind::Write { offset_bytes, data: piece });
            written_bytes = end;
            writes_in_flight += 1;
        }
        if writes_in_flight == 0 {
            self.checkpointer.state = CheckpointState::Syncing { pending };
            return self.shared.push_io(IoPurpose::CheckpointSync, IoKind::Sync);
        }
        self.checkpointer.state = CheckpointState::Writing { pending, data, written_bytes, writes_in_flight };
    }

    pub(super) fn on_checkpoint_write(&mut self, result: Result<Vec<u8>, IoError>) {
        if let Err(error) = result {
            self.checkpointer.state = CheckpointState::Idle;
            return self
                .fail_writes(format!("a checkpoint write failed ({error}); the engine is read-only until restart"));
        }
        if let CheckpointState::Writing { writes_in_flight, .. } = &mut self.checkpointer.state {
            *writes_in_flight -= 1;
        }
    }

    pub(super) fn on_checkpoint_sync(&mut self, result: Result<Vec<u8>, IoError>) {
        if let Err(error) = result {
            self.checkpointer.state = CheckpointState::Idle;
            return self
                .fail_writes(format!("a checkpoint sync failed ({error}); the engine is read-only until restart"));
        }
        if let CheckpointState::Syncing { pending } = std::mem::take(&mut self.checkpointer.state) {
            self.checkpointer.state = CheckpointState::Recording { pending };
        }
    }

    /// Points the superblock at the new checkpoint, unless the tail has moved past the log it
    /// replays from meanwhile (then it is dropped).
    fn record_checkpoint(&mut self, pending: CheckpointRef) {
        if self.superblock_busy() {
            self.checkpointer.state = CheckpointState::Recording { pending };
            return;
        }
        if pending.sequence + 1 < self.shared.volume.tail_sequence {
            self.shared.stats.checkpoints_skipped += 1;
            return;
        }
        self.checkpointer.state = CheckpointState::Recorded;
        let tail = (self.shared.volume.tail_block, self.shared.volume.tail_sequence);
        self.start_superblock_update(UpdateReason::Checkpoint, tail, Some(pending));
    }

    pub(super) fn on_checkpoint_recorded(&mut self) {
        self.checkpointer.state = CheckpointState::Idle;
        self.shared.stats.checkpoints_written += 1;
    }

    /// Recovery: reads the checkpoint the superblock points at, or scans from the tail if it
    /// cannot be used.
    pub(super) fn start_checkpoint_load(&mut self, checkpoint: CheckpointRef) {
        if checkpoint.sequence + 1 < self.shared.volume.tail_sequence {
            return self.reject_checkpoint("it is older than the log's tail".to_string());
        }
        self.recovery_mut().checkpoint_bytes = Vec::new();
        self.read_checkpoint_piece(checkpoint);
    }

    fn read_checkpoint_piece(&mut self, checkpoint: CheckpointRef) {
        let read_bytes = self.recovery_mut().checkpoint_bytes.len();
        let total_bytes = blocks_for(checkpoint.bytes as usize).max(1) * BLOCK_BYTES;
        let length_bytes = (total_bytes - read_bytes).min(PIECE_BLOCKS * 4 * BLOCK_BYTES);
        let offset_bytes = self.checkpoint_slot_block(checkpoint.slot) * BLOCK_BYTES as u64 + read_bytes as u64;
        let length_bytes = u32::try_from(length_bytes).expect("a piece is under 4 GiB");
        self.shared.push_io(IoPurpose::CheckpointRead(checkpoint), IoKind::Read { offset_bytes, length_bytes });
    }

    pub(super) fn on_checkpoint_read(&mut self, checkpoint: CheckpointRef, result: Result<Vec<u8>, IoError>) {
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return self.reject_checkpoint(format!("reading it failed ({error})")),
        };
        let recovery = self.recovery_mut();
        recovery.checkpoint_bytes.extend_from_slice(&bytes);
        if recovery.checkpoint_bytes.len() < checkpoint.bytes as usize {
            return self.read_checkpoint_piece(checkpoint);
        }
        let mut data = std::mem::take(&mut self.recovery_mut().checkpoint_bytes);
        data.truncate(checkpoint.bytes as usize);
        if let Err(reason) = self.load_checkpoint(&checkpoint, &data) {
            return self.reject_checkpoint(reason);
        }
        self.shared.stats.checkpoint_loaded = true;
        self.scan_from(checkpoint.replay_block, checkpoint.sequence);
    }

    fn load_checkpoint(&mut self, checkpoint: &CheckpointRef, data: &[u8]) -> Result<(), String> {
        if checksum(self.shared.volume.volume_id, checkpoint.sequence, data) != checkpoint.checksum {
            return Err("its checksum does not match".to_string());
        }
        let ring = self.shared.ring();
        let entries_max = (data.len() / crate::format::checkpoint::CHECKPOINT_ENTRY_HEADER_BYTES) as u64;
        self.keyspace.index.reserve(checkpoint.keys.min(entries_max) as usize);
        let mut at = 0;
        for index in 0..checkpoint.keys.min(entries_max + 1) {
            if index % TOUCH_AHEAD_ENTRIES == 0 {
                self.touch_checkpoint_entries(data, at);
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
            self.keyspace.index.insert(entry.key, location);
            at = next;
        }
        if at != data.len() {
            return Err("its entries do not fill it exactly".to_string());
        }
        Ok(())
    }

    /// Loads the index slots of the next entries before inserting them, so that their cache
    /// misses overlap (loading is bound by them). Entries that do not decode are left to the
    /// caller.
    fn touch_checkpoint_entries(&self, data: &[u8], mut at: usize) {
        let mut touched = 0u64;
        for _ in 0..TOUCH_AHEAD_ENTRIES {
            let Ok((entry, next)) = decode_entry(data, at) else { break };
            touched ^= self.keyspace.index.touch(entry.key);
            at = next;
        }
        std::hint::black_box(touched);
    }

    fn reject_checkpoint(&mut self, reason: String) {
        self.shared.stats.checkpoint_rejected = Some(reason);
        self.scan_from_tail();
    }
}
