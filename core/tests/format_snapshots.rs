//! Snapshots of encoded on-disk structures: a format change must be deliberate (update the
//! snapshot and `docs/format.md` together).

use quill_core::format::{
    BatchHeader, BatchRecords, RecordHeader, RecordKind, RecordPlacement, Superblock, BATCH_HEADER_BYTES,
};

fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        if chunk.iter().all(|byte| *byte == 0) && row > 0 {
            continue;
        }
        let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
        out.push_str(&format!("{:04x}: {}\n", row * 16, hex.join(" ")));
    }
    out
}

#[test]
fn superblock_encoding() {
    let superblock = Superblock {
        sequence: 3,
        volume_id: 0x0123_4567_89ab_cdef,
        epoch: 2,
        volume_blocks: 1024,
        log_start_block: 2,
        batch_blocks_max: 64,
        checkpoint_slot_blocks: 16,
        tail_block: 40,
        tail_sequence: 17,
        checkpoint: Some(quill_core::format::CheckpointRef {
            slot: 2,
            checksum: 0x89ab_cdef,
            bytes: 5000,
            sequence: 20,
            replay_block: 60,
            keys: 99,
            epoch: 5,
        }),
        keys_hint: 123,
        epoch_first_sequence: 18,
        mirror_slots: quill_core::format::superblock::MIRROR_SLOTS,
        records_padded: true,
    };
    let block = superblock.encode();
    assert_eq!(block.len(), 4096);
    assert_eq!(block[8], 7, "format 7");
    assert_eq!(Superblock::decode(&block, 1), Ok(superblock.clone()));
    assert!(Superblock::decode(&block, 0).is_err(), "the checksum binds a copy to its block");
    insta::assert_snapshot!(hex_dump(&block));
    // A format 6 volume (records back to back) opens as such and is written back as 6: its
    // older readers would take padding for a torn batch.
    let unpadded = Superblock { records_padded: false, ..superblock };
    let block = unpadded.encode();
    assert_eq!(block[8], 6, "format 6");
    assert_eq!(Superblock::decode(&block, 1), Ok(unpadded));
}

/// Format 7: a record that would cross into the next block starts there instead, after zero
/// padding; one whose fixed header would not fit in the block's rest does too.
#[test]
fn padded_batch_encoding() {
    let volume_id = 0x0123_4567_89ab_cdef;
    let block = 7u64;
    let placement = RecordPlacement::SmallRecordsWhole;
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    let sizes = [(3usize, 3990usize), (3, 100), (2, 4000 - 24 - 2)];
    let mut offsets = Vec::new();
    for (index, (key_bytes, value_bytes)) in sizes.into_iter().enumerate() {
        let record_bytes = 24 + key_bytes + value_bytes;
        let padding = placement.padding_before(batch.len(), record_bytes);
        batch.resize(batch.len() + padding, 0);
        offsets.push(batch.len());
        let put = RecordHeader {
            kind: RecordKind::Put,
            key_bytes: key_bytes as u16,
            value_bytes: value_bytes as u32,
            epoch_low: 2,
            sequence: 9,
            expires_at_ms: None,
        };
        let key = vec![b'k' + index as u8; key_bytes];
        let value = vec![b'a' + index as u8; value_bytes];
        let offset_bytes = block * 4096 + batch.len() as u64;
        put.encode_into(&mut batch, volume_id, offset_bytes, &key, &value);
    }
    // 64 + 4017 = 4081: 15 bytes left, too few for a header; 4096 + 127 + 4000 crosses.
    assert_eq!(offsets, [64, 4096, 8192]);
    let payload_bytes = (batch.len() - BATCH_HEADER_BYTES) as u32;
    batch.resize(3 * 4096, 0);
    let mut header = BatchHeader {
        volume_id,
        epoch: 2,
        sequence: 9,
        block,
        block_count: 3,
        payload_bytes,
        record_count: 3,
        payload_checksum: 0,
    };
    header.seal(&mut batch);
    let read: Vec<usize> =
        BatchRecords::new(&batch, &header, true).map(|record| record.expect("a valid record").0).collect();
    assert_eq!(read, offsets, "a reader of format 7 skips the padding");
    let unaware: Vec<_> = BatchRecords::new(&batch, &header, false).collect();
    assert!(unaware.iter().any(Result::is_err), "a reader of format 6 cannot read format 7 padding");
    let mut dirty = batch.clone();
    dirty[4096 - 1] = 1;
    assert!(BatchRecords::new(&dirty, &header, true).any(|record| record.is_err()), "padding is all zero");
    // Rows of one repeated value byte say nothing: leave them out of the snapshot.
    let rows: Vec<&str> = Vec::new();
    let dump = hex_dump(&batch);
    let rows = dump.lines().fold(rows, |mut rows, line| {
        let bytes: Vec<&str> = line.split_whitespace().skip(1).collect();
        if bytes.windows(2).any(|pair| pair[0] != pair[1]) {
            rows.push(line);
        }
        rows
    });
    insta::assert_snapshot!(rows.join("\n"));
}

