//! The superblock: what the volume is and where its log starts, in two copies (blocks 0 and 1).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `QUILLKV1` |
//! | 8 | 4 | format version: 7 (as 6, and records may be padded to start on a fresh block), 6 (four mirror slots of a largest batch each sit right before the checkpoint slots), 4 (two mirror slots) or 5 (no mirror slots); records may carry an expiry time. Versions 3 (two slots) and 2 (none) are the same without expiry: still opened, and written back as 4 and 5 |
//! | 12 | 4 | block size in bytes (4096) |
//! | 16 | 8 | sequence: incremented on every superblock write; the highest valid copy wins |
//! | 24 | 8 | volume id: chosen at format time, stamped into every batch and record checksum |
//! | 32 | 8 | epoch: incremented on every open; stamped into every batch and record |
//! | 40 | 8 | volume size in blocks |
//! | 48 | 8 | first log block (2) |
//! | 56 | 4 | largest batch in blocks |
//! | 60 | 4 | checkpoint slot size in blocks (two slots at the end of the volume; 0: none) |
//! | 64 | 8 | log tail: the block of the oldest batch recovery must read |
//! | 72 | 8 | log tail: that batch's sequence number |
//! | 80 | 4 | checkpoint slot in use: 0 none, 1 or 2 |
//! | 84 | 4 | CRC32C of the checkpoint's bytes |
//! | 88 | 8 | checkpoint length in bytes |
//! | 96 | 8 | checkpoint sequence: the index state after every batch up to this one |
//! | 104 | 8 | replay block: where the batch after the checkpoint sequence starts |
//! | 112 | 8 | keys in the checkpoint |
//! | 120 | 4 | keys in the index when this copy was written (a hint to size the index at open) |
//! | 124 | 4 | CRC32C of bytes 0..124, then (formats 6 and 7) bytes 128..144, then this copy's block number (8 bytes, LE) |
//! | 128 | 8 | (formats 6 and 7) the checkpoint's epoch: batches after its replay block are of it or later |
//! | 136 | 8 | (formats 6 and 7) the sequence of this epoch's first batch: batches from it on are of this epoch or later |
//! | 144 | 3952 | zero |

use super::bytes::{get_u32, get_u64, put_u32, put_u64};
use super::FormatError;
use crate::BLOCK_BYTES;

pub const SUPERBLOCK_COPIES: usize = 2;
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"QUILLKV1";
/// The format new mirrored volumes get: the log's newest batches are mirrored in four slots,
/// which lets two batches be in flight at once (see `pipeline_depth_max`), records may carry an
/// expiry time, and a record may be preceded by padding so that it starts on a fresh block
/// (`RecordPlacement`).
pub const FORMAT_VERSION: u32 = 7;
/// As 7 without padding: records back to back. Still opened, and kept as it is (its readers
/// would take padding for a torn batch).
pub const FORMAT_VERSION_UNPADDED: u32 = 6;
/// Mirrored in two slots: one batch in flight at a time. Still opened, and kept as it is (the
/// slots' space cannot grow without moving the log's end).
pub const FORMAT_VERSION_TWO_MIRROR_SLOTS: u32 = 4;
/// The same without mirror slots.
pub const FORMAT_VERSION_UNMIRRORED: u32 = 5;
/// Versions before expiry (mirrored, and not): opened as 4 and 5, and written back as such by a
/// writable open, so a binary that knows no expiry refuses the volume rather than misread it.
pub const FORMAT_VERSION_BEFORE_EXPIRY: u32 = 3;
pub const FORMAT_VERSION_UNMIRRORED_BEFORE_EXPIRY: u32 = 2;
const CHECKSUM_AT: usize = 124;

