//! An index checkpoint: every live key and where its record is, written to one of two slots at
//! the end of the volume. Entries follow one another from the slot's first byte:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | key length |
//! | 2 | 8 | record offset on the volume, in bytes |
//! | 10 | 4 | record length in bytes |
//! | 14 | 4 | the record's batch sequence, low 32 bits |
//! | 18 | key length | key |
//!
//! After the entries (as many as the superblock's key count) comes the expiry section: for each
//! key that has an expiry time, in any order,
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | key length |
//! | 2 | 8 | expiry time, Unix milliseconds |
//! | 10 | key length | key (one of the entries' keys) |
//!
//! A checkpoint written before expiry existed simply ends after its entries.
//!
//! Zero padding fills the last block. The superblock that points at the checkpoint holds its
//! length, key count and a CRC32C over the volume id (8 bytes LE), the checkpoint sequence (8
//! bytes LE) and the entries, so an older checkpoint left in the slot, or a torn one, never
//! verifies.

use super::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use super::FormatError;

pub const CHECKPOINT_ENTRY_HEADER_BYTES: usize = 18;

/// Byte offsets of an entry's fields, from the entry's start (the table above).
mod field {
    pub const KEY_BYTES: usize = 0;
    pub const OFFSET_BYTES: usize = 2;
    pub const RECORD_BYTES: usize = 10;
    pub const SEQUENCE_LOW: usize = 14;
}

/// One checkpoint entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointEntry<'a> {
    pub key: &'a [u8],
    pub offset_bytes: u64,
    pub record_bytes: u32,
    pub sequence_low: u32,
}

pub fn encode_entry(out: &mut Vec<u8>, entry: &CheckpointEntry<'_>) {
    let at = out.len();
    out.resize(at + CHECKPOINT_ENTRY_HEADER_BYTES, 0);
    put_u16(out, at + field::KEY_BYTES, u16::try_from(entry.key.len()).expect("keys are at most 65535 bytes"));
    put_u64(out, at + field::OFFSET_BYTES, entry.offset_bytes);
    put_u32(out, at + field::RECORD_BYTES, entry.record_bytes);
    put_u32(out, at + field::SEQUENCE_LOW, entry.sequence_low);
    out.extend_from_slice(entry.key);
}

pub const CHECKPOINT_EXPIRY_HEADER_BYTES: usize = 10;

/// Appends one item of the expiry section.
pub fn encode_expiry(out: &mut Vec<u8>, key: &[u8], expires_at_ms: u64) {
    let at = out.len();
    out.resize(at + CHECKPOINT_EXPIRY_HEADER_BYTES, 0);
    put_u16(out, at, u16::try_from(key.len()).expect("keys are at most 65535 bytes"));
    put_u64(out, at + 2, expires_at_ms);
    out.extend_from_slice(key);
}

/// Decodes the expiry item at `at`: its key, its time and where the next item starts.
pub fn decode_expiry(items: &[u8], at: usize) -> Result<(&[u8], u64, usize), FormatError> {
    let truncated = FormatError::Range { field: "checkpoint expiry", value: at as u64 };
    if at + CHECKPOINT_EXPIRY_HEADER_BYTES > items.len() {
        return Err(truncated);
    }
    let key_start = at + CHECKPOINT_EXPIRY_HEADER_BYTES;
    let key_end = key_start + get_u16(items, at) as usize;
    if key_end > items.len() {
        return Err(truncated);
    }
    Ok((&items[key_start..key_end], get_u64(items, at + 2), key_end))
}

pub fn checksum(volume_id: u64, sequence: u64, entries: &[u8]) -> u32 {
    let partial = crc32c::crc32c(&volume_id.to_le_bytes());
    let partial = crc32c::crc32c_append(partial, &sequence.to_le_bytes());
    crc32c::crc32c_append(partial, entries)
}

/// Decodes the entry at `at`; returns it and where the next one starts.
pub fn decode_entry(entries: &[u8], at: usize) -> Result<(CheckpointEntry<'_>, usize), FormatError> {
    let truncated = FormatError::Range { field: "checkpoint entry", value: at as u64 };
    if at + CHECKPOINT_ENTRY_HEADER_BYTES > entries.len() {
        return Err(truncated);
    }
    let key_bytes = get_u16(entries, at + field::KEY_BYTES) as usize;
    let key_start = at + CHECKPOINT_ENTRY_HEADER_BYTES;
    if key_start + key_bytes > entries.len() {
        return Err(truncated);
    }
    let entry = CheckpointEntry {
        key: &entries[key_start..key_start + key_bytes],
        offset_bytes: get_u64(entries, at + field::OFFSET_BYTES),
        record_bytes: get_u32(entries, at + field::RECORD_BYTES),
        sequence_low: get_u32(entries, at + field::SEQUENCE_LOW),
    };
    Ok((entry, key_start + key_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_truncation_is_an_error() {
        let mut bytes = Vec::new();
        let first = CheckpointEntry { key: b"alpha", offset_bytes: 8192 + 64, record_bytes: 40, sequence_low: 7 };
        let second = CheckpointEntry { key: b"", offset_bytes: 12288, record_bytes: 24, sequence_low: 9 };
        encode_entry(&mut bytes, &first);
        encode_entry(&mut bytes, &second);
        let (decoded, next) = decode_entry(&bytes, 0).expect("first");
        assert_eq!(decoded, first);
        let (decoded, end) = decode_entry(&bytes, next).expect("second");
        assert_eq!((decoded, end), (second, bytes.len()));
        assert!(decode_entry(&bytes[..bytes.len() - 1], next).is_err());
        assert_ne!(checksum(1, 2, &bytes), checksum(1, 3, &bytes), "bound to the checkpoint sequence");
    }

    #[test]
    fn expiry_items_round_trip_and_truncation_is_an_error() {
        let mut bytes = Vec::new();
        encode_expiry(&mut bytes, b"alpha", 1_800_000_000_123);
        encode_expiry(&mut bytes, b"", 7);
        let (key, time, next) = decode_expiry(&bytes, 0).expect("first");
        assert_eq!((key, time), (&b"alpha"[..], 1_800_000_000_123));
        assert_eq!(decode_expiry(&bytes, next).expect("second"), (&b""[..], 7, bytes.len()));
        assert!(decode_expiry(&bytes[..bytes.len() - 1], 0).is_ok(), "the first item is whole");
        assert!(decode_expiry(&bytes[..next - 1], 0).is_err());
    }
}
