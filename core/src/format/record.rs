//! A record: one key's new state, inside a batch.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC32C of: volume id (8 bytes LE), the record's absolute byte offset on the volume (8 bytes LE), then record bytes 4..end |
//! | 4 | 1 | kind: 1 put, 2 delete, 3 clear (FLUSHALL: every earlier key is gone) |
//! | 5 | 1 | flags: bit 0 set: an expiry time follows the fixed header (puts only); other bits zero |
//! | 6 | 2 | key length |
//! | 8 | 4 | value length (0 for delete and clear) |
//! | 12 | 4 | epoch, low 32 bits |
//! | 16 | 8 | batch sequence number |
//! | 24 | 8 | (flag bit 0 only) expiry time, Unix milliseconds: the key is gone from this instant |
//! | 24 or 32 | key length | key |
//! | … | value length | value |
//!
//! A GET reads just the blocks under one record, so the record carries its own checksum; binding
//! it to the volume, its offset and its batch's sequence number turns a misdirected write, a stale
//! record in a reused region or bit rot into a checksum or identity failure, never a wrong value.

use super::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use super::FormatError;

/// The fixed header; a record with an expiry time has `EXPIRY_BYTES` more before its key.
pub const RECORD_HEADER_BYTES: usize = at::KEY;
pub const EXPIRY_BYTES: usize = 8;
/// Flag bit 0: an expiry time follows the fixed header.
const FLAG_EXPIRES: u8 = 1;
pub const KEY_BYTES_MAX: usize = u16::MAX as usize;

/// Byte offsets of the fields (the table in the module documentation and docs/format.md).
mod at {
    pub const CHECKSUM: usize = 0;
    pub const KIND: usize = 4;
    pub const FLAGS: usize = 5;
    pub const KEY_BYTES: usize = 6;
    pub const VALUE_BYTES: usize = 8;
    pub const EPOCH_LOW: usize = 12;
    pub const SEQUENCE: usize = 16;
    pub const KEY: usize = 24;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Put = 1,
    Delete = 2,
    Clear = 3,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::Clear),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub key_bytes: u16,
    pub value_bytes: u32,
    pub epoch_low: u32,
    pub sequence: u64,
    /// When the key expires (Unix milliseconds): puts only.
    pub expires_at_ms: Option<u64>,
}

impl RecordHeader {
    pub fn total_bytes(&self) -> usize {
        self.key_offset() + self.key_bytes as usize + self.value_bytes as usize
    }

    /// Where the key starts: after the fixed header and the expiry time, if there is one.
    pub fn key_offset(&self) -> usize {
        RECORD_HEADER_BYTES + if self.expires_at_ms.is_some() { EXPIRY_BYTES } else { 0 }
    }

    /// Where the value starts.
    pub fn value_offset(&self) -> usize {
        self.key_offset() + self.key_bytes as usize
    }

    /// Appends the encoded record for `key`/`value` at absolute volume offset `offset_bytes`.
    pub fn encode_into(&self, out: &mut Vec<u8>, volume_id: u64, offset_bytes: u64, key: &[u8], value: &[u8]) {
        assert_eq!(key.len(), self.key_bytes as usize);
        assert_eq!(value.len(), self.value_bytes as usize);
        assert!(self.expires_at_ms.is_none() || self.kind == RecordKind::Put, "only puts expire");
        let start = out.len();
        out.resize(start + self.key_offset(), 0);
        let header = &mut out[start..];
        header[at::KIND] = self.kind as u8;
        header[at::FLAGS] = if self.expires_at_ms.is_some() { FLAG_EXPIRES } else { 0 };
        put_u16(header, at::KEY_BYTES, self.key_bytes);
        put_u32(header, at::VALUE_BYTES, self.value_bytes);
        put_u32(header, at::EPOCH_LOW, self.epoch_low);
        put_u64(header, at::SEQUENCE, self.sequence);
        if let Some(expires_at_ms) = self.expires_at_ms {
            put_u64(header, at::KEY, expires_at_ms);
        }
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        let checksum = checksum(volume_id, offset_bytes, &out[start + at::KIND..]);
        put_u32(&mut out[start..], at::CHECKSUM, checksum);
    }

    /// Decodes the header at the start of `bytes` without checking the checksum; recovery uses
    /// it only inside a batch whose payload checksum already passed.
    pub fn decode_trusted(bytes: &[u8]) -> Result<RecordHeader, FormatError> {
        if bytes.len() < RECORD_HEADER_BYTES {
            return Err(FormatError::Range { field: "record length", value: bytes.len() as u64 });
        }
        let kind = RecordKind::from_byte(bytes[at::KIND])
            .ok_or(FormatError::Range { field: "record kind", value: bytes[at::KIND].into() })?;
        let flags = bytes[at::FLAGS];
        let expires = flags == FLAG_EXPIRES && kind == RecordKind::Put;
        if flags != 0 && !expires {
            return Err(FormatError::Range { field: "record flags", value: flags.into() });
        }
        if expires && bytes.len() < RECORD_HEADER_BYTES + EXPIRY_BYTES {
            return Err(FormatError::Range { field: "record length", value: bytes.len() as u64 });
        }
        let header = RecordHeader {
            kind,
            key_bytes: get_u16(bytes, at::KEY_BYTES),
            value_bytes: get_u32(bytes, at::VALUE_BYTES),
            epoch_low: get_u32(bytes, at::EPOCH_LOW),
            sequence: get_u64(bytes, at::SEQUENCE),
            expires_at_ms: expires.then(|| get_u64(bytes, at::KEY)),
        };
        if header.total_bytes() > bytes.len() {
            return Err(FormatError::Range { field: "record length", value: header.total_bytes() as u64 });
        }
        Ok(header)
    }

    /// Decodes and verifies a record read back on its own (a GET): the checksum is checked
    /// before any length is trusted beyond the bytes at hand.
    pub fn decode_verified(bytes: &[u8], volume_id: u64, offset_bytes: u64) -> Result<RecordHeader, FormatError> {
        let header = RecordHeader::decode_trusted(bytes)?;
        let stored = get_u32(bytes, at::CHECKSUM);
        let computed = checksum(volume_id, offset_bytes, &bytes[at::KIND..header.total_bytes()]);
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        Ok(header)
    }
}

fn checksum(volume_id: u64, offset_bytes: u64, rest: &[u8]) -> u32 {
    let mut context = [0u8; 16];
    context[0..8].copy_from_slice(&volume_id.to_le_bytes());
    context[8..16].copy_from_slice(&offset_bytes.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&context), rest)
}