/// An index checkpoint the superblock points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointRef {
    /// 1 or 2: which of the two slots at the end of the volume holds it.
    pub slot: u32,
    pub checksum: u32,
    pub bytes: u64,
    /// The index state after every batch up to and including this sequence.
    pub sequence: u64,
    /// Where batch `sequence + 1` starts: recovery replays the log from here.
    pub replay_block: u64,
    pub keys: u64,
    /// The epoch of the engine that wrote it (format 6; 0 before): every batch after the replay
    /// block was written in this epoch or a later one, so recovery refuses an older one there (a
    /// stale batch left beside a torn one by an earlier crash, seed 518).
    pub epoch: u64,
}

/// Byte offsets of the fields (the table in the module documentation and docs/format.md).
mod at {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const BLOCK_BYTES: usize = 12;
    pub const SEQUENCE: usize = 16;
    pub const VOLUME_ID: usize = 24;
    pub const EPOCH: usize = 32;
    pub const VOLUME_BLOCKS: usize = 40;
    pub const LOG_START_BLOCK: usize = 48;
    pub const BATCH_BLOCKS_MAX: usize = 56;
    pub const CHECKPOINT_SLOT_BLOCKS: usize = 60;
    pub const TAIL_BLOCK: usize = 64;
    pub const TAIL_SEQUENCE: usize = 72;
    pub const CHECKPOINT_SLOT: usize = 80;
    pub const CHECKPOINT_CHECKSUM: usize = 84;
    pub const CHECKPOINT_BYTES: usize = 88;
    pub const CHECKPOINT_SEQUENCE: usize = 96;
    pub const CHECKPOINT_REPLAY_BLOCK: usize = 104;
    pub const CHECKPOINT_KEYS: usize = 112;
    pub const KEYS_HINT: usize = 120;
    /// Formats 6 and 7 only, and covered by the checksum there (after bytes 0..124).
    pub const CHECKPOINT_EPOCH: usize = 128;
    pub const EPOCH_FIRST_SEQUENCE: usize = 136;
    /// The end of the format-6 fields the checksum covers after byte 124.
    pub const FORMAT_6_END: usize = 144;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub sequence: u64,
    pub volume_id: u64,
    pub epoch: u64,
    pub volume_blocks: u64,
    pub log_start_block: u64,
    pub batch_blocks_max: u32,
    pub checkpoint_slot_blocks: u32,
    pub tail_block: u64,
    pub tail_sequence: u64,
    pub checkpoint: Option<CheckpointRef>,
    /// Keys in the index when written, saturating: sizes the index before recovery fills it.
    pub keys_hint: u32,
    /// The sequence of the first batch this epoch writes (format 6; `u64::MAX` before): every
    /// batch of that sequence or later is of this epoch or a later one. An open that truncated
    /// the log there writes new batches over stale ones of older epochs, whose copies (in the log
    /// or a mirror slot) recovery must never take for them (seed 100984).
    pub epoch_first_sequence: u64,
    /// Mirror slots: every batch is also written to slot `sequence % mirror_slots`, so the newest
    /// batches survive damage to their place in the log (recovery repairs them from the mirror).
    /// 4 (formats 7 and 6), 2 (formats 4 and 3) or 0 (formats 5 and 2).
    pub mirror_slots: u32,
    /// Records may be preceded by padding (format 7, and only with four mirror slots).
    pub records_padded: bool,
}

impl Superblock {
    /// The block number this superblock's copy `sequence` goes to: copies alternate, so a torn
    /// write of one copy leaves the other intact.
    pub fn home_block(&self) -> u64 {
        self.sequence % SUPERBLOCK_COPIES as u64
    }

    /// The first block past the log region: the mirror slots (format 3), then the checkpoint
    /// slots follow it.
    pub fn log_end_block(&self) -> u64 {
        self.volume_blocks - 2 * u64::from(self.checkpoint_slot_blocks) - self.mirror_blocks()
    }

