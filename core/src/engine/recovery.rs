//! Opening a volume: pick the newest valid superblock copy, replay the log batch by batch,
//! truncate a torn tail, refuse a log that is corrupt in the middle, then bump the epoch.

use std::collections::VecDeque;

use super::checkpoint;
use super::index::IndexWork;
use super::keyspace::Location;
use super::reasons::ReadOnlyReason;
use super::space::{Ring, Writer};
use super::superblock_writer::UpdateReason;
use super::LogPosition;
use super::{Engine, IoPurpose, Phase, Volume};
use crate::format::{
    BatchHeader, BatchRecords, CheckpointRef, FormatError, RecordKind, Superblock, BATCH_HEADER_BYTES, LOG_START_BLOCK,
};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// Why a volume cannot be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a QuillKV volume, or both superblock copies are corrupt (copy A: {copy_a}; copy B: {copy_b})")]
    NoValidSuperblock { copy_a: FormatError, copy_b: FormatError },
    #[error("the volume holds {actual} blocks but its superblock says {expected}")]
    VolumeSize { expected: u64, actual: u64 },
    #[error("log corrupt at block {block} (byte offset {offset}): {reason}; a valid later batch (sequence {next_sequence}) follows at block {next_block}, so this is not a torn tail; refusing to open")]
    CorruptLog { block: u64, offset: u64, reason: String, next_block: u64, next_sequence: u64 },
    /// The chain of batches did not end within twice the log's length: a bug or crafted data,
    /// never a torn tail.
    #[error("log corrupt at block {block}: the log's chain of batches does not end; refusing to open")]
    EndlessLog { block: u64 },
    #[error("I/O error while opening: {0}")]
    Io(IoError),
    #[error("batch {sequence} at block {block} is damaged and its mirror copy is intact; open the volume writable (not read-only) to repair it")]
    NeedsRepair { block: u64, sequence: u64 },
}

/// Recovery's progress through the log.
#[derive(Default)]
pub struct Recovery {
    /// The next batch's expected first block.
    block: u64,
    last_sequence: u64,
    /// The epoch of the last batch replayed (0 before the first). Epochs never decrease along
    /// the log: a batch from an older epoch where the next one is expected is a stale batch
    /// that was in flight beside a torn one at an earlier crash, never a continuation.
    pub(super) last_epoch: u64,
    /// The epoch the volume was last opened in, and the sequence of its first batch: a batch of
    /// that sequence or later is of that epoch or later (format 6; `u64::MAX` before).
    previous_epoch: (u64, u64),
    pub(super) chunk: Vec<u8>,
    pub(super) chunk_start_block: u64,
    /// The expected batch was not at this block (with this reason): it is tried at the region's
    /// start, where a batch goes that did not fit before the region's end.
    wrap_from: Option<(u64, String)>,
    /// Back at the block where the log ended, to check the window after it.
    final_check: bool,
    /// Batches and retries so far, bounded by the log's size.
    steps: u64,
    /// A checkpoint is being read: its bytes so far.
    pub(super) checkpoint_bytes: Vec<u8>,
    /// Places and sequences whose mirror slot was read (each once; see mirror.rs).
    pub(super) mirror_tried: Vec<LogPosition>,
    /// Batches being rewritten from their mirror copy: the open completes after them.
    pub(super) repairs_in_flight: u32,
    pub(super) finish_after_repairs: bool,
    /// The chunk after the one in memory, read ahead so the disk works while batches apply.
    prefetch: Prefetch,
    /// The scan waits for the prefetch to continue from this block.
    waiting_for_prefetch: Option<u64>,
    /// Keys the index held at the last superblock write: the index is sized for them at once.
    keys_hint: usize,
    /// The newest batches replayed (as many as the pipeline's depth, oldest first): a writable
    /// open makes sure their mirror copies are whole before it completes (see mirror.rs).
    pub(super) newest_batches: VecDeque<NewestBatch>,
    pub(super) newest_mirror: NewestMirror,
    /// Which of `newest_batches` the mirror check is at.
    pub(super) newest_mirror_at: usize,
    /// Index partitions handed out with their records, for the driver to take.
    pub(super) index_work: VecDeque<IndexWork>,
    /// The log is read; the open completes once the index partitions are back.
    pub(super) finish_after_index_work: bool,
    /// The scan stopped reading the log until a partition comes back: too many records wait.
    paused_for_index_work: bool,
}

/// A batch recovery replayed, as the newest-mirror check needs it.
#[derive(Clone, Copy, Debug)]
pub struct NewestBatch {
    pub position: LogPosition,
    pub blocks: u32,
    pub epoch: u64,
}

