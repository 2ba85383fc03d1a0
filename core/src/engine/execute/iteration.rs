//! SCAN, KEYS and RANDOMKEY: reads of the key set itself. Keys come from the index in scan
//! order (32-bit hash positions; see `CompactIndex::scan`), each judged through the keyspace's
//! lookup so that writes not yet durable count as they will, plus the overlay's new keys in the
//! same range. Like every reply, these wait for the batches of what they reveal.

use super::super::index::SCAN_END;
use super::super::Engine;
use crate::command::pattern::glob_match;
use crate::command::Reply;

/// Slots one SCAN step reads at most, whatever its COUNT: a bound on one turn's work.
const SCAN_SLOTS_MAX: u64 = 1 << 16;
/// Index steps RANDOMKEY takes looking for a key that still exists, at most.
const RANDOM_KEY_STEP_SLOTS: usize = 64;

/// Which keys a SCAN or KEYS keeps.
struct KeyFilter<'a> {
    /// `None`: every key (also for the pattern `*`).
    pattern: Option<&'a [u8]>,
    /// A TYPE other than `string` keeps nothing: every value here is a string.
    keeps_nothing: bool,
}

impl KeyFilter<'_> {
    fn keeps(&self, key: &[u8]) -> bool {
        !self.keeps_nothing && self.pattern.is_none_or(|pattern| glob_match(pattern, key))
    }
}

impl Engine {
    /// One SCAN step: `[next cursor, [keys]]` and the batch the reply must wait for.
    pub(super) fn scan_step(
        &self,
        cursor: u64,
        count: u64,
        pattern: Option<&[u8]>,
        only_type: Option<&[u8]>,
    ) -> (Reply, u64) {
        let filter = KeyFilter {
            pattern: pattern.filter(|pattern| *pattern != b"*"),
            keeps_nothing: only_type.is_some_and(|kind| !kind.eq_ignore_ascii_case(b"string")),
        };
        if cursor >= SCAN_END {
            return (scan_reply(0, Vec::new()), 0);
        }
        let slots_wanted = count.clamp(1, SCAN_SLOTS_MAX) as usize;
        let (keys, next, wait) = self.keys_in_range(cursor, slots_wanted, &filter);
        (scan_reply(if next == SCAN_END { 0 } else { next }, keys), wait)
    }

    /// KEYS: the whole index in one step.
    pub(super) fn all_keys(&self, pattern: &[u8]) -> (Reply, u64) {
        let filter = KeyFilter { pattern: Some(pattern).filter(|pattern| *pattern != b"*"), keeps_nothing: false };
        let (keys, next, wait) = self.keys_in_range(0, usize::MAX, &filter);
        debug_assert_eq!(next, SCAN_END, "one step covers the whole table");
        (Reply::Array(Some(keys.into_iter().map(|key| Reply::Bulk(Some(key))).collect())), wait)
    }

    /// The keys that exist now with scan positions from `from` on (about `slots_wanted` slots'
    /// worth), the position after them, and the newest batch among their states.
    fn keys_in_range(&self, from: u64, slots_wanted: usize, filter: &KeyFilter) -> (Vec<Vec<u8>>, u64, u64) {
        let keyspace = &self.keyspace;
        let (mut keys, mut wait) = (Vec::new(), 0);
        let to = keyspace.index.scan(from, slots_wanted, |key| {
            let lookup = keyspace.lookup(key);
            wait = wait.max(lookup.sequence());
            if lookup.exists() && filter.keeps(key) {
                keys.push(key.to_vec());
            }
        });
        // Keys written since the last durable batch and new to the index.
        for (key, pending) in &keyspace.overlay {
            let in_range = (from..to).contains(&keyspace.index.scan_position(key));
            if in_range && pending.value.is_some() && keyspace.index.get(key).is_none() {
                wait = wait.max(pending.sequence);
                // A pending value whose time has passed is absent, as a lookup says.
                if !keyspace.is_past(pending.expires_at_ms) && filter.keeps(key) {
                    keys.push(key.to_vec());
                }
            }
        }
        (keys, to, wait)
    }

    /// RANDOMKEY: the first key that exists from a drawn scan position on (wrapping around),
    /// else a new key of the overlay, else nil.
    pub(super) fn random_key(&mut self) -> (Reply, u64) {
        if self.keyspace.live_keys == 0 {
            return (Reply::Bulk(None), self.log.newest_sequence);
        }
        let start = self.keyspace.next_random_position();
        let keyspace = &self.keyspace;
        let mut from = start;
        let mut wrapped = false;
        loop {
            let mut found = None;
            let to = keyspace.index.scan(from, RANDOM_KEY_STEP_SLOTS, |key| {
                let lookup = keyspace.lookup(key);
                if found.is_none() && lookup.exists() {
                    found = Some((key.to_vec(), lookup.sequence()));
                }
            });
            if let Some((key, sequence)) = found {
                return (Reply::Bulk(Some(key)), sequence);
            }
            // Done once the range read wraps around to where it started.
            if wrapped && (to > start || to == SCAN_END) {
                break;
            }
            (from, wrapped) = if to == SCAN_END { (0, true) } else { (to, wrapped) };
        }
        let pending = keyspace
            .overlay
            .iter()
            .find(|(_, pending)| pending.value.is_some() && !keyspace.is_past(pending.expires_at_ms));
        match pending {
            Some((key, pending)) => (Reply::Bulk(Some(key.to_vec())), pending.sequence),
            None => (Reply::Bulk(None), self.log.newest_sequence),
        }
    }
}

fn scan_reply(next: u64, keys: Vec<Vec<u8>>) -> Reply {
    let keys = keys.into_iter().map(|key| Reply::Bulk(Some(key))).collect();
    Reply::Array(Some(vec![Reply::Bulk(Some(next.to_string().into_bytes())), Reply::Array(Some(keys))]))
}