    /// Blocks the mirror slots take.
    pub fn mirror_blocks(&self) -> u64 {
        mirror_blocks(self.mirror_slots, self.batch_blocks_max)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK_BYTES];
        block[at::MAGIC..at::MAGIC + 8].copy_from_slice(&SUPERBLOCK_MAGIC);
        let version = match (self.mirror_slots, self.records_padded) {
            (MIRROR_SLOTS, true) => FORMAT_VERSION,
            (MIRROR_SLOTS, false) => FORMAT_VERSION_UNPADDED,
            (2, false) => FORMAT_VERSION_TWO_MIRROR_SLOTS,
            (0, false) => FORMAT_VERSION_UNMIRRORED,
            (slots, padded) => unreachable!("no format has {slots} mirror slots and padding {padded}"),
        };
        put_u32(&mut block, at::VERSION, version);
        put_u32(&mut block, at::BLOCK_BYTES, BLOCK_BYTES as u32);
        put_u64(&mut block, at::SEQUENCE, self.sequence);
        put_u64(&mut block, at::VOLUME_ID, self.volume_id);
        put_u64(&mut block, at::EPOCH, self.epoch);
        put_u64(&mut block, at::VOLUME_BLOCKS, self.volume_blocks);
        put_u64(&mut block, at::LOG_START_BLOCK, self.log_start_block);
        put_u32(&mut block, at::BATCH_BLOCKS_MAX, self.batch_blocks_max);
        put_u32(&mut block, at::CHECKPOINT_SLOT_BLOCKS, self.checkpoint_slot_blocks);
        put_u64(&mut block, at::TAIL_BLOCK, self.tail_block);
        put_u64(&mut block, at::TAIL_SEQUENCE, self.tail_sequence);
        if let Some(checkpoint) = &self.checkpoint {
            put_u32(&mut block, at::CHECKPOINT_SLOT, checkpoint.slot);
            put_u32(&mut block, at::CHECKPOINT_CHECKSUM, checkpoint.checksum);
            put_u64(&mut block, at::CHECKPOINT_BYTES, checkpoint.bytes);
            put_u64(&mut block, at::CHECKPOINT_SEQUENCE, checkpoint.sequence);
            put_u64(&mut block, at::CHECKPOINT_REPLAY_BLOCK, checkpoint.replay_block);
            put_u64(&mut block, at::CHECKPOINT_KEYS, checkpoint.keys);
        }
        put_u32(&mut block, at::KEYS_HINT, self.keys_hint);
        if has_epoch_fields(version) {
            put_u64(&mut block, at::CHECKPOINT_EPOCH, self.checkpoint.map_or(0, |checkpoint| checkpoint.epoch));
            put_u64(&mut block, at::EPOCH_FIRST_SEQUENCE, self.epoch_first_sequence);
        }
        let checksum = checksum(&block, self.home_block());
        put_u32(&mut block, CHECKSUM_AT, checksum);
        block
    }

    /// Decodes the copy read from `block_number`; the checksum binds it to that location.
    pub fn decode(block: &[u8], block_number: u64) -> Result<Superblock, FormatError> {
        if block.len() < BLOCK_BYTES || block[at::MAGIC..at::MAGIC + 8] != SUPERBLOCK_MAGIC {
            return Err(FormatError::Magic);
        }
        let stored = get_u32(block, CHECKSUM_AT);
        let computed = checksum(block, block_number);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        let version = get_u32(block, at::VERSION);
        let mirror_slots = match version {
            FORMAT_VERSION | FORMAT_VERSION_UNPADDED => MIRROR_SLOTS,
            FORMAT_VERSION_TWO_MIRROR_SLOTS | FORMAT_VERSION_BEFORE_EXPIRY => 2,
            FORMAT_VERSION_UNMIRRORED | FORMAT_VERSION_UNMIRRORED_BEFORE_EXPIRY => 0,
            _ => return Err(FormatError::Version(version)),
        };
        let block_bytes = get_u32(block, at::BLOCK_BYTES);
        if block_bytes as usize != BLOCK_BYTES {
            return Err(FormatError::Range { field: "block size", value: block_bytes.into() });
        }
        let slot = get_u32(block, at::CHECKPOINT_SLOT);
        let checkpoint = (slot != 0).then(|| CheckpointRef {
            slot,
            checksum: get_u32(block, at::CHECKPOINT_CHECKSUM),
            bytes: get_u64(block, at::CHECKPOINT_BYTES),
            sequence: get_u64(block, at::CHECKPOINT_SEQUENCE),
            replay_block: get_u64(block, at::CHECKPOINT_REPLAY_BLOCK),
            keys: get_u64(block, at::CHECKPOINT_KEYS),
            epoch: if has_epoch_fields(version) { get_u64(block, at::CHECKPOINT_EPOCH) } else { 0 },
        });
        let superblock = Superblock {
            sequence: get_u64(block, at::SEQUENCE),
            volume_id: get_u64(block, at::VOLUME_ID),
            epoch: get_u64(block, at::EPOCH),
            volume_blocks: get_u64(block, at::VOLUME_BLOCKS),
            log_start_block: get_u64(block, at::LOG_START_BLOCK),
            batch_blocks_max: get_u32(block, at::BATCH_BLOCKS_MAX),
            checkpoint_slot_blocks: get_u32(block, at::CHECKPOINT_SLOT_BLOCKS),
            tail_block: get_u64(block, at::TAIL_BLOCK),
            tail_sequence: get_u64(block, at::TAIL_SEQUENCE),
            checkpoint,
            keys_hint: get_u32(block, at::KEYS_HINT),
            epoch_first_sequence: if has_epoch_fields(version) {
                get_u64(block, at::EPOCH_FIRST_SEQUENCE)
            } else {
                u64::MAX
            },
            mirror_slots,
            records_padded: version == FORMAT_VERSION,
        };
        if superblock.home_block() != block_number {
            return Err(FormatError::Foreign);
        }
        superblock.validate_layout()?;
        Ok(superblock)
    }

    /// Every block number the superblock holds lies where it must: a checksummed copy with an
    /// impossible layout was written by a broken program, and is refused like a corrupt one.
    fn validate_layout(&self) -> Result<(), FormatError> {
        let slots_blocks = 2 * u64::from(self.checkpoint_slot_blocks) + self.mirror_blocks();
        let layout_ok = self.log_start_block == super::LOG_START_BLOCK
            && self.batch_blocks_max > 0
            && self.batch_blocks_max <= super::BATCH_BLOCKS_LIMIT
            && self.volume_blocks > self.log_start_block + slots_blocks + u64::from(self.batch_blocks_max);
        if !layout_ok {
            return Err(FormatError::Range { field: "layout", value: self.volume_blocks });
        }
        let log = self.log_start_block..self.log_end_block();
        if !log.contains(&self.tail_block) || self.tail_sequence == 0 {
            return Err(FormatError::Range { field: "log tail", value: self.tail_block });
        }
        if let Some(checkpoint) = &self.checkpoint {
            let slot_bytes = u64::from(self.checkpoint_slot_blocks) * BLOCK_BYTES as u64;
            if checkpoint.slot > 2 || checkpoint.bytes > slot_bytes || !log.contains(&checkpoint.replay_block) {
                return Err(FormatError::Range { field: "checkpoint", value: checkpoint.slot.into() });
            }
        }
        Ok(())
    }
}