/// The check of the newest batch's mirror copy at the end of a writable open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NewestMirror {
    #[default]
    NotChecked,
    /// Its slot, then perhaps the log copy, is being read, or the copy written.
    Checking,
    Done,
}

#[derive(Default)]
enum Prefetch {
    #[default]
    None,
    InFlight {
        start_block: u64,
    },
    Ready {
        start_block: u64,
        bytes: Vec<u8>,
    },
}

/// What replaying the batch at a block found.
enum Replay {
    Applied(u64),
    /// The batch runs past the chunk in memory.
    NeedMore,
    Bad(String),
}

/// Recovery reads the log in chunks at least this large, and always large enough to hold a
/// whole batch plus the window that tells a torn tail from corruption in the middle.
const RECOVERY_CHUNK_BLOCKS_MIN: u64 = 1024;

impl Engine {
    /// A format first reads blocks 0 and 1: a device that held another volume keeps its
    /// superblock copies until both of the format's land, and one misdirected format write
    /// would leave an old copy whose higher sequence number wins the next open (seed 101286:
    /// the open found the old volume). The format numbers its copies above any valid old one.
    pub(super) fn start_format(&mut self, volume_id: u64) {
        let length_bytes = (crate::format::SUPERBLOCK_COPIES * BLOCK_BYTES) as u32;
        self.shared.push_io(IoPurpose::FormatProbe { volume_id }, IoKind::Read { offset_bytes: 0, length_bytes });
    }

