//! WATCH: the keys each client watches, and the clients whose watched keys changed since. A
//! key changes when a write to it is applied to the keyspace (a client's command, never
//! compaction); FLUSHALL changes the watched keys that exist. EXEC runs only if its client is
//! not dirty, and every EXEC, DISCARD (as UNWATCH) and disconnect clears the client's watches.
//!
//! Expiry, as in Redis 7.0: a watched key alive at WATCH that has expired by EXEC makes the
//! client dirty, deleted yet or not; a key already expired at WATCH does not (its deletion by
//! active expiry leaves the client clean; a client's write to it still makes it dirty).

use std::collections::{BTreeMap, BTreeSet};

use super::ClientId;

/// Keys one client may watch at once.
pub const WATCHED_KEYS_MAX: usize = 4096;

#[derive(Default)]
pub struct Watches {
    by_key: BTreeMap<Box<[u8]>, BTreeSet<ClientId>>,
    /// Each watched key, and whether it had expired (not deleted yet) when watched.
    by_client: BTreeMap<ClientId, BTreeMap<Box<[u8]>, bool>>,
    dirty: BTreeSet<ClientId>,
}

impl Watches {
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds `keys` to the client's watches; `false` (and nothing added) beyond the limit.
    /// `expired` says whether a key has expired but is not deleted yet.
    pub fn watch(&mut self, client: ClientId, keys: &[Vec<u8>], expired: impl Fn(&[u8]) -> bool) -> bool {
        let watched = self.by_client.entry(client).or_default();
        let new = keys.iter().filter(|key| !watched.contains_key(key.as_slice())).count();
        if watched.len() + new > WATCHED_KEYS_MAX {
            return false;
        }
        for key in keys {
            // Watched again: the first WATCH's view of it stands, as in Redis.
            watched.entry(key.as_slice().into()).or_insert_with(|| expired(key));
            self.by_key.entry(key.as_slice().into()).or_default().insert(client);
        }
        true
    }

    /// Active expiry deleted `key`: its watchers are dirty, except those that watched it
    /// already expired.
    pub fn touch_expired(&mut self, key: &[u8]) {
        let Some(clients) = self.by_key.get(key) else { return };
        for client in clients {
            if self.by_client.get(client).and_then(|keys| keys.get(key)) == Some(&false) {
                self.dirty.insert(*client);
            }
        }
    }

    /// At EXEC: the client is dirty if a key it watched alive has expired since (`expired`
    /// says whether a key has expired but is not deleted yet).
    pub fn check_expired(&mut self, client: ClientId, expired: impl Fn(&[u8]) -> bool) {
        let Some(keys) = self.by_client.get(&client) else { return };
        if keys.iter().any(|(key, expired_at_watch)| !expired_at_watch && expired(key)) {
            self.dirty.insert(client);
        }
    }

    /// A write changed `key`: every client watching it is dirty.
    pub fn touch(&mut self, key: &[u8]) {
        if let Some(clients) = self.by_key.get(key) {
            self.dirty.extend(clients.iter().copied());
        }
    }

    /// Every watched key, for FLUSHALL to touch those that exist.
    pub fn keys(&self) -> Vec<Box<[u8]>> {
        self.by_key.keys().cloned().collect()
    }

    pub fn is_dirty(&self, client: ClientId) -> bool {
        self.dirty.contains(&client)
    }

    /// Forgets the client's watches (EXEC, UNWATCH, DISCARD, disconnect).
    pub fn unwatch(&mut self, client: ClientId) {
        self.dirty.remove(&client);
        for key in self.by_client.remove(&client).unwrap_or_default().into_keys() {
            if let Some(clients) = self.by_key.get_mut(&key) {
                clients.remove(&client);
                if clients.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        debug_assert!(self.by_key.values().all(|clients| !clients.contains(&client)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key watched alive, then watched again once expired, keeps the first view: its expiry
    /// since the first WATCH still aborts EXEC, as in Redis (found reading the change).
    #[test]
    fn watching_a_key_again_keeps_the_first_view() {
        let mut watches = Watches::default();
        assert!(watches.watch(1, &[b"k".to_vec()], |_| false));
        assert!(watches.watch(1, &[b"k".to_vec()], |_| true));
        watches.check_expired(1, |_| true);
        assert!(watches.is_dirty(1));
        let mut expired_first = Watches::default();
        assert!(expired_first.watch(2, &[b"k".to_vec()], |_| true));
        expired_first.check_expired(2, |_| true);
        assert!(!expired_first.is_dirty(2), "already expired when watched: no abort");
    }
}