/// Mirror slots of a new mirrored volume (format 6).
pub const MIRROR_SLOTS: u32 = 4;

/// The mirror slots a volume formatted now gets.
pub fn new_volume_mirror_slots(mirror_batches: bool) -> u32 {
    if mirror_batches {
        MIRROR_SLOTS
    } else {
        0
    }
}

/// Blocks the mirror slots take: a largest batch each.
pub fn mirror_blocks(mirror_slots: u32, batch_blocks_max: u32) -> u64 {
    u64::from(mirror_slots) * u64::from(batch_blocks_max)
}

/// How many batches a writer may have in flight at once on a volume with `mirror_slots`.
///
/// Recovery must tell an acknowledged batch damaged after the fact from one torn by a crash.
/// With D batches in flight, a crash may tear batch N and leave N+1 … N+D−1 whole: valid
/// batches after a bad one are no proof of corruption unless their sequence is N+D or more. A
/// damaged acknowledged batch is repaired from its mirror slot; its slot is reused by batch
/// N+S only after N+S−D was durable, so once the copy is gone a batch N+S−D ≥ N+D proves the
/// damage: S ≥ 2D. Two slots allow one batch in flight, four allow two. Without mirror slots
/// a bad batch followed by any valid one refuses the open, which also needs D = 1.
pub fn pipeline_depth_max(mirror_slots: u32) -> u32 {
    (mirror_slots / 2).max(1)
}

