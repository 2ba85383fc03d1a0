//! The superblock: what the volume is, in two copies (blocks 0 and 1).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `QUILLKV1` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | block size in bytes (4096) |
//! | 16 | 8 | sequence: incremented on every superblock write; the highest valid copy wins |
//! | 24 | 8 | volume id: chosen at format time, stamped into every batch and record checksum |
//! | 32 | 8 | epoch: incremented on every open; stamped into every batch and record |
//! | 40 | 8 | volume size in blocks |
//! | 48 | 8 | first log block (2) |
//! | 56 | 4 | largest batch in blocks |
//! | 60 | 4 | CRC32C of bytes 0..60 followed by this copy's block number (8 bytes, LE) |
//! | 64 | 4032 | zero |

use super::bytes::{get_u32, get_u64, put_u32, put_u64};
use super::FormatError;
use crate::BLOCK_BYTES;

pub const SUPERBLOCK_COPIES: usize = 2;
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"QUILLKV1";
pub const FORMAT_VERSION: u32 = 1;
const CHECKSUM_AT: usize = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub sequence: u64,
    pub volume_id: u64,
    pub epoch: u64,
    pub volume_blocks: u64,
    pub log_start_block: u64,
    pub batch_blocks_max: u32,
}

impl Superblock {
    /// The block number this superblock's copy `sequence` goes to: copies alternate, so a torn
    /// write of one copy leaves the other intact.
    pub fn home_block(&self) -> u64 {
        self.sequence % SUPERBLOCK_COPIES as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK_BYTES];
        block[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        put_u32(&mut block, 8, FORMAT_VERSION);
        put_u32(&mut block, 12, BLOCK_BYTES as u32);
        put_u64(&mut block, 16, self.sequence);
        put_u64(&mut block, 24, self.volume_id);
        put_u64(&mut block, 32, self.epoch);
        put_u64(&mut block, 40, self.volume_blocks);
        put_u64(&mut block, 48, self.log_start_block);
        put_u32(&mut block, 56, self.batch_blocks_max);
        let checksum = checksum(&block, self.home_block());
        put_u32(&mut block, CHECKSUM_AT, checksum);
        block
    }

    /// Decodes the copy read from `block_number`; the checksum binds it to that location.
    pub fn decode(block: &[u8], block_number: u64) -> Result<Superblock, FormatError> {
        if block.len() < BLOCK_BYTES || block[0..8] != SUPERBLOCK_MAGIC {
            return Err(FormatError::Magic);
        }
        let stored = get_u32(block, CHECKSUM_AT);
        let computed = checksum(block, block_number);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        let version = get_u32(block, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::Version(version));
        }
        let block_bytes = get_u32(block, 12);
        if block_bytes as usize != BLOCK_BYTES {
            return Err(FormatError::Range { field: "block size", value: block_bytes.into() });
        }
        let superblock = Superblock {
            sequence: get_u64(block, 16),
            volume_id: get_u64(block, 24),
            epoch: get_u64(block, 32),
            volume_blocks: get_u64(block, 40),
            log_start_block: get_u64(block, 48),
            batch_blocks_max: get_u32(block, 56),
        };
        if superblock.home_block() != block_number {
            return Err(FormatError::Foreign);
        }
        if superblock.log_start_block != super::LOG_START_BLOCK
            || superblock.volume_blocks <= superblock.log_start_block
            || superblock.batch_blocks_max == 0
        {
            return Err(FormatError::Range { field: "layout", value: superblock.volume_blocks });
        }
        Ok(superblock)
    }
}

fn checksum(block: &[u8], block_number: u64) -> u32 {
    let partial = crc32c::crc32c(&block[..CHECKSUM_AT]);
    crc32c::crc32c_append(partial, &block_number.to_le_bytes())
}
