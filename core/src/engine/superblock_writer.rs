//! Superblock updates. Both copies are rewritten, one after the other and each synced, so a torn
//! write leaves the other copy whole, and whichever copy recovery picks describes a log that is
//! still intact on disk: space the new copy frees is reused only once both copies say so.

use super::{Engine, IoPurpose, Phase};
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

pub struct SuperblockUpdate {
    reason: UpdateReason,
    tail: (u64, u64),
    checkpoint: Option<CheckpointRef>,
    copies_durable: usize,
}

impl Engine {
    pub(super) fn superblock_busy(&self) -> bool {
        self.superblock_update.is_some()
    }

    /// Rewrites both copies with the tail `(block, sequence)` and `checkpoint`.
    pub(super) fn start_superblock_update(
        &mut self,
        reason: UpdateReason,
        tail: (u64, u64),
        checkpoint: Option<CheckpointRef>,
    ) {
        assert!(self.superblock_update.is_none(), "one superblock update at a time");
        assert!(self.shared.ring().start <= tail.0 && tail.0 < self.shared.ring().end && tail.1 > 0);
        assert!(checkpoint.is_none_or(|checkpoint| checkpoint.sequence + 1 >= tail.1), "a checkpoint behind the tail");
        self.superblock_update = Some(SuperblockUpdate { reason, tail, checkpoint, copies_durable: 0 });
        self.write_superblock_copy();
    }

    fn write_superblock_copy(&mut self) {
        let update = self.superblock_update.as_ref().expect("an update is in progress");
        let sequence = self.shared.volume.superblock_sequence;
        let superblock = Superblock {
            sequence,
            volume_id: self.shared.volume.volume_id,
            epoch: self.shared.volume.epoch,
            volume_blocks: self.shared.volume.volume_blocks,
            log_start_block: LOG_START_BLOCK,
            batch_blocks_max: self.shared.volume.batch_blocks_max,
            checkpoint_slot_blocks: self.shared.volume.checkpoint_slot_blocks,
            tail_block: update.tail.0,
            tail_sequence: update.tail.1,
            checkpoint: update.checkpoint,
            keys_hint: u32::try_from(self.keyspace.index.len()).unwrap_or(u32::MAX),
            mirrored: self.shared.volume.mirrored,
        };
        self.shared.volume.superblock_sequence += 1;
        let offset_bytes = superblock.home_block() * BLOCK_BYTES as u64;
        self.shared.push_io(IoPurpose::SuperblockWrite, IoKind::Write { offset_bytes, data: superblock.encode() });
    }

    pub(super) fn on_superblock_write(&mut self, result: Result<Vec<u8>, IoError>) {
        match result {
            Ok(_) => self.shared.push_io(IoPurpose::SuperblockSync, IoKind::Sync),
            Err(error) => self.superblock_failed(error),
        }
    }

    pub(super) fn on_superblock_sync(&mut self, result: Result<Vec<u8>, IoError>) {
        if let Err(error) = result {
            return self.superblock_failed(error);
        }
        let update = self.superblock_update.as_mut().expect("an update is in progress");
        update.copies_durable += 1;
        if update.copies_durable < SUPERBLOCK_COPIES {
            return self.write_superblock_copy();
        }
        let update = self.superblock_update.take().expect("checked above");
        if update.reason == UpdateReason::TailAdvance {
            self.debug_assert_nothing_points_between(self.shared.volume.tail_block, update.tail.0);
            assert!(update.tail.1 > self.shared.volume.tail_sequence, "the tail moves forward");
        }
        self.shared.volume.tail_block = update.tail.0;
        self.shared.volume.tail_sequence = update.tail.1;
        self.shared.volume.checkpoint = update.checkpoint;
        match update.reason {
            UpdateReason::Open => {
                self.phase = Phase::Ready;
                self.run_all_clients();
            }
            UpdateReason::TailAdvance => self.on_tail_advanced(),
            UpdateReason::Checkpoint => self.on_checkpoint_recorded(),
        }
    }

    fn superblock_failed(&mut self, error: IoError) {
        let update = self.superblock_update.take().expect("an update is in progress");
        match update.reason {
            UpdateReason::Open => self.fail_open(super::OpenError::Io(error)),
            UpdateReason::TailAdvance | UpdateReason::Checkpoint => {
                self.fail_writes(format!("a superblock write failed ({error}); the engine is read-only until restart"))
            }
        }
    }
}
