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
//! Records follow from byte 64; zero padding fills the last block. Before format 7 they sit
//! back to back and may span blocks. From format 7 a record may be preceded by zero padding to
//! the next block boundary ([`RecordPlacement`]): a reader takes the rest of a block as padding
//! where fewer bytes than a record's fixed header remain, or where the kind byte is zero (no
//! record has kind 0). The whole batch is applied at recovery or none of it: that makes a
//! command's records (an MSET's several keys) atomic across a crash.

use super::bytes::{get_u32, get_u64, put_u32, put_u64};
use super::record::{RecordHeader, RECORD_HEADER_BYTES};
use super::FormatError;
use crate::BLOCK_BYTES;

pub const BATCH_HEADER_BYTES: usize = 64;
pub const BATCH_MAGIC: [u8; 4] = *b"QKVB";

/// Byte offsets of the fields (the table in the module documentation and docs/format.md).
mod at {
    pub const MAGIC: usize = 0;
    pub const HEADER_CHECKSUM: usize = 4;
    pub const VOLUME_ID: usize = 8;
    pub const EPOCH: usize = 16;
    pub const SEQUENCE: usize = 24;
    pub const BLOCK: usize = 32;
    pub const BLOCK_COUNT: usize = 40;
    pub const PAYLOAD_BYTES: usize = 44;
    pub const RECORD_COUNT: usize = 48;
    pub const PAYLOAD_CHECKSUM: usize = 52;
    pub const ZERO: usize = 56;
}

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
        batch[at::MAGIC..at::MAGIC + 4].copy_from_slice(&BATCH_MAGIC);
        put_u64(batch, at::VOLUME_ID, self.volume_id);
        put_u64(batch, at::EPOCH, self.epoch);
        put_u64(batch, at::SEQUENCE, self.sequence);
        put_u64(batch, at::BLOCK, self.block);
        put_u32(batch, at::BLOCK_COUNT, self.block_count);
        put_u32(batch, at::PAYLOAD_BYTES, self.payload_bytes);
        put_u32(batch, at::RECORD_COUNT, self.record_count);
        put_u32(batch, at::PAYLOAD_CHECKSUM, self.payload_checksum);
        put_u64(batch, at::ZERO, 0);
        let checksum = crc32c::crc32c(&batch[at::VOLUME_ID..BATCH_HEADER_BYTES]);
        put_u32(batch, at::HEADER_CHECKSUM, checksum);
    }

    /// Decodes and verifies a header read from `block`. Its length fields are trusted only
    /// after the header checksum and the location and volume checks pass (a torn length must
    /// not send recovery into garbage).
    pub fn decode(bytes: &[u8], block: u64, volume_id: u64, batch_blocks_max: u32) -> Result<BatchHeader, FormatError> {
        if bytes.len() < BATCH_HEADER_BYTES || bytes[at::MAGIC..at::MAGIC + 4] != BATCH_MAGIC {
            return Err(FormatError::Magic);
        }
        let stored = get_u32(bytes, at::HEADER_CHECKSUM);
        let computed = crc32c::crc32c(&bytes[at::VOLUME_ID..BATCH_HEADER_BYTES]);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        let header = BatchHeader {
            volume_id: get_u64(bytes, at::VOLUME_ID),
            epoch: get_u64(bytes, at::EPOCH),
            sequence: get_u64(bytes, at::SEQUENCE),
            block: get_u64(bytes, at::BLOCK),
            block_count: get_u32(bytes, at::BLOCK_COUNT),
            payload_bytes: get_u32(bytes, at::PAYLOAD_BYTES),
            record_count: get_u32(bytes, at::RECORD_COUNT),
            payload_checksum: get_u32(bytes, at::PAYLOAD_CHECKSUM),
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

/// Where a writer puts each record in a batch. Readers need only know whether padding may occur
/// (format 7); how much a writer pads is its own choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordPlacement {
    /// Formats before 7: records back to back, crossing blocks anywhere.
    BackToBack,
    /// Format 7: a record's fixed header never crosses a block boundary (the least padding).
    HeadersWhole,
    /// Format 7, the default: neither does any record of at most one block, so a GET of a small
    /// record reads one block, never two.
    SmallRecordsWhole,
}

impl RecordPlacement {
    /// Whether readers must skip padding (format 7).
    pub fn may_pad(self) -> bool {
        self != RecordPlacement::BackToBack
    }

    /// The zero bytes to write before a record of `record_bytes` that would start `at` bytes
    /// from its batch's first byte (batches start on a block).
    pub fn padding_before(self, at: usize, record_bytes: usize) -> usize {
        let room = BLOCK_BYTES - at % BLOCK_BYTES;
        let at_block_start = room == BLOCK_BYTES;
        let pad = match self {
            RecordPlacement::BackToBack => false,
            RecordPlacement::HeadersWhole => room < RECORD_HEADER_BYTES,
            RecordPlacement::SmallRecordsWhole => {
                room < RECORD_HEADER_BYTES || (record_bytes > room && record_bytes <= BLOCK_BYTES)
            }
        };
        if pad && !at_block_start {
            room
        } else {
            0
        }
    }
}

/// The records of a batch whose payload checksum passed, in order: each one's offset from the
/// batch's first byte and its header. Stops after the header's record count or the first error;
/// [`BatchRecords::end`] then says where the last record ended.
pub struct BatchRecords<'a> {
    batch: &'a [u8],
    at: usize,
    payload_end: usize,
    records_left: u32,
    may_pad: bool,
}

