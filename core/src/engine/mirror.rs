//! Mirror slots (format 3): every batch is written twice, to its place in the log and to mirror
//! slot `sequence % 2`, and acknowledged once both copies are durable. The log alone cannot tell
//! its newest acknowledged batch, damaged after the fact (bit rot, a misdirected write landing on
//! it), from a batch torn by a crash — both are a bad batch with nothing valid after it — so it
//! would truncate an acknowledged write without a word. With the mirror, recovery reads the
//! slot of the batch it expected wherever it meets a bad one: a valid copy of that batch (its
//! header binds it to that place in the log, its sequence to the one expected) is written back
//! and replayed; otherwise the batch never became durable in full, and the usual rules apply
//! (the torn tail is truncated, corruption in the middle refuses the open).
//!
//! One fault between two crashes cannot destroy both copies of an acknowledged batch. A batch
//! torn in one place and whole in the other was in flight at the crash and is unacknowledged:
//! taking it is allowed (a command in flight is all or nothing).

use super::recovery::{NewestBatch, NewestMirror};
use super::{Engine, IoPurpose, LogPosition, OpenError, Phase};
use crate::format::BatchHeader;
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

impl Engine {
    /// The batch `sequence` expected at `block` is bad. Reads its mirror slot, once per place and
    /// sequence; returns whether it did (the scan goes on when the read completes).
    pub(super) fn try_mirror(&mut self, block: u64, sequence: u64) -> bool {
        if !self.shared.volume.mirrored() || self.recovery_mut().mirror_tried.contains(&LogPosition { block, sequence })
        {
            return false;
        }
        self.recovery_mut().mirror_tried.push(LogPosition { block, sequence });
        let offset_bytes = self.shared.volume.mirror_slot_block(sequence) * BLOCK_BYTES as u64;
        let length_bytes = self.shared.volume.batch_blocks_max * BLOCK_BYTES as u32;
        self.shared.push_io(IoPurpose::MirrorRead { block, sequence }, IoKind::Read { offset_bytes, length_bytes });
        true
    }

    pub(super) fn on_mirror_read(&mut self, block: u64, sequence: u64, result: Result<Vec<u8>, IoError>) {
        let Some(bytes) = self.recovery_io_result(result) else { return };
        // A copy from an epoch older than the batch before it is a stale one (see `last_epoch`).
        let epoch_min = self.epoch_floor(sequence);
        if let Some(batch_bytes) = self.valid_mirror_copy(&bytes, block, sequence, epoch_min..=u64::MAX) {
            if self.shared.config.open_read_only {
                // Nothing may be written, and reads of the batch's records would fail: say so.
                return self.fail_open(OpenError::NeedsRepair { block, sequence });
            }
            self.install_mirror_copy(block, batch_bytes);
        }
        self.continue_scan();
    }

    /// The mirror slot's bytes, if they hold batch `sequence` written for `block` in one of
    /// `epochs`, whole.
    fn valid_mirror_copy(
        &self,
        bytes: &[u8],
        block: u64,
        sequence: u64,
        epochs: std::ops::RangeInclusive<u64>,
    ) -> Option<Vec<u8>> {
        let volume = &self.shared.volume;
        let header =
            BatchHeader::decode(bytes.get(..BLOCK_BYTES)?, block, volume.volume_id, volume.batch_blocks_max).ok()?;
        let end_block = block + u64::from(header.block_count);
        if header.sequence != sequence || end_block > volume.log_end_block || !epochs.contains(&header.epoch) {
            return None;
        }
        let batch_bytes = bytes.get(..header.block_count as usize * BLOCK_BYTES)?;
        header.verify_payload(batch_bytes).ok()?;
        Some(batch_bytes.to_vec())
    }

