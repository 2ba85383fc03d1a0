//! The event trace: every request and reply, every I/O issued, completed or faulted, every crash
//! and recovery. Its hash (FNV-1a over event words, bulk bytes digested by CRC32C) is the
//! determinism self-check: the same seed must give the same hash. The text is kept only when
//! asked for.

use std::fmt::Write;

/// What a trace event is: its first word. The numbers are part of every trace hash, so an
/// existing event keeps its number and a new one takes the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum TraceEvent {
    Send = 1,
    Reply = 2,
    IoIssued = 3,
    IoDone = 4,
    Crash = 5,
    /// Then 0: refused, 1: recovered, 2: failed on I/O, 3: a read-only open needs a repair.
    Recovery = 6,
    /// Then a block (bit rot), or 8 and two offsets (a misdirected write).
    Fault = 7,
    Deliver = 9,
    Disconnect = 10,
    Reconnect = 11,
    CrashImage = 12,
    PublishedRead = 13,
}

impl TraceEvent {
    pub const fn word(self) -> u64 {
        self as u64
    }
}

pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
    pub events: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME))
}

/// A 64-bit digest of bulk bytes (values, write buffers): one hardware CRC32C pass over all of
/// them, and their first and last eight bytes and length folded into the high half. A second
/// full CRC pass (with another seed) cost 3 % of a swarm for little: values that share a CRC and
/// both ends are not what the workload makes.
pub fn digest(bytes: &[u8]) -> u64 {
    let low = crc32c::crc32c(bytes);
    let word = |slice: &[u8]| slice.iter().fold(0u64, |word, byte| word << 8 | u64::from(*byte));
    let head = word(&bytes[..bytes.len().min(8)]);
    let tail = word(&bytes[bytes.len().saturating_sub(8)..]);
    let high =
        (head.rotate_left(13) ^ tail.rotate_left(29) ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 32;
    high << 32 | u64::from(low)
}

/// Bytes of a write buffer that enter the trace. Every block the engine writes starts with a
/// header carrying a checksum of what follows (a batch's payload, a checkpoint's entries, a
/// superblock's fields), so the head of a buffer stands for all of it; digesting whole batches
/// took 8 % of a swarm's time.
const WRITE_DIGEST_BYTES: usize = 256;

/// The trace's digest of a write buffer: its head and its length (see [`WRITE_DIGEST_BYTES`]).
pub fn digest_write(data: &[u8]) -> u64 {
    digest(&data[..data.len().min(WRITE_DIGEST_BYTES)]) ^ (data.len() as u64).rotate_left(41)
}

impl Trace {
    pub fn new(keep_lines: bool) -> Trace {
        Trace { hash: FNV_OFFSET, lines: keep_lines.then(Vec::new), events: 0 }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }

    pub fn keeps_lines(&self) -> bool {
        self.lines.is_some()
    }

    /// Records an event: `words` feed the hash; `describe` renders the line only when kept.
    pub fn record(&mut self, tick: u64, words: &[u64], describe: impl FnOnce(&mut String)) {
        self.events += 1;
        self.hash = fnv(self.hash, &tick.to_le_bytes());
        for word in words {
            self.hash = fnv(self.hash, &word.to_le_bytes());
        }
        if let Some(lines) = &mut self.lines {
            let mut line = String::new();
            let _ = write!(line, "{tick:>8} ");
            describe(&mut line);
            lines.push(line);
        }
    }
}