    pub(super) fn on_format_probe(&mut self, volume_id: u64, result: Result<Vec<u8>, IoError>) {
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return self.fail_open(OpenError::Io(error)),
        };
        let old_sequence_max = (0..crate::format::SUPERBLOCK_COPIES)
            .filter_map(|copy| {
                let block = bytes.get(copy * BLOCK_BYTES..(copy + 1) * BLOCK_BYTES)?;
                Superblock::decode(block, copy as u64).ok().map(|old| old.sequence)
            })
            .max()
            .unwrap_or(0);
        // Bounded: a crafted copy at u64::MAX must not overflow the sequences that follow.
        self.write_format(volume_id, old_sequence_max.min(u64::MAX / 2) + 1);
    }

    fn write_format(&mut self, volume_id: u64, superblock_sequence: u64) {
        let mirror_slots = crate::format::superblock::new_volume_mirror_slots(self.shared.config.mirror_batches);
        let mirror_blocks = crate::format::superblock::mirror_blocks(mirror_slots, self.shared.config.batch_blocks_max);
        let slots_blocks = 2 * u64::from(self.shared.config.checkpoint_slot_blocks) + mirror_blocks;
        let batch_blocks = self.shared.config.batch_blocks_max;
        let reserve = Ring::reserve_blocks(Writer::Put, batch_blocks, batch_blocks);
        assert!(
            self.shared.config.volume_blocks > LOG_START_BLOCK + slots_blocks + 4 * u64::from(batch_blocks) + reserve,
            "the volume is too small for its batch size, reserves and checkpoint slots"
        );
        self.shared.volume = Volume {
            volume_id,
            epoch: 1,
            superblock_sequence,
            batch_blocks_max: self.shared.config.batch_blocks_max,
            volume_blocks: self.shared.config.volume_blocks,
            log_end_block: self.shared.config.volume_blocks - slots_blocks,
            checkpoint_slot_blocks: self.shared.config.checkpoint_slot_blocks,
            tail: LogPosition { block: LOG_START_BLOCK, sequence: 1 },
            checkpoint: None,
            mirror_slots,
            epoch_first_sequence: 1,
            // Padding needs format 7, which is a mirrored format.
            records_padded: mirror_slots == crate::format::superblock::MIRROR_SLOTS,
        };
        self.log.reset(LOG_START_BLOCK, 1);
        self.cleaner.reset(self.shared.volume.tail);
        self.start_superblock_update(UpdateReason::Open, LogPosition { block: LOG_START_BLOCK, sequence: 1 }, None);
    }

    pub(super) fn start_recovery(&mut self) {
        let length_bytes = (crate::format::SUPERBLOCK_COPIES * BLOCK_BYTES) as u32;
        self.shared.push_io(IoPurpose::SuperblockRead, IoKind::Read { offset_bytes: 0, length_bytes });
    }

    pub(super) fn on_superblock_read(&mut self, result: Result<Vec<u8>, IoError>) {
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return self.fail_open(OpenError::Io(error)),
        };
        let copy_a = Superblock::decode(&bytes[..BLOCK_BYTES], 0);
        let copy_b = Superblock::decode(&bytes[BLOCK_BYTES..], 1);
        self.shared.stats.superblock_copies_bad = u64::from(copy_a.is_err()) + u64::from(copy_b.is_err());
        let newest = match (copy_a, copy_b) {
            (Ok(a), Ok(b)) => {
                if a.sequence >= b.sequence {
                    a
                } else {
                    b
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(copy_a), Err(copy_b)) => return self.fail_open(OpenError::NoValidSuperblock { copy_a, copy_b }),
        };
        if newest.volume_blocks > self.shared.config.volume_blocks {
            let error =
                OpenError::VolumeSize { expected: newest.volume_blocks, actual: self.shared.config.volume_blocks };
            return self.fail_open(error);
        }
        self.shared.volume = Volume {
            volume_id: newest.volume_id,
            epoch: newest.epoch + 1,
            superblock_sequence: newest.sequence + 1,
            batch_blocks_max: newest.batch_blocks_max,
            volume_blocks: newest.volume_blocks,
            log_end_block: newest.log_end_block(),
            checkpoint_slot_blocks: newest.checkpoint_slot_blocks,
            tail: LogPosition { block: newest.tail_block, sequence: newest.tail_sequence },
            checkpoint: newest.checkpoint,
            mirror_slots: newest.mirror_slots,
            epoch_first_sequence: newest.epoch_first_sequence,
            records_padded: newest.records_padded,
        };
        let recovery = self.recovery_mut();
        recovery.keys_hint = newest.keys_hint as usize;
        recovery.previous_epoch = (newest.epoch, newest.epoch_first_sequence);
        match newest.checkpoint {
            Some(checkpoint) if self.shared.config.use_checkpoint => self.start_checkpoint_load(checkpoint),
            _ => self.scan_from_tail(),
        }
    }

    /// Reads the checkpoint the superblock points at, or scans from the tail if it cannot be
    /// used.
    fn start_checkpoint_load(&mut self, checkpoint: CheckpointRef) {
        if checkpoint.sequence + 1 < self.shared.volume.tail.sequence {
            return self.reject_checkpoint("it is older than the log's tail".to_string());
        }
        self.recovery_mut().checkpoint_bytes = Vec::new();
        checkpoint::read_piece(&mut self.shared, checkpoint, 0);
    }

    pub(super) fn on_checkpoint_read(&mut self, checkpoint: CheckpointRef, result: Result<Vec<u8>, IoError>) {
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return self.reject_checkpoint(format!("reading it failed ({error})")),
        };
        let recovery = self.recovery_mut();
        recovery.checkpoint_bytes.extend_from_slice(&bytes);
        let read_bytes = recovery.checkpoint_bytes.len();
        if read_bytes < checkpoint.bytes as usize {
            return checkpoint::read_piece(&mut self.shared, checkpoint, read_bytes);
        }
        let mut data = std::mem::take(&mut self.recovery_mut().checkpoint_bytes);
        data.truncate(checkpoint.bytes as usize);
        if let Err(reason) = checkpoint::load(&self.shared, &mut self.keyspace.index, &checkpoint, &data) {
            return self.reject_checkpoint(reason);
        }
        self.shared.stats.checkpoint_loaded = true;
        // Every batch after the replay block is of the checkpoint's epoch or later (format 6).
        self.scan_from(checkpoint.replay_block, checkpoint.sequence, checkpoint.epoch);
    }

    fn reject_checkpoint(&mut self, reason: String) {
        self.shared.stats.checkpoint_rejected = Some(reason);
        self.scan_from_tail();
    }

    /// Replays the whole log from its tail (no checkpoint, or an unusable one).
    pub(super) fn scan_from_tail(&mut self) {
        self.keyspace.index.clear();
        let keys_hint = self.recovery_mut().keys_hint;
        self.keyspace.index.reserve(keys_hint);
        let (block, sequence) = (self.shared.volume.tail.block, self.shared.volume.tail.sequence);
        self.scan_from(block, sequence - 1, 0);
    }

    /// Replays the log from `block`, where batch `last_sequence + 1` is expected, of epoch
    /// `epoch_floor` or later.
    pub(super) fn scan_from(&mut self, block: u64, last_sequence: u64, epoch_floor: u64) {
        let recovery = self.recovery_mut();
        recovery.block = block;
        recovery.last_sequence = last_sequence;
        recovery.last_epoch = epoch_floor;
        recovery.newest_batches.clear();
        let old_chunk = std::mem::take(&mut recovery.chunk);
        self.shared.give_back(old_chunk);
        self.continue_scan();
    }

    pub(super) fn recovery_mut(&mut self) -> &mut Recovery {
        match &mut self.phase {
            Phase::Recovering(recovery) => recovery,
            _ => unreachable!("recovery I/O completes only while recovering"),
        }
    }

    pub(super) fn on_recovery_chunk(&mut self, start_block: u64, prefetch: bool, result: Result<Vec<u8>, IoError>) {
        if !matches!(self.phase, Phase::Recovering(_)) {
            return; // a read-ahead that recovery no longer needed
        }
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return self.fail_open(OpenError::Io(error)),
        };
        let recovery = self.recovery_mut();
        if prefetch {
            recovery.prefetch = Prefetch::Ready { start_block, bytes };
            let Some(block) = recovery.waiting_for_prefetch.take() else { return };
            if self.install_prefetch(block) {
                self.continue_scan();
            } else {
                self.read_chunk(block);
            }
            return;
        }
        let old_chunk = std::mem::replace(&mut recovery.chunk, bytes);
        recovery.chunk_start_block = start_block;
        self.shared.give_back(old_chunk);
        self.start_prefetch();
        self.continue_scan();
    }

    /// Reads the chunk after the one in memory, unless recovery is probing (a wrap, the window
    /// after the end) or the log region ends there.
    fn start_prefetch(&mut self) {
        let log_end_block = self.shared.volume.log_end_block;
        let start_block = self.first_incomplete_batch();
        let recovery = self.recovery_mut();
        let probing = recovery.wrap_from.is_some() || recovery.final_check;
        // One read-ahead at a time; a finished one that did not follow is dropped.
        if probing || start_block >= log_end_block || matches!(recovery.prefetch, Prefetch::InFlight { .. }) {
            return;
        }
        recovery.prefetch = Prefetch::InFlight { start_block };
        let blocks = RECOVERY_CHUNK_BLOCKS_MIN.min(log_end_block - start_block);
        let length_bytes = u32::try_from(blocks * BLOCK_BYTES as u64).expect("recovery chunk under 4 GiB");
        let offset_bytes = start_block * BLOCK_BYTES as u64;
        let purpose = IoPurpose::RecoveryChunk { start_block, prefetch: true };
        self.shared.push_io(purpose, IoKind::Read { offset_bytes, length_bytes });
    }

    /// Where the read-ahead should start: the first batch from the scan position on that the
    /// chunk in memory does not hold whole (found by its headers alone), so that the scan can
    /// switch to the read-ahead buffer without copying; the chunk's end if the headers stop.
    fn first_incomplete_batch(&mut self) -> u64 {
        let (volume_id, batch_blocks_max) = (self.shared.volume.volume_id, self.shared.volume.batch_blocks_max);
        let recovery = self.recovery_mut();
        let chunk_blocks = (recovery.chunk.len() / BLOCK_BYTES) as u64;
        let chunk_end = recovery.chunk_start_block + chunk_blocks;
        let (mut block, mut sequence) = (recovery.block.max(recovery.chunk_start_block), recovery.last_sequence + 1);
        for _ in 0..chunk_blocks {
            if block >= chunk_end {
                break;
            }
            let at = ((block - recovery.chunk_start_block) as usize) * BLOCK_BYTES;
            let Ok(header) = BatchHeader::decode(&recovery.chunk[at..], block, volume_id, batch_blocks_max) else {
                return chunk_end;
            };
            if header.sequence != sequence {
                return chunk_end;
            }
            if block + u64::from(header.block_count) > chunk_end {
                return block;
            }
            block += u64::from(header.block_count);
            sequence += 1;
        }
        chunk_end
    }

    /// Continues from `block` with the read-ahead: the read-ahead buffer itself if it starts
    /// there, else the rest of the chunk in memory plus the read-ahead if that follows it. Says
    /// whether it did.
    fn install_prefetch(&mut self, block: u64) -> bool {
        let recovery = self.recovery_mut();
        let chunk_end = recovery.chunk_start_block + (recovery.chunk.len() / BLOCK_BYTES) as u64;
        let Prefetch::Ready { start_block, .. } = &recovery.prefetch else { return false };
        let start_block = *start_block;
        let swaps = start_block == block;
        let follows = start_block == chunk_end && (recovery.chunk_start_block..=chunk_end).contains(&block);
        if !swaps && !follows {
            return false;
        }
        let Prefetch::Ready { bytes, .. } = std::mem::take(&mut recovery.prefetch) else { unreachable!("checked") };
        let done_with = if swaps {
            std::mem::replace(&mut recovery.chunk, bytes)
        } else {
            let keep_from = ((block - recovery.chunk_start_block) as usize) * BLOCK_BYTES;
            recovery.chunk.drain(..keep_from);
            recovery.chunk.extend_from_slice(&bytes);
            bytes
        };
        recovery.chunk_start_block = block;
        self.shared.give_back(done_with);
        self.start_prefetch();
        true
    }

    /// Blocks from `block` on that tell a torn tail from corruption in the middle (see
    /// `window_blocks` below), clipped to the log region.
    fn window_blocks(&self, block: u64) -> u64 {
        self.volume_window_blocks().min(self.shared.volume.log_end_block - block)
    }

    fn volume_window_blocks(&self) -> u64 {
        window_blocks(self.shared.volume.batch_blocks_max, self.shared.volume.pipeline_depth_max())
    }

    pub(super) fn chunk_covers(&mut self, block: u64, blocks: u64) -> bool {
        let recovery = self.recovery_mut();
        let chunk_end = recovery.chunk_start_block + (recovery.chunk.len() / BLOCK_BYTES) as u64;
        block >= recovery.chunk_start_block && block + blocks <= chunk_end
    }

    /// Applies every batch the chunk in memory holds; reads the next chunk, or finishes.
    pub(super) fn continue_scan(&mut self) {
        let steps_max = 2 * self.shared.volume.log_end_block + 8;
        for _ in 0..=steps_max {
            if self.index_backlog_full() {
                self.recovery_mut().paused_for_index_work = true;
                return; // `complete_index_work` resumes the scan
            }
            self.recovery_mut().steps += 1;
            if self.recovery_mut().steps > steps_max {
                let block = self.recovery_mut().block;
                return self.fail_open(OpenError::EndlessLog { block });
            }
            let block = self.recovery_mut().block;
            if block >= self.shared.volume.log_end_block {
                if self.recovery_mut().final_check {
                    return self.finish_recovery();
                }
                if let Some(corrupt) = self.at_missing_batch(block, "the log region ends here".to_string()) {
                    return self.fail_open(corrupt);
                }
                continue;
            }
            if !self.chunk_covers(block, 1) {
                if self.need_chunk(block) {
                    continue;
                }
                return;
            }
            match self.replay_batch_at(block) {
                Replay::Applied(next_block) => {
                    let recovery = self.recovery_mut();
                    recovery.block = next_block;
                    recovery.wrap_from = None;
                }
                Replay::NeedMore | Replay::Bad(_) if !self.chunk_covers(block, self.window_blocks(block)) => {
                    if self.need_chunk(block) {
                        continue;
                    }
                    return;
                }
                Replay::NeedMore => unreachable!("a window covers the largest batch"),
                Replay::Bad(reason) => {
                    let sequence = self.recovery_mut().last_sequence + 1;
                    if self.try_mirror(block, sequence) {
                        return;
                    }
                    if self.recovery_mut().final_check {
                        return self.at_bad_batch(block, reason);
                    }
                    if let Some(corrupt) = self.at_missing_batch(block, reason) {
                        return self.fail_open(corrupt);
                    }
                }
            }
            if matches!(self.phase, Phase::Failed(_)) {
                return;
            }
        }
    }

    /// The expected batch is not at `block`. The first time, it is looked for at the region's
    /// start (a wrap). If it is not there either, no later batch may sit near the start (that
    /// would be corruption), and recovery goes back to where the log ended for its final check.
    fn at_missing_batch(&mut self, block: u64, reason: String) -> Option<OpenError> {
        let log_start = LOG_START_BLOCK;
        // Only a log still in the tail's lap can wrap, and only if the tail left room at the start.
        let tail_block = self.shared.volume.tail.block;
        let may_wrap = block >= tail_block && tail_block > log_start;
        let recovery = self.recovery_mut();
        match recovery.wrap_from.take() {
            None if may_wrap => {
                recovery.wrap_from = Some((block, reason));
                recovery.block = log_start;
                None
            }
            None => {
                recovery.final_check = true;
                None
            }
            Some((ended_at, first_reason)) => {
                if let Some(LogPosition { block: next_block, sequence: next_sequence }) =
                    self.find_later_batch(log_start, true)
                {
                    let offset = ended_at * BLOCK_BYTES as u64;
                    let reason = first_reason;
                    return Some(OpenError::CorruptLog { block: ended_at, offset, reason, next_block, next_sequence });
                }
                let recovery = self.recovery_mut();
                recovery.block = ended_at;
                recovery.final_check = true;
                None
            }
        }
    }

    /// The chunk in memory does not reach far enough from `block`: continue with the prefetched
    /// chunk (true), or wait for it or for a new read (false).
    fn need_chunk(&mut self, block: u64) -> bool {
        let recovery = self.recovery_mut();
        let probing = recovery.wrap_from.is_some() || recovery.final_check;
        if !probing {
            if self.install_prefetch(block) {
                return true;
            }
            let recovery = self.recovery_mut();
            let chunk_end = recovery.chunk_start_block + (recovery.chunk.len() / BLOCK_BYTES) as u64;
            let in_flight = match recovery.prefetch {
                Prefetch::InFlight { start_block } => {
                    start_block == block
                        || start_block == chunk_end && (recovery.chunk_start_block..=chunk_end).contains(&block)
                }
                _ => false,
            };
            if in_flight {
                recovery.waiting_for_prefetch = Some(block);
                return false;
            }
        }
        self.read_chunk(block);
        false
    }

    /// Reads from `block` on: at least a whole window, and many batches at a time.
    fn read_chunk(&mut self, block: u64) {
        if let Prefetch::Ready { .. } = self.recovery_mut().prefetch {
            self.recovery_mut().prefetch = Prefetch::None; // not where the scan goes on
        }
        let recovery = self.recovery_mut();
        // Looking for a wrapped batch, or at the window after the end: no need for a long read.
        let probing = recovery.wrap_from.is_some() || recovery.final_check;
        let window_blocks = self.window_blocks(block);
        let blocks = if probing { window_blocks } else { RECOVERY_CHUNK_BLOCKS_MIN.max(2 * window_blocks) };
        let blocks = blocks.min(self.shared.volume.log_end_block - block);
        let length_bytes = u32::try_from(blocks * BLOCK_BYTES as u64).expect("recovery chunk under 4 GiB");
        let offset_bytes = block * BLOCK_BYTES as u64;
        let purpose = IoPurpose::RecoveryChunk { start_block: block, prefetch: false };
        self.shared.push_io(purpose, IoKind::Read { offset_bytes, length_bytes });
    }

    fn chunk_slice(&mut self, block: u64, blocks: u64) -> &[u8] {
        let recovery = self.recovery_mut();
        let start = ((block - recovery.chunk_start_block) as usize) * BLOCK_BYTES;
        &recovery.chunk[start..start + blocks as usize * BLOCK_BYTES]
    }

    /// Verifies the batch at `block` and applies its records.
    fn replay_batch_at(&mut self, block: u64) -> Replay {
        let volume_id = self.shared.volume.volume_id;
        let batch_blocks_max = self.shared.volume.batch_blocks_max;
        let expected_sequence = self.recovery_mut().last_sequence + 1;
        let header = match BatchHeader::decode(self.chunk_slice(block, 1), block, volume_id, batch_blocks_max) {
            Ok(header) => header,
            Err(error) => return Replay::Bad(format!("batch header: {error}")),
        };
        if header.sequence != expected_sequence {
            return Replay::Bad(format!("batch sequence {} where {} was expected", header.sequence, expected_sequence));
        }
        let epoch_min = self.epoch_floor(header.sequence);
        if header.epoch < epoch_min && !self.shared.config.has_bug(super::config::Bug::IgnoreStaleEpoch) {
            return Replay::Bad(format!(
                "batch from epoch {} where {epoch_min} or later was expected: stale",
                header.epoch
            ));
        }
        if block + u64::from(header.block_count) > self.shared.volume.log_end_block {
            return Replay::Bad("batch runs past the end of the volume".to_string());
        }
        if !self.chunk_covers(block, header.block_count.into()) {
            return Replay::NeedMore;
        }
        // Taken out for the batch's length (not copied): applying it needs the engine mutably.
        let chunk = std::mem::take(&mut self.recovery_mut().chunk);
        let start = ((block - self.recovery_mut().chunk_start_block) as usize) * BLOCK_BYTES;
        let batch = &chunk[start..start + header.block_count as usize * BLOCK_BYTES];
        let applied = match header.verify_payload(batch) {
            Ok(()) => self.apply_recovered_batch(&header, batch),
            Err(error) => Err(format!("batch payload: {error}")),
        };
        self.recovery_mut().chunk = chunk;
        if let Err(reason) = applied {
            return Replay::Bad(reason);
        }
        let recovery = self.recovery_mut();
        recovery.last_sequence = header.sequence;
        recovery.last_epoch = header.epoch;
        let newest = NewestBatch {
            position: LogPosition { block, sequence: header.sequence },
            blocks: header.block_count,
            epoch: header.epoch,
        };
        let depth = self.shared.volume.pipeline_depth_max() as usize;
        let newest_batches = &mut self.recovery_mut().newest_batches;
        if newest_batches.len() >= depth {
            newest_batches.pop_front();
        }
        newest_batches.push_back(newest);
        self.shared.stats.recovered_batches += 1;
        Replay::Applied(block + u64::from(header.block_count))
    }

    /// Checks every record of a batch whose payload checksum passed, then queues them all for
    /// the index (a batch applies whole or not at all), and applies or hands out the queue.
    fn apply_recovered_batch(&mut self, header: &BatchHeader, batch: &[u8]) -> Result<(), String> {
        let payload_end = BATCH_HEADER_BYTES + header.payload_bytes as usize;
        let padded = self.shared.volume.records_padded;
        let mut records = BatchRecords::new(batch, header, padded);
        for record in records.by_ref() {
            let (_, record) = record.map_err(|error| format!("record: {error}"))?;
            if record.sequence != header.sequence {
                return Err("record sequence differs from its batch".to_string());
            }
        }
        if records.end() != payload_end {
            return Err("records do not fill the payload exactly".to_string());
        }
        let index = &mut self.keyspace.index;
        for record in BatchRecords::new(batch, header, padded) {
            let (at, record) = record.expect("checked above");
            let key = &batch[at + record.key_offset()..at + record.value_offset()];
            let location = Location {
                offset_bytes: header.block * BLOCK_BYTES as u64 + at as u64,
                record_bytes: crate::format::batch_size_u32(record.total_bytes()),
                sequence_low: crate::format::low_32_bits(header.sequence),
            };
            match record.kind {
                RecordKind::Put => index.queue_put(key, location, record.expires_at_ms),
                RecordKind::Delete => index.queue_remove(key),
                RecordKind::Clear => index.queue_clear(),
            }
        }
        self.dispatch_index_records(self.shared.config.index_work_records_min);
        Ok(())
    }

    /// Input: an index partition handed out by `poll_index_work`, its records applied (or not:
    /// they are applied now). The open may complete with it.
    pub fn complete_index_work(&mut self, work: IndexWork) {
        if !matches!(self.phase, Phase::Recovering(_)) {
            return; // the open failed meanwhile and dropped the index
        }
        self.keyspace.index.take_back(work);
        self.dispatch_index_records(self.shared.config.index_work_records_min);
        if std::mem::take(&mut self.recovery_mut().paused_for_index_work) {
            self.continue_scan();
        } else if std::mem::take(&mut self.recovery_mut().finish_after_index_work) {
            self.finish_recovery();
        }
    }

    /// Too many records wait for partitions that are out: read no further until one is back.
    fn index_backlog_full(&self) -> bool {
        let index = &self.keyspace.index;
        let backlog_max = self.shared.config.index_backlog_records_max.saturating_mul(index.partition_count());
        index.partitions_out() > 0 && index.queued_records() > backlog_max
    }

    /// Output (with `Config::hand_out_index_work`): an index partition and the records recovery
    /// read for it, to apply with [`IndexWork::run`] on any thread and give back with
    /// `complete_index_work`. Several may be out at once; they are independent of one another.
    pub fn poll_index_work(&mut self) -> Option<IndexWork> {
        match &mut self.phase {
            Phase::Recovering(recovery) => recovery.index_work.pop_front(),
            _ => None,
        }
    }

    /// Applies the index records queued so far, or (`Config::hand_out_index_work`) hands out
    /// the partitions at home with at least `records_min` of them.
    pub(super) fn dispatch_index_records(&mut self, records_min: usize) {
        if !self.shared.config.hand_out_index_work {
            return self.keyspace.index.apply_queued();
        }
        while let Some(work) = self.keyspace.index.hand_out(records_min) {
            self.recovery_mut().index_work.push_back(work);
        }
    }

    /// The batch at `block` is bad. If a valid later batch follows within one batch's reach, the
    /// log is corrupt in the middle; otherwise this is the torn tail and the log ends here.
    fn at_bad_batch(&mut self, block: u64, reason: String) {
        if !self.shared.config.has_bug(super::config::Bug::TruncateAtFirstBadBatch) {
            if let Some(LogPosition { block: next_block, sequence: next_sequence }) =
                self.find_later_batch(block, false)
            {
                let offset = block * BLOCK_BYTES as u64;
                return self.fail_open(OpenError::CorruptLog { block, offset, reason, next_block, next_sequence });
            }
        }
        self.shared.stats.truncated_at_block = Some(block);
        self.finish_recovery();
    }

    /// A valid batch that proves the log goes on after the expected one, in the window from
    /// `block` (after it, or from it with `include_block`). Batches that were in flight beside
    /// the expected one at the crash prove nothing: with `depth` in flight, only a sequence of
    /// expected + depth or more could not have been (see `pipeline_depth_max`). Batches of an
    /// older epoch than the last one replayed are stale leftovers of an earlier crash.
    fn find_later_batch(&mut self, block: u64, include_block: bool) -> Option<LogPosition> {
        let volume_id = self.shared.volume.volume_id;
        let batch_blocks_max = self.shared.volume.batch_blocks_max;
        let depth = self.shared.volume.pipeline_depth_max();
        let last_sequence = self.recovery_mut().last_sequence;
        let expected = last_sequence + 1;
        let first = if include_block { block } else { block + 1 };
        let window_end = (block + self.volume_window_blocks()).min(self.shared.volume.log_end_block);
        (first..window_end).find_map(|candidate| {
            let header =
                BatchHeader::decode(self.chunk_slice(candidate, 1), candidate, volume_id, batch_blocks_max).ok()?;
            if header.epoch < self.epoch_floor(header.sequence) {
                return None;
            }
            // The expected batch itself at `block` is the torn candidate, not a later batch. With
            // batches in flight, a whole copy of the expected sequence elsewhere may be a stale
            // one of an older epoch that recovery cannot date when it replayed nothing yet (from
            // a checkpoint: seed 1440), so only a sequence beyond the pipeline proves anything.
            let misplaced = header.sequence == expected && candidate != block && depth == 1;
            let later = header.sequence >= expected + depth || misplaced;
            later.then_some(LogPosition { block: candidate, sequence: header.sequence })
        })
    }

    /// The oldest epoch batch `sequence` may be of: no older than the batch replayed before it,
    /// nor than the last open's epoch from that open's first batch on.
    pub(super) fn epoch_floor(&mut self, sequence: u64) -> u64 {
        let recovery = self.recovery_mut();
        let (previous_epoch, first_sequence) = recovery.previous_epoch;
        let opened = if sequence >= first_sequence { previous_epoch } else { 0 };
        recovery.last_epoch.max(opened)
    }

    pub(super) fn finish_recovery(&mut self) {
        let log_end_block = self.shared.volume.log_end_block;
        if !self.keyspace.index.settled() {
            // The open completes once every partition is back with its records applied.
            self.dispatch_index_records(1);
            self.recovery_mut().finish_after_index_work = true;
            return;
        }
        let recovery = self.recovery_mut();
        if recovery.repairs_in_flight > 0 {
            recovery.finish_after_repairs = true; // the open completes once they are durable
            return;
        }
        if self.check_newest_mirror() {
            return; // the open completes once the newest batch has both copies
        }
        let recovery = self.recovery_mut();
        let (block, last_sequence) = (recovery.block, recovery.last_sequence);
        let block = if block >= log_end_block { LOG_START_BLOCK } else { block };
        recovery.chunk = Vec::new();
        // Only recovery's chunks come back as spares; none will after it.
        self.shared.spare_buffers.clear();
        assert!(last_sequence + 1 >= self.shared.volume.tail.sequence, "recovery ends at or after the tail");
        self.log.reset(block, last_sequence + 1);
        // This open's batches start here (a read-only open writes no superblock, so no matter).
        self.shared.volume.epoch_first_sequence = last_sequence + 1;
        self.cleaner.reset(self.shared.volume.tail);
        self.keyspace.live_keys = self.keyspace.index.len() as u64;
        if self.shared.config.open_read_only {
            self.shared.read_only = Some(ReadOnlyReason::OpenedReadOnly);
            self.phase = Phase::Ready;
            return self.run_all_clients();
        }
        let tail = self.shared.volume.tail;
        self.start_superblock_update(UpdateReason::Open, tail, self.shared.volume.checkpoint);
    }

    pub(super) fn fail_open(&mut self, error: OpenError) {
        self.phase = Phase::Failed(error);
        self.keyspace = super::keyspace::Keyspace::new(&self.shared.config);
        self.run_all_clients();
    }
}

/// How far after a bad batch recovery looks for a valid later one. One fault damages at most a
/// largest batch's worth of blocks (a misdirected write is one batch long, and may cover the
/// headers of several small ones), and the next batch starts within a largest batch after the
/// damage: two largest batches and a block. (One batch and a block missed a batch whose header a
/// misdirected 17-block write had destroyed along with the one before it; seed 3000332 heavy
/// value_domains truncated the whole log.) With `depth` batches in flight, the batch that proves
/// corruption comes after depth − 1 more that prove nothing: a largest batch more for each.
fn window_blocks(batch_blocks_max: u32, depth: u64) -> u64 {
    (1 + depth) * u64::from(batch_blocks_max) + 1
}