    /// A recovery I/O's result: its bytes while the open goes on. `None` if the open is over
    /// (an I/O it no longer needs) or the I/O failed (then the open fails with it).
    fn recovery_io_result(&mut self, result: Result<Vec<u8>, IoError>) -> Option<Vec<u8>> {
        if !matches!(self.phase, Phase::Recovering(_)) {
            return None;
        }
        match result {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                self.fail_open(OpenError::Io(error));
                None
            }
        }
    }

    /// Puts the mirror copy where the scan reads the log, and writes it back to its place,
    /// durably, before the open completes.
    fn install_mirror_copy(&mut self, block: u64, batch_bytes: Vec<u8>) {
        let blocks = (batch_bytes.len() / BLOCK_BYTES) as u64;
        assert!(self.chunk_covers(block, blocks), "a bad batch is judged with a whole window in memory");
        let recovery = self.recovery_mut();
        let start = ((block - recovery.chunk_start_block) as usize) * BLOCK_BYTES;
        recovery.chunk[start..start + batch_bytes.len()].copy_from_slice(&batch_bytes);
        self.shared.stats.batches_repaired += 1;
        self.recovery_mut().repairs_in_flight += 1;
        let offset_bytes = block * BLOCK_BYTES as u64;
        self.shared.push_io(IoPurpose::MirrorRepair, IoKind::WriteDurable { offset_bytes, data: batch_bytes });
    }

    /// A writable open ends here: the newest batches may have been in flight at the crash,
    /// whole in the log and torn in their slots (never acknowledged, but the open takes them,
    /// and reads will see them). Until newer batches are durable they are the ones a torn tail
    /// would cut, so they must have both copies: each one's slot is read (as many as the
    /// pipeline's depth, oldest first), and rewritten from the log copy if it does not hold
    /// the batch. Returns whether a check is under way (the open waits for it).
    pub(super) fn check_newest_mirror(&mut self) -> bool {
        let writable = !self.shared.config.open_read_only && self.shared.volume.mirrored();
        let recovery = self.recovery_mut();
        if !writable || recovery.newest_batches.is_empty() {
            return false;
        }
        if recovery.newest_mirror != NewestMirror::NotChecked {
            return recovery.newest_mirror == NewestMirror::Checking;
        }
        recovery.newest_mirror = NewestMirror::Checking;
        recovery.newest_mirror_at = 0;
        self.read_newest_mirror();
        true
    }

    /// The batch the newest-mirror check is at.
    fn newest_checked(&mut self) -> NewestBatch {
        let recovery = self.recovery_mut();
        recovery.newest_batches[recovery.newest_mirror_at]
    }

    fn read_newest_mirror(&mut self) {
        let newest = self.newest_checked();
        // Just the batch's length: a copy of it is exactly as long.
        let offset_bytes = self.shared.volume.mirror_slot_block(newest.position.sequence) * BLOCK_BYTES as u64;
        let length_bytes = crate::format::batch_size_u32(newest.blocks as usize * BLOCK_BYTES);
        self.shared.push_io(IoPurpose::NewestMirrorRead, IoKind::Read { offset_bytes, length_bytes });
    }

    pub(super) fn on_newest_mirror_read(&mut self, result: Result<Vec<u8>, IoError>) {
        let Some(bytes) = self.recovery_io_result(result) else { return };
        let newest = self.newest_checked();
        let (block, sequence, epoch) = (newest.position.block, newest.position.sequence, newest.epoch);
        // Only the copy of this very batch (its epoch too: a stale one may share place and sequence).
        if self.valid_mirror_copy(&bytes, block, sequence, epoch..=epoch).is_some() {
            return self.newest_mirror_done();
        }
        let offset_bytes = block * BLOCK_BYTES as u64;
        let length_bytes = newest.blocks * BLOCK_BYTES as u32;
        self.shared.push_io(IoPurpose::NewestLogRead, IoKind::Read { offset_bytes, length_bytes });
    }

    pub(super) fn on_newest_log_read(&mut self, result: Result<Vec<u8>, IoError>) {
        let Some(bytes) = self.recovery_io_result(result) else { return };
        let newest = self.newest_checked();
        let (block, sequence, epoch) = (newest.position.block, newest.position.sequence, newest.epoch);
        // The scan verified this copy a moment ago; one damaged since has nothing to copy.
        let Some(batch_bytes) = self.valid_mirror_copy(&bytes, block, sequence, epoch..=epoch) else {
            return self.newest_mirror_done();
        };
        self.shared.stats.mirrors_rewritten += 1;
        let offset_bytes = self.shared.volume.mirror_slot_block(sequence) * BLOCK_BYTES as u64;
        self.shared.push_io(IoPurpose::NewestMirrorWrite, IoKind::WriteDurable { offset_bytes, data: batch_bytes });
    }

    pub(super) fn on_newest_mirror_written(&mut self, result: Result<Vec<u8>, IoError>) {
        if self.recovery_io_result(result).is_none() {
            return;
        }
        self.newest_mirror_done();
    }

    /// One batch checked: the next, or the open goes on.
    fn newest_mirror_done(&mut self) {
        let recovery = self.recovery_mut();
        recovery.newest_mirror_at += 1;
        if recovery.newest_mirror_at < recovery.newest_batches.len() {
            return self.read_newest_mirror();
        }
        recovery.newest_mirror = NewestMirror::Done;
        self.finish_recovery();
    }

    pub(super) fn on_mirror_repaired(&mut self, result: Result<Vec<u8>, IoError>) {
        if self.recovery_io_result(result).is_none() {
            return;
        }
        let recovery = self.recovery_mut();
        recovery.repairs_in_flight -= 1;
        if recovery.repairs_in_flight == 0 && std::mem::take(&mut recovery.finish_after_repairs) {
            self.finish_recovery();
        }
    }
}
