//! Redis Cluster's hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (the
//! bytes between the first `{` and the next `}`, when not empty), modulo 16,384. A replicated
//! QuillKV is one shard: its leader owns every slot, but a MOVED reply must name the key's slot
//! for cluster clients to accept it.

pub const SLOTS: u16 = 16_384;

pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else { return key };
    match key[open + 1..].iter().position(|&byte| byte == b'}') {
        Some(length) if length > 0 => &key[open + 1..open + 1 + length],
        _ => key,
    }
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), bit by bit: a MOVED reply is rare.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_specification() {
        // The specification's check value, and slots `redis-cli cluster keyslot` gives.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
    }
}
