//! A batch: one group commit, written as one contiguous run of fresh blocks.
//!
//! The header sits at the start of the batch's first block:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `QKVB` |
//! | 4 | 4 | CRC32C of header bytes 8..64 |
//! | 8 | 8 | volume id |
//! | 16 | 8 | epoch |
//! | 24 | 8 | sequence number (one per batch, increasing across epochs) |
//! | 32 | 8 | this batch's first block number (its own location) |
//! | 40 | 4 | block count, header block included |
//! | 44 | 4 | payload length in bytes (records start at byte 64 of the batch) |
//! | 48 | 4 | record count |
//! | 52 | 4 | CRC32C of the payload bytes |
//! | 56 | 8 | zero |
//!
//! Records follow back to back from byte 64 and may span blocks; zero padding fills the last
//! block. The whole batch is applied at recovery or none of it: that makes a command's records
//! (an MSET's several keys) atomic across a crash.

use super::bytes::{get_u32, get_u64, put_u32, put_u64};
use super::FormatError;
use crate::BLOCK_BYTES;

pub const BATCH_HEADER_BYTES: usize = 64;
pub const BATCH_MAGIC: [u8; 4] = *b"QKVB";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub volume_id: u64,
    pub epoch: u64,
    pub sequence: u64,
    pub block: u64,
    pub block_count: u32,
    pub payload_bytes: u32,
    pub record_count: u32,
    pub payload_checksum: u32,
}

impl BatchHeader {
    /// Writes the header into the first 64 bytes of `batch`, computing the payload checksum
    /// over `batch[64..64 + payload_bytes]`.
    pub fn seal(&mut self, batch: &mut [u8]) {
        let payload_end = BATCH_HEADER_BYTES + self.payload_bytes as usize;
        assert!(batch.len() == self.block_count as usize * BLOCK_BYTES);
        assert!(payload_end <= batch.len());
        self.payload_checksum = crc32c::crc32c(&batch[BATCH_HEADER_BYTES..payload_end]);
        batch[0..4].copy_from_slice(&BATCH_MAGIC);
        put_u64(batch, 8, self.volume_id);
        put_u64(batch, 16, self.epoch);
        put_u64(batch, 24, self.sequence);
        put_u64(batch, 32, self.block);
        put_u32(batch, 40, self.block_count);
        put_u32(batch, 44, self.payload_bytes);
        put_u32(batch, 48, self.record_count);
        put_u32(batch, 52, self.payload_checksum);
        put_u64(batch, 56, 0);
        let checksum = crc32c::crc32c(&batch[8..BATCH_HEADER_BYTES]);
        put_u32(batch, 4, checksum);
    }

    /// Decodes and verifies a header read from `block`. Its length fields are trusted only
    /// after the header checksum and the location and volume checks pass (a torn length must
    /// not send recovery into garbage).
    pub fn decode(bytes: &[u8], block: u64, volume_id: u64, batch_blocks_max: u32) -> Result<BatchHeader, FormatError> {
        if bytes.len() < BATCH_HEADER_BYTES || bytes[0..4] != BATCH_MAGIC {
            return Err(FormatError::Magic);
        }
        let stored = get_u32(bytes, 4);
        let computed = crc32c::crc32c(&bytes[8..BATCH_HEADER_BYTES]);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        let header = BatchHeader {
            volume_id: get_u64(bytes, 8),
            epoch: get_u64(bytes, 16),
            sequence: get_u64(bytes, 24),
            block: get_u64(bytes, 32),
            block_count: get_u32(bytes, 40),
            payload_bytes: get_u32(bytes, 44),
            record_count: get_u32(bytes, 48),
            payload_checksum: get_u32(bytes, 52),
        };
        if header.volume_id != volume_id || header.block != block {
            return Err(FormatError::Foreign);
        }
        let capacity = u64::from(header.block_count) * BLOCK_BYTES as u64;
        if header.block_count == 0 || header.block_count > batch_blocks_max {
            return Err(FormatError::Range { field: "block count", value: header.block_count.into() });
        }
        if BATCH_HEADER_BYTES as u64 + u64::from(header.payload_bytes) > capacity {
            return Err(FormatError::Range { field: "payload length", value: header.payload_bytes.into() });
        }
        Ok(header)
    }

    /// Verifies the payload of a whole batch whose header already decoded.
    pub fn verify_payload(&self, batch: &[u8]) -> Result<(), FormatError> {
        let payload_end = BATCH_HEADER_BYTES + self.payload_bytes as usize;
        if batch.len() < payload_end {
            return Err(FormatError::Range { field: "batch length", value: batch.len() as u64 });
        }
        let computed = crc32c::crc32c(&batch[BATCH_HEADER_BYTES..payload_end]);
        if computed != self.payload_checksum {
            return Err(FormatError::Checksum { stored: self.payload_checksum, computed });
        }
        Ok(())
    }
}
