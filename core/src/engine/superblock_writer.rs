//! Superblock updates. Both copies are rewritten, one after the other and each synced, so a torn
//! write leaves the other copy whole, and whichever copy recovery picks describes a log that is
//! still intact on disk: space the new copy frees is reused only once both copies say so.

use super::LogPosition;
use super::{IoPurpose, Shared};
use crate::format::{CheckpointRef, Superblock, LOG_START_BLOCK, SUPERBLOCK_COPIES};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// Why the superblock is being rewritten; what happens when both copies are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateReason {
    /// Format, or the epoch bump after recovery: the engine is ready once it is durable.
    Open,
    /// Compaction moved the tail: the blocks behind it may be reused.
    TailAdvance,
    /// A new index checkpoint is durable in its slot.
    Checkpoint,
}

struct SuperblockUpdate {
    reason: UpdateReason,
    tail: LogPosition,
    checkpoint: Option<CheckpointRef>,
    copies_durable: usize,
}

/// What a superblock I/O completion led to, for the engine to act on.
pub enum SuperblockStep {
    /// The next copy is being written, or synced.
    Continues,
    /// Both copies are durable: the engine records `tail` and `checkpoint` in the volume and
    /// goes on according to `reason`.
    Durable { reason: UpdateReason, tail: LogPosition, checkpoint: Option<CheckpointRef> },
    /// A write or sync failed; the update is abandoned.
    Failed { reason: UpdateReason, error: IoError },
}

/// The superblock writer: one update (both copies) at a time.
#[derive(Default)]
pub struct SuperblockWriter {
    update: Option<SuperblockUpdate>,
}

impl SuperblockWriter {
    pub fn busy(&self) -> bool {
        self.update.is_some()
    }

    /// Rewrites both copies with the tail `(block, sequence)` and `checkpoint`. `keys_hint`: the
    /// keys in the index now, so that an open can size its index at once.
    pub fn start(
        &mut self,
        reason: UpdateReason,
        tail: LogPosition,
        checkpoint: Option<CheckpointRef>,
        keys_hint: usize,
        shared: &mut Shared,
    ) {
        assert!(self.update.is_none(), "one superblock update at a time");
        let ring = shared.ring();
        assert!(ring.start <= tail.block && tail.block < ring.end && tail.sequence > 0);
        assert!(
            checkpoint.is_none_or(|checkpoint| checkpoint.sequence + 1 >= tail.sequence),
            "a checkpoint behind the tail"
        );
        self.update = Some(SuperblockUpdate { reason, tail, checkpoint, copies_durable: 0 });
        self.write_copy(keys_hint, shared);
    }

    fn write_copy(&mut self, keys_hint: usize, shared: &mut Shared) {
        let update = self.update.as_ref().expect("an update is in progress");
        let volume = &mut shared.volume;
        let superblock = Superblock {
            sequence: volume.superblock_sequence,
            volume_id: volume.volume_id,
            epoch: volume.epoch,
            volume_blocks: volume.volume_blocks,
            log_start_block: LOG_START_BLOCK,
            batch_blocks_max: volume.batch_blocks_max,
            checkpoint_slot_blocks: volume.checkpoint_slot_blocks,
            tail_block: update.tail.block,
            tail_sequence: update.tail.sequence,
            checkpoint: update.checkpoint,
            keys_hint: u32::try_from(keys_hint).unwrap_or(u32::MAX),
            mirror_slots: volume.mirror_slots,
            epoch_first_sequence: volume.epoch_first_sequence,
            records_padded: volume.records_padded,
        };
        volume.superblock_sequence += 1;
        let offset_bytes = superblock.home_block() * BLOCK_BYTES as u64;
        shared.push_io(IoPurpose::SuperblockWrite, IoKind::Write { offset_bytes, data: superblock.encode() });
    }

    pub fn on_write(&mut self, result: Result<Vec<u8>, IoError>, shared: &mut Shared) -> SuperblockStep {
        match result {
            Ok(_) => {
                shared.push_io(IoPurpose::SuperblockSync, IoKind::Sync);
                SuperblockStep::Continues
            }
            Err(error) => self.failed(error),
        }
    }

    pub fn on_sync(
        &mut self,
        result: Result<Vec<u8>, IoError>,
        keys_hint: usize,
        shared: &mut Shared,
    ) -> SuperblockStep {
        if let Err(error) = result {
            return self.failed(error);
        }
        let update = self.update.as_mut().expect("an update is in progress");
        update.copies_durable += 1;
        assert!(update.copies_durable <= SUPERBLOCK_COPIES, "each copy is written once per update");
        if update.copies_durable < SUPERBLOCK_COPIES {
            self.write_copy(keys_hint, shared);
            return SuperblockStep::Continues;
        }
        let update = self.update.take().expect("checked above");
        SuperblockStep::Durable { reason: update.reason, tail: update.tail, checkpoint: update.checkpoint }
    }

    fn failed(&mut self, error: IoError) -> SuperblockStep {
        let update = self.update.take().expect("an update is in progress");
        SuperblockStep::Failed { reason: update.reason, error }
    }
}
