//! The on-disk format, byte by byte. `docs/format.md` is this module's prose twin: change both.
//!
//! A volume (a data file or a block device) is:
//!
//! | block | content |
//! |---|---|
//! | 0 | superblock copy A |
//! | 1 | superblock copy B |
//! | 2.. | the log region: batches, each starting on a fresh block (a ring: compaction frees its tail) |
//! | after the log | format 3: two mirror slots of one largest batch each (the newest batches' copies) |
//! | the last blocks | two index checkpoint slots (`checkpoint.rs`), when configured |
//!
//! All integers are little-endian. Every checksum is CRC32C.

pub mod batch;
pub mod bytes;
pub mod checkpoint;
pub mod record;
pub mod superblock;

pub use batch::{BatchHeader, BatchRecords, RecordPlacement, BATCH_HEADER_BYTES};
pub use record::{RecordHeader, RecordKind, EXPIRY_BYTES, KEY_BYTES_MAX, RECORD_HEADER_BYTES};
pub use superblock::{CheckpointRef, Superblock, SUPERBLOCK_COPIES};

/// The first block of the log region.
pub const LOG_START_BLOCK: u64 = SUPERBLOCK_COPIES as u64;

/// The most blocks a batch may span: its size in bytes must fit the `u32` the format stores.
/// A superblock naming more is invalid; a configuration asking for more is refused at format.
pub const BATCH_BLOCKS_LIMIT: u32 = (u32::MAX as usize / crate::BLOCK_BYTES) as u32;

/// A size within one batch (a record, a payload, a batch's block count) as the `u32` the format
/// stores. Batches are at most [`BATCH_BLOCKS_LIMIT`] blocks, so a size that does not fit is a
/// bug, not input.
pub fn batch_size_u32(size: usize) -> u32 {
    u32::try_from(size).expect("a size within one batch fits u32 (batches are at most 4 MiB)")
}

/// The low 32 bits of a batch sequence number or an epoch, as records and index entries keep
/// them (a deliberate truncation: they tell a stale record from the expected one, with the
/// checksum binding the rest).
pub fn low_32_bits(value: u64) -> u32 {
    (value & u64::from(u32::MAX)) as u32
}

/// Rounds `bytes` up to a whole number of blocks.
pub fn blocks_for(bytes: usize) -> usize {
    bytes.div_ceil(crate::BLOCK_BYTES)
}

/// Why bytes read from disk are not what they should be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("bad magic number")]
    Magic,
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error("field {field} holds {value}, which is out of range")]
    Range { field: &'static str, value: u64 },
    #[error("belongs to another volume or location")]
    Foreign,
}
