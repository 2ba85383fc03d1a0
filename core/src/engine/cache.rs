//! The bounded value cache, by bytes (key plus value), with CLOCK eviction: a hit is one hash
//! lookup that sets a flag; eviction takes keys from a ring in insertion order and gives each
//! recently used one a second chance.

use std::collections::VecDeque;
use std::sync::Arc;

use super::hashing::{key_map, KeyMap};
use crate::engine::keyspace::SharedKey;

struct Entry {
    value: Arc<[u8]>,
    referenced: bool,
    /// Which insertion of this key the ring's copy stands for (older copies are skipped).
    generation: u64,
}

/// One change of the cache's contents, for a driver's copy of it (see `Config::publish_cache`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheChange {
    /// `key` now holds this durable value in the cache.
    Put(Box<[u8]>, Arc<[u8]>),
    /// `key` left the cache (overwritten by a value not cached, deleted, or evicted).
    Remove(Box<[u8]>),
    /// Every key left the cache (FLUSHALL).
    Clear,
}

pub struct ValueCache {
    entries: KeyMap<Entry>,
    /// With publishing on: changes not yet handed to the driver.
    journal: Option<VecDeque<CacheChange>>,
    ring: VecDeque<(SharedKey, u64)>,
    generation_next: u64,
    bytes: usize,
    bytes_max: usize,
}

impl ValueCache {
    pub fn new(bytes_max: usize, hash_seed: u64, publish: bool) -> ValueCache {
        ValueCache {
            entries: key_map(hash_seed),
            journal: publish.then(VecDeque::new),
            ring: VecDeque::new(),
            generation_next: 0,
            bytes: 0,
            bytes_max,
        }
    }

    /// Whether a driver keeps a copy of the cache (and reads from it without the engine).
    pub fn publishes(&self) -> bool {
        self.journal.is_some()
    }

    /// The oldest change not yet handed out (only with publishing on).
    pub fn poll_change(&mut self) -> Option<CacheChange> {
        self.journal.as_mut()?.pop_front()
    }

    fn publish(&mut self, change: impl FnOnce() -> CacheChange) {
        if let Some(journal) = &mut self.journal {
            journal.push_back(change());
        }
    }

    pub fn get(&mut self, key: &[u8]) -> Option<Arc<[u8]>> {
        let entry = self.entries.get_mut(key)?;
        entry.referenced = true;
        Some(entry.value.clone())
    }

    /// Caches `value` under `key` (shared with the write that made it durable: no copy). A key
    /// already cached takes the new value in place, keeps its place in the ring and counts as
    /// recently used (one hash lookup; no ring copy to compact away later).
    pub fn insert(&mut self, key: SharedKey, value: Arc<[u8]>) {
        let cost = key.len() + value.len();
        if cost > self.bytes_max {
            self.remove(&key);
            return;
        }
        self.publish(|| CacheChange::Put(key.as_ref().into(), Arc::clone(&value)));
        if let Some(entry) = self.entries.get_mut(&*key) {
            self.bytes = self.bytes - entry.value.len() + value.len();
            entry.value = value;
            entry.referenced = true;
        } else {
            let generation = self.generation_next;
            self.generation_next += 1;
            self.entries.insert(SharedKey::clone(&key), Entry { value, referenced: false, generation });
            self.ring.push_back((key, generation));
            self.bytes += cost;
            self.compact_ring();
        }
        // Each step evicts, gives a second chance or drops a stale ring copy; the ring holds at
        // most two copies per entry (see `compact_ring`), so this bound is never the limit. The
        // entry just written goes last: every other is evicted before it could be.
        let steps_max = 2 * self.ring.len() + 2;
        for _ in 0..steps_max {
            if self.bytes <= self.bytes_max {
                break;
            }
            self.sweep_one();
        }
        debug_assert!(self.bytes <= self.bytes_max);
    }

    /// Takes the oldest ring entry: evicts it, or clears its flag and puts it back.
    fn sweep_one(&mut self) {
        let Some((key, generation)) = self.ring.pop_front() else { return };
        let Some(entry) = self.entries.get_mut(&key) else { return };
        if entry.generation != generation {
            return;
        }
        if entry.referenced {
            entry.referenced = false;
            self.ring.push_back((key, generation));
        } else if let Some(evicted) = self.entries.remove(&key) {
            self.bytes -= key.len() + evicted.value.len();
            self.publish(|| CacheChange::Remove(key.as_ref().into()));
        }
    }

    /// Drops stale ring copies (removed or re-inserted keys) once they outnumber live entries.
    fn compact_ring(&mut self) {
        if self.ring.len() <= 2 * self.entries.len() + 16 {
            return;
        }
        let entries = &self.entries;
        self.ring.retain(|(key, generation)| entries.get(key).is_some_and(|entry| entry.generation == *generation));
    }

    pub fn remove(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= key.len() + entry.value.len();
            self.publish(|| CacheChange::Remove(key.into()));
        }
    }

    pub fn clear(&mut self) {
        self.publish(|| CacheChange::Clear);
        self.entries.clear();
        self.ring.clear();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::{SharedKey, ValueCache};
    use std::sync::Arc;

    #[test]
    fn stays_within_its_budget_and_keeps_recently_used_values() {
        let mut cache = ValueCache::new(100, 7, false);
        for index in 0..10u8 {
            cache.insert(SharedKey::from(&[index][..]), Arc::from(vec![index; 9]));
        }
        assert_eq!(cache.bytes(), 100);
        assert!(cache.get(&[3]).is_some());
        cache.insert(SharedKey::from(&[42][..]), Arc::from(vec![0; 9]));
        assert!(cache.bytes() <= 100);
        assert!(cache.get(&[3]).is_some(), "a referenced entry gets a second chance");
        assert!(cache.get(&[42]).is_some());
        cache.insert(SharedKey::from(&[7][..]), Arc::from(vec![0; 200]));
        assert!(cache.get(&[7]).is_none(), "larger than the whole budget: not cached");
        cache.remove(&[3]);
        assert!(cache.get(&[3]).is_none());
        for round in 0..1000u32 {
            cache.insert(SharedKey::from(&round.to_le_bytes()[..]), Arc::from(vec![0; 5]));
            cache.remove(&round.to_le_bytes());
        }
        assert!(cache.ring.len() <= 2 * cache.entries.len() + 17, "stale ring copies are dropped");
    }
}