/// Whether the version has the epoch fields at bytes 128..144 (formats 6 and 7).
fn has_epoch_fields(version: u32) -> bool {
    version == FORMAT_VERSION || version == FORMAT_VERSION_UNPADDED
}

/// CRC32C of bytes 0..124, then (formats 6 and 7) of bytes 128..144, then of the block number.
/// Older versions leave those bytes zero and outside the checksum.
fn checksum(block: &[u8], block_number: u64) -> u32 {
    let partial = crc32c::crc32c(&block[..CHECKSUM_AT]);
    let partial = if has_epoch_fields(get_u32(block, at::VERSION)) {
        crc32c::crc32c_append(partial, &block[at::CHECKPOINT_EPOCH..at::FORMAT_6_END])
    } else {
        partial
    };
    crc32c::crc32c_append(partial, &block_number.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Volumes written before expiry (versions 3 and 2) open as 4 and 5 and are written back so;
    /// a version 4 volume keeps its two mirror slots.
    #[test]
    fn versions_before_expiry_open_and_are_written_back_upgraded() {
        let cases = [(3, 2, FORMAT_VERSION_TWO_MIRROR_SLOTS), (2, 0, FORMAT_VERSION_UNMIRRORED)];
        for (legacy, mirror_slots, upgraded) in cases {
            let superblock = Superblock {
                sequence: 3,
                volume_id: 7,
                epoch: 2,
                volume_blocks: 1024,
                log_start_block: 2,
                batch_blocks_max: 16,
                checkpoint_slot_blocks: 0,
                tail_block: 2,
                tail_sequence: 1,
                checkpoint: None,
                keys_hint: 0,
                epoch_first_sequence: u64::MAX,
                mirror_slots,
                records_padded: false,
            };
            let mut block = superblock.encode();
            assert_eq!(get_u32(&block, at::VERSION), upgraded);
            put_u32(&mut block, at::VERSION, legacy);
            let sum = checksum(&block, superblock.home_block());
            put_u32(&mut block, CHECKSUM_AT, sum);
            let decoded = Superblock::decode(&block, superblock.home_block()).expect("a legacy version opens");
            assert_eq!(decoded.mirror_slots, mirror_slots);
            assert_eq!(get_u32(&decoded.encode(), at::VERSION), upgraded);
            put_u32(&mut block, at::VERSION, 8);
            let sum = checksum(&block, superblock.home_block());
            put_u32(&mut block, CHECKSUM_AT, sum);
            assert!(matches!(Superblock::decode(&block, superblock.home_block()), Err(FormatError::Version(8))));
        }
    }
}

#[cfg(test)]
mod pipeline_tests {
    use super::*;

    /// The depth recovery's torn-tail rule allows follows the slots (S ≥ 2D), and a new
    /// mirrored volume's slots allow two batches in flight.
    #[test]
    fn pipeline_depth_follows_the_mirror_slots() {
        assert_eq!(pipeline_depth_max(0), 1);
        assert_eq!(pipeline_depth_max(2), 1);
        assert_eq!(pipeline_depth_max(MIRROR_SLOTS), 2);
        for slots in [0, 2, MIRROR_SLOTS] {
            assert!(slots == 0 || slots >= 2 * pipeline_depth_max(slots));
        }
    }
}