impl<'a> BatchRecords<'a> {
    /// `batch` starts at the batch's first byte and holds at least its payload.
    pub fn new(batch: &'a [u8], header: &BatchHeader, may_pad: bool) -> BatchRecords<'a> {
        let payload_end = (BATCH_HEADER_BYTES + header.payload_bytes as usize).min(batch.len());
        BatchRecords { batch, at: BATCH_HEADER_BYTES, payload_end, records_left: header.record_count, may_pad }
    }

    /// Where the records read so far end: the payload's end once all have been read.
    pub fn end(&self) -> usize {
        self.at
    }

    /// Skips padding before the next record: the rest of the block where a fixed header would
    /// not fit, or where the kind byte is zero. Padding is all zero and never a whole block.
    fn skip_padding(&mut self) -> Result<(), FormatError> {
        let room = BLOCK_BYTES - self.at % BLOCK_BYTES;
        if !self.may_pad || room == BLOCK_BYTES {
            return Ok(());
        }
        const KIND_AT: usize = 4;
        let padded = room < RECORD_HEADER_BYTES || self.batch.get(self.at + KIND_AT) == Some(&0);
        if !padded {
            return Ok(());
        }
        let next = self.at + room;
        let padding = self.batch.get(self.at..next).filter(|_| next <= self.payload_end);
        if !padding.is_some_and(|bytes| bytes.iter().all(|&byte| byte == 0)) {
            return Err(FormatError::Range { field: "record padding", value: self.at as u64 });
        }
        self.at = next;
        Ok(())
    }

    fn next_record(&mut self) -> Result<(usize, RecordHeader), FormatError> {
        self.skip_padding()?;
        let record = RecordHeader::decode_trusted(&self.batch[self.at..self.payload_end])?;
        let at = self.at;
        self.at += record.total_bytes();
        Ok((at, record))
    }
}

impl Iterator for BatchRecords<'_> {
    type Item = Result<(usize, RecordHeader), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.records_left == 0 {
            return None;
        }
        let result = self.next_record();
        // After an error nothing that follows can be trusted.
        self.records_left = if result.is_ok() { self.records_left - 1 } else { 0 };
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_records_start_on_a_fresh_block_rather_than_cross_one() {
        let placement = RecordPlacement::SmallRecordsWhole;
        assert_eq!(placement.padding_before(64, 4032), 0, "fits exactly");
        assert_eq!(placement.padding_before(64, 4033), 4032, "would cross: next block");
        assert_eq!(placement.padding_before(64, 4097), 0, "larger than a block: crosses anyway");
        assert_eq!(placement.padding_before(4096 - 23, 10), 23, "no room for a fixed header");
        assert_eq!(placement.padding_before(8192, 4096), 0, "a block start is never padded");
        assert_eq!(RecordPlacement::HeadersWhole.padding_before(64, 4033), 0);
        assert_eq!(RecordPlacement::HeadersWhole.padding_before(4096 - 23, 10), 23);
        assert_eq!(RecordPlacement::BackToBack.padding_before(4096 - 23, 10), 0);
    }
}
