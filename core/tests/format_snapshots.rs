//! Snapshots of encoded on-disk structures: a format change must be deliberate (update the
//! snapshot and `docs/format.md` together).

use quill_core::format::{BatchHeader, RecordHeader, RecordKind, Superblock, BATCH_HEADER_BYTES};

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
    };
    let block = superblock.encode();
    assert_eq!(block.len(), 4096);
    assert_eq!(Superblock::decode(&block, 1), Ok(superblock.clone()));
    assert!(Superblock::decode(&block, 0).is_err(), "the checksum binds a copy to its block");
    insta::assert_snapshot!(hex_dump(&block));
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
