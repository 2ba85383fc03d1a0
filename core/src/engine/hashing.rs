//! Hash maps for the index and the cache, keyed by a seed the driver passes in.
//!
//! The determinism rule forbids maps whose iteration order depends on randomness the engine
//! draws itself. Here the seed is an input (`Config::hash_seed`): the simulator derives it from
//! its seed, a real driver draws it from the OS so that clients cannot aim keys at one bucket.
//! Same seed and same operations give the same iteration order.

use std::hash::{BuildHasher, Hasher};

/// A fast keyed hasher for byte-string keys (multiply-rotate per 8-byte word, then a final mix).
/// Not a cryptographic MAC: the seed makes collisions expensive to aim, not impossible.
#[derive(Clone)]
pub struct KeyHasher {
    state: u64,
}

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    fn finish(&self) -> u64 {
        let mut hash = self.state;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash
    }
}

impl KeyHasher {
    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(MULTIPLIER).rotate_left(29);
    }
}

/// Builds [`KeyHasher`]s from the engine's seed.
#[derive(Clone, Default)]
pub struct SeededState {
    pub seed: u64,
}

impl BuildHasher for SeededState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.seed ^ 0x243f_6a88_85a3_08d3 }
    }
}

/// The one place the engine names `HashMap`: always with the seeded state above.
#[allow(clippy::disallowed_types)]
pub type KeyMap<V> = std::collections::HashMap<std::sync::Arc<[u8]>, V, SeededState>;

pub fn key_map<V>(seed: u64) -> KeyMap<V> {
    KeyMap::with_hasher(SeededState { seed })
}
