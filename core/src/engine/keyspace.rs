//! The keyspace: the durable index (key → location on disk) under an overlay of writes that are
//! not durable yet, and the cache of durable values. A lookup says what it saw and which batch
//! must be durable before a reply may reveal it. The log hands over each durable batch's
//! effects (`apply_durable`); nothing else changes the index, except recovery rebuilding it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cache::ValueCache;
use super::config::Config;
pub use super::index::{CompactIndex, Location};
use super::EngineStats;

/// One record's effect on the keyspace, applied when its batch is durable.
pub enum DurableEffect {
    Put {
        key: Box<[u8]>,
        location: Location,
        value: Arc<[u8]>,
    },
    Delete {
        key: Box<[u8]>,
    },
    Clear,
    /// Compaction copied the record at `from` to `to`: repoint the key only if nothing newer
    /// replaced it meanwhile.
    Move {
        key: Box<[u8]>,
        from: Location,
        to: Location,
    },
}

/// A write not yet durable: the value it set (`None`: deleted) and its batch.
#[derive(Clone, Debug)]
pub struct PendingWrite {
    pub sequence: u64,
    pub value: Option<Arc<[u8]>>,
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Not present; the absence was made by batch `sequence` (0: durable already).
    Absent { sequence: u64 },
    /// A value in memory, written by batch `sequence` (not durable yet).
    Pending { value: Arc<[u8]>, sequence: u64 },
    /// A durable value on disk.
    Durable(Location),
}

impl Lookup {
    pub fn exists(&self) -> bool {
        !matches!(self, Lookup::Absent { .. })
    }

    /// The batch that must be durable before a reply reveals this lookup.
    pub fn sequence(&self) -> u64 {
        match self {
            Lookup::Absent { sequence } | Lookup::Pending { sequence, .. } => *sequence,
            Lookup::Durable(_) => 0,
        }
    }
}

pub struct Keyspace {
    pub index: CompactIndex,
    /// Durable values, by key: what the index points at, kept in memory.
    pub cache: ValueCache,
    pub overlay: BTreeMap<Box<[u8]>, PendingWrite>,
    /// A FLUSHALL not yet durable: keys missing from the overlay are absent since this batch.
    pub cleared_at: Option<u64>,
    /// Keys in the logical (newest) state, for DBSIZE.
    pub live_keys: u64,
    /// RANDOMKEY's draws so far: its positions come from the hash seed and this count, so the
    /// engine stays deterministic.
    random_key_draws: u64,
    hash_seed: u64,
}

impl Keyspace {
    pub fn new(config: &Config) -> Keyspace {
        Keyspace {
            index: CompactIndex::new(config.hash_seed),
            cache: ValueCache::new(config.cache_bytes_max, config.hash_seed, config.publish_cache),
            overlay: BTreeMap::new(),
            cleared_at: None,
            live_keys: 0,
            random_key_draws: 0,
            hash_seed: config.hash_seed,
        }
    }

    /// The next RANDOMKEY scan position (SplitMix64 over the seed and the draw count).
    pub fn next_random_position(&mut self) -> u64 {
        self.random_key_draws += 1;
        let mut mixed = self.hash_seed.wrapping_add(self.random_key_draws.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (mixed ^ (mixed >> 31)) % super::index::SCAN_END
    }

    pub fn lookup(&self, key: &[u8]) -> Lookup {
        if let Some(pending) = self.overlay.get(key) {
            return match &pending.value {
                Some(value) => Lookup::Pending { value: value.clone(), sequence: pending.sequence },
                None => Lookup::Absent { sequence: pending.sequence },
            };
        }
        if let Some(sequence) = self.cleared_at {
            return Lookup::Absent { sequence };
        }
        match self.index.get(key) {
            Some(location) => Lookup::Durable(location),
            None => Lookup::Absent { sequence: 0 },
        }
    }

    /// Records a write in batch `sequence` in the logical state.
    pub fn write(&mut self, key: &[u8], value: Option<Arc<[u8]>>, sequence: u64) {
        let existed = self.lookup(key).exists();
        match (existed, value.is_some()) {
            (false, true) => self.live_keys += 1,
            (true, false) => self.live_keys -= 1,
            _ => {}
        }
        self.overlay.insert(key.into(), PendingWrite { sequence, value });
    }

    pub fn clear(&mut self, sequence: u64) {
        self.overlay.clear();
        self.cleared_at = Some(sequence);
        self.live_keys = 0;
    }

    /// Forgets every write that is not durable (after a failed write or sync) and recounts.
    pub fn discard_overlay(&mut self) {
        self.overlay.clear();
        self.cleared_at = None;
        self.live_keys = self.index.len() as u64;
    }

    /// Drops overlay entries made durable by batch `sequence`.
    pub fn retire(&mut self, sequence: u64) {
        self.overlay.retain(|_, pending| pending.sequence > sequence);
        if self.cleared_at.is_some_and(|cleared| cleared <= sequence) {
            self.cleared_at = None;
        }
    }

    /// Batch `sequence` is durable: the index and the cache take its effects, and the overlay
    /// drops what the batch made durable.
    pub fn apply_durable(&mut self, sequence: u64, effects: Vec<DurableEffect>, stats: &mut EngineStats) {
        stats.records_committed += effects.len() as u64;
        for effect in effects {
            match effect {
                DurableEffect::Put { key, location, value } => {
                    self.cache.insert(&key, value);
                    let before = self.index.len();
                    self.index.insert(&key, location);
                    stats.records_replaced += u64::from(self.index.len() == before);
                    debug_assert_eq!(self.index.get(&key), Some(location), "a durable put is in the index");
                }
                DurableEffect::Delete { key } => {
                    self.cache.remove(&key);
                    self.index.remove(&key);
                    stats.records_replaced += 1;
                }
                DurableEffect::Clear => {
                    self.cache.clear();
                    stats.records_replaced += self.index.len() as u64 + 1;
                    self.index.clear();
                }
                DurableEffect::Move { key, from, to } => {
                    let moved = self.index.replace_if(&key, from, to);
                    stats.records_moved += u64::from(moved);
                }
            }
        }
        self.retire(sequence);
        stats.batches_committed += 1;
    }
}
