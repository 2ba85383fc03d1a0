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

/// A key held in several places at once (a pending write, its batch's effects, the cache):
/// allocated once per write, shared by reference count.
pub type SharedKey = Arc<[u8]>;

/// One record's effect on the keyspace, applied when its batch is durable.
pub enum DurableEffect {
    Put {
        key: SharedKey,
        location: Location,
        value: Arc<[u8]>,
        expires_at_ms: Option<u64>,
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

/// A write not yet durable: the value it set (`None`: deleted), when that expires, and its batch.
#[derive(Clone, Debug)]
pub struct PendingWrite {
    pub sequence: u64,
    pub value: Option<Arc<[u8]>>,
    pub expires_at_ms: Option<u64>,
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
    pub overlay: BTreeMap<SharedKey, PendingWrite>,
    /// A FLUSHALL not yet durable: keys missing from the overlay are absent since this batch.
    pub cleared_at: Option<u64>,
    /// Keys in the logical (newest) state, for DBSIZE.
    pub live_keys: u64,
    /// RANDOMKEY's draws so far: its positions come from the hash seed and this count, so the
    /// engine stays deterministic.
    random_key_draws: u64,
    hash_seed: u64,
    /// Wall-clock time, Unix milliseconds (never decreasing): a key whose expiry time is at or
    /// before it is gone, whether or not its deletion has been written yet.
    pub now_unix_ms: u64,
    /// Overlay entries with an expiry time: with none there and none in the index, no key can
    /// have expired, and commands skip looking.
    overlay_expiring: usize,
}

impl Keyspace {
    pub fn new(config: &Config) -> Keyspace {
        Keyspace {
            index: CompactIndex::new(config.hash_seed, config.index_partitions),
            cache: ValueCache::new(config.cache_bytes_max, config.hash_seed, config.publish_cache),
            overlay: BTreeMap::new(),
            cleared_at: None,
            live_keys: 0,
            random_key_draws: 0,
            hash_seed: config.hash_seed,
            now_unix_ms: 0,
            overlay_expiring: 0,
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

    /// What a command sees of `key` now: a key past its expiry time is absent (since the batch
    /// that wrote it, which a reply revealing the absence must wait for).
    pub fn lookup(&self, key: &[u8]) -> Lookup {
        let lookup = self.lookup_raw(key);
        // No key has a time (the common case): one lookup, not two.
        if lookup.exists() && self.may_expire() && self.is_past(self.expiry_of(key)) {
            return Lookup::Absent { sequence: lookup.sequence() };
        }
        lookup
    }

    /// Whether an expiry time has passed. As in Redis, a key is still there during the
    /// millisecond of its expiry time, and gone after it.
    pub fn is_past(&self, expires_at_ms: Option<u64>) -> bool {
        expires_at_ms.is_some_and(|time| time < self.now_unix_ms)
    }

    /// Whether a value with this expiry time may be cached. A published cache is read without
    /// the engine (`Db::get` on the caller's thread), which knows no time: a value that will
    /// expire stays out of it, and its reads go to the engine.
    pub fn cacheable(&self, expires_at_ms: Option<u64>) -> bool {
        expires_at_ms.is_none() || !self.cache.publishes()
    }

    /// Whether any key, durable or pending, has an expiry time.
    pub fn may_expire(&self) -> bool {
        self.overlay_expiring > 0 || self.index.expiries.len() > 0
    }

    /// The key's record is there but its expiry time has passed (its deletion is not written).
    pub fn is_expired(&self, key: &[u8]) -> bool {
        self.lookup_raw(key).exists() && self.is_past(self.expiry_of(key))
    }

    /// The key's expiry time in the newest state (expired or not), if it exists and has one.
    pub fn expiry_of(&self, key: &[u8]) -> Option<u64> {
        if let Some(pending) = self.overlay.get(key) {
            return pending.expires_at_ms;
        }
        if self.cleared_at.is_some() {
            return None;
        }
        self.index.expiry(key)
    }

    /// The key's record as the log has it, expired or not.
    pub fn lookup_raw(&self, key: &[u8]) -> Lookup {
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

    /// Records a write in batch `sequence` in the logical state. Keys count until their
    /// deletion is written, expired or not (DBSIZE counts them, as Redis's does).
    pub fn write(&mut self, key: SharedKey, value: Option<Arc<[u8]>>, expires_at_ms: Option<u64>, sequence: u64) {
        debug_assert!(value.is_some() || expires_at_ms.is_none(), "only a value expires");
        let existed = self.lookup_raw(&key).exists();
        match (existed, value.is_some()) {
            (false, true) => self.live_keys += 1,
            (true, false) => self.live_keys -= 1,
            _ => {}
        }
        let replaced = self.overlay.insert(key, PendingWrite { sequence, value, expires_at_ms });
        self.overlay_expiring += usize::from(expires_at_ms.is_some());
        self.overlay_expiring -= usize::from(replaced.is_some_and(|old| old.expires_at_ms.is_some()));
    }

    pub fn clear(&mut self, sequence: u64) {
        self.overlay.clear();
        self.overlay_expiring = 0;
        self.cleared_at = Some(sequence);
        self.live_keys = 0;
    }

    /// Forgets every write that is not durable (after a failed write or sync) and recounts.
    pub fn discard_overlay(&mut self) {
        self.overlay.clear();
        self.overlay_expiring = 0;
        self.cleared_at = None;
        self.live_keys = self.index.len() as u64;
    }

    /// Drops overlay entries made durable by batch `sequence`.
    pub fn retire(&mut self, sequence: u64) {
        let mut retired_expiring = 0;
        self.overlay.retain(|_, pending| {
            let keep = pending.sequence > sequence;
            retired_expiring += usize::from(!keep && pending.expires_at_ms.is_some());
            keep
        });
        self.overlay_expiring -= retired_expiring;
        debug_assert_eq!(
            self.overlay_expiring,
            self.overlay.values().filter(|pending| pending.expires_at_ms.is_some()).count()
        );
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
                DurableEffect::Put { key, location, value, expires_at_ms } => {
                    if self.cacheable(expires_at_ms) {
                        self.cache.insert(SharedKey::clone(&key), value);
                    } else {
                        self.cache.remove(&key);
                    }
                    let before = self.index.len();
                    self.index.insert(&key, location, expires_at_ms);
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