#[test]
fn batch_with_two_records_encoding() {
    let volume_id = 0x0123_4567_89ab_cdef;
    let block = 7u64;
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    let put = RecordHeader {
        kind: RecordKind::Put,
        key_bytes: 3,
        value_bytes: 5,
        epoch_low: 2,
        sequence: 9,
        expires_at_ms: None,
    };
    put.encode_into(&mut batch, volume_id, block * 4096 + 64, b"key", b"value");
    let offset = block * 4096 + batch.len() as u64;
    let delete = RecordHeader {
        kind: RecordKind::Delete,
        key_bytes: 3,
        value_bytes: 0,
        epoch_low: 2,
        sequence: 9,
        expires_at_ms: None,
    };
    delete.encode_into(&mut batch, volume_id, offset, b"old", b"");
    let payload_bytes = (batch.len() - BATCH_HEADER_BYTES) as u32;
    batch.resize(4096, 0);
    let mut header = BatchHeader {
        volume_id,
        epoch: 2,
        sequence: 9,
        block,
        block_count: 1,
        payload_bytes,
        record_count: 2,
        payload_checksum: 0,
    };
    header.seal(&mut batch);
    let decoded = BatchHeader::decode(&batch, block, volume_id, 64).expect("valid");
    assert_eq!(decoded, header);
    assert!(decoded.verify_payload(&batch).is_ok());
    assert!(BatchHeader::decode(&batch, block + 1, volume_id, 64).is_err(), "a misdirected batch is foreign");
    let record = RecordHeader::decode_verified(&batch[64..], volume_id, block * 4096 + 64).expect("valid record");
    assert_eq!(record, put);
    assert!(RecordHeader::decode_verified(&batch[64..], volume_id, block * 4096 + 4160).is_err());
    insta::assert_snapshot!(hex_dump(&batch));
}

/// A put with an expiry time (format 4): flag bit 0 at byte 5 and the time after the fixed
/// header. A record without one encodes exactly as before (the snapshot above is unchanged).
#[test]
fn expiring_record_encoding() {
    let volume_id = 0x0123_4567_89ab_cdef;
    let offset = 7 * 4096 + 64;
    let put = RecordHeader {
        kind: RecordKind::Put,
        key_bytes: 3,
        value_bytes: 5,
        epoch_low: 2,
        sequence: 9,
        expires_at_ms: Some(1_800_000_000_123),
    };
    let mut bytes = Vec::new();
    put.encode_into(&mut bytes, volume_id, offset, b"key", b"value");
    assert_eq!(bytes.len(), 24 + 8 + 3 + 5);
    assert_eq!((bytes[5], &bytes[32..35], &bytes[35..]), (1, &b"key"[..], &b"value"[..]));
    let decoded = RecordHeader::decode_verified(&bytes, volume_id, offset).expect("valid record");
    assert_eq!(decoded, put);
    assert_eq!((decoded.key_offset(), decoded.value_offset()), (32, 35));
    let mut unknown_flag = bytes.clone();
    unknown_flag[5] = 2;
    assert!(RecordHeader::decode_trusted(&unknown_flag).is_err(), "an unknown flag is refused");
    let mut truncated = bytes.clone();
    truncated.truncate(30);
    assert!(RecordHeader::decode_trusted(&truncated).is_err(), "a cut expiry time is refused");
    insta::assert_snapshot!(hex_dump(&bytes));
}
