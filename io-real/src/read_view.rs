//! The published copy of the engine's value cache, which `Db::get` reads on the caller's
//! thread: a cached GET costs a hash lookup under a shard's read lock instead of a round trip
//! to the engine thread.
//!
//! Why it is linearizable: the engine reports every change of its cache
//! (`Config::publish_cache`), and the cache holds only durable values. The engine thread applies
//! the changes here before it hands out the replies that follow them, so a value is visible no
//! later than its write's acknowledgement, and a DEL (or an overwrite whose value is not cached)
//! removes the old value before it is acknowledged. A write not yet durable never shows. A miss
//! goes to the engine as before.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use quill_core::CacheChange;

/// Shards of the map, so 32 reader threads rarely share a lock's cache line.
const SHARDS: usize = 64;

type Shard = RwLock<HashMap<Box<[u8]>, Arc<[u8]>>>;

pub struct ReadView {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl ReadView {
    pub fn new() -> ReadView {
        ReadView { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, key: &[u8]) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) % SHARDS as u64) as usize]
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        // A poisoned lock only means a panic elsewhere mid-update of another key; the map is
        // still a set of whole entries.
        let shard = self.shard(key).read().unwrap_or_else(|poison| poison.into_inner());
        shard.get(key).cloned()
    }

    /// Applies one change, in the engine's order (on the engine thread, before the replies).
    pub fn apply(&self, change: CacheChange) {
        match change {
            CacheChange::Put(key, value) => {
                self.shard(&key).write().unwrap_or_else(|poison| poison.into_inner()).insert(key, value);
            }
            CacheChange::Remove(key) => {
                self.shard(&key).write().unwrap_or_else(|poison| poison.into_inner()).remove(&key);
            }
            CacheChange::Clear => {
                for shard in self.shards.iter() {
                    shard.write().unwrap_or_else(|poison| poison.into_inner()).clear();
                }
            }
        }
    }
}

impl Default for ReadView {
    fn default() -> ReadView {
        ReadView::new()
    }
}
