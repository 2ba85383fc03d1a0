//! Active expiry: keys whose expiry time has passed are deleted (a tombstone in the log, as a
//! DEL writes), a bounded number per call, earliest first. Until then every command already
//! sees them absent (`Keyspace::lookup`); the deletion frees their index entry, cache and log
//! space, and makes the absence independent of the clock after a restart.

use super::super::commit::NewRecord;
use super::super::space::Writer;
use super::super::{Engine, Phase};
use crate::command::Request;

/// Keys looked at per call: bounds the work of one engine input.
pub(in crate::engine) const ACTIVE_EXPIRY_KEYS_MAX: usize = 64;

impl Engine {
    /// Deletes up to `ACTIVE_EXPIRY_KEYS_MAX` durable keys whose time has passed. A key a newer
    /// write replaced (pending in the overlay, or FLUSHALL) or that a command holds locked is
    /// left to that write. Returns whether it deleted any.
    pub(in crate::engine) fn expire_due_keys(&mut self) -> bool {
        let now = self.keyspace.now_unix_ms;
        let ready = matches!(self.phase, Phase::Ready) && self.shared.read_only.is_none();
        if !ready || self.keyspace.index.expiries.earliest().is_none_or(|time| time >= now) {
            return false;
        }
        let keyspace = &self.keyspace;
        let keys: Vec<Vec<u8>> = keyspace
            .index
            .expiries
            .due(now.saturating_sub(1))
            .take(ACTIVE_EXPIRY_KEYS_MAX)
            .filter(|(_, key)| {
                keyspace.cleared_at.is_none() && !keyspace.overlay.contains_key(*key) && !self.clients.is_locked(key)
            })
            .map(|(_, key)| key.to_vec())
            .collect();
        !keys.is_empty() && self.delete_expired(&keys)
    }

    /// Lazy expiry, as Redis's `expireIfNeeded`: before a command runs, the keys it names that
    /// have expired are deleted (in the log, ahead of the command's own records), so that
    /// DBSIZE stops counting them as Redis's does. WATCH only looks. Keys locked by a command
    /// under way are left to it; a refused append leaves them to active expiry.
    pub(in crate::engine) fn expire_accessed_keys(&mut self, request: &Request) {
        let ready = matches!(self.phase, Phase::Ready) && self.shared.read_only.is_none();
        if !ready || !self.keyspace.may_expire() || matches!(request, Request::Watch { .. }) {
            return;
        }
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut collect = |key: &[u8]| {
            let due = self.keyspace.is_expired(key) && !self.clients.is_locked(key);
            if due && !keys.iter().any(|seen| seen.as_slice() == key) {
                keys.push(key.to_vec());
            }
            false // every key
        };
        match request {
            Request::Exec { commands } => commands.iter().for_each(|command| _ = command.any_key(&mut collect)),
            other => _ = other.any_key(&mut collect),
        }
        if !keys.is_empty() {
            self.delete_expired(&keys);
        }
    }

    /// Appends the deletions of `keys`, all expired, and applies them; whether it could.
    fn delete_expired(&mut self, keys: &[Vec<u8>]) -> bool {
        let records: Vec<NewRecord<'_>> = keys.iter().map(|key| NewRecord::Delete { key }).collect();
        // Refused (the batch is full, the disk is): the keys stay expired and are tried again.
        let Ok(sequence) = self.append_records(&records, Writer::Delete) else { return false };
        for key in keys {
            debug_assert!(self.keyspace.is_expired(key), "only expired keys are deleted");
            self.keyspace.write(key.as_slice().into(), None, None, sequence);
            self.watches.touch_expired(key);
        }
        self.shared.stats.keys_expired += keys.len() as u64;
        self.maybe_seal();
        true
    }

    /// When the next durable key expires, in `tick`'s clock (the driver's monotonic time): the
    /// time from now to its expiry time, on the wall clock, added to now.
    pub(in crate::engine) fn next_expiry_tick(&self) -> Option<u64> {
        let earliest = self.keyspace.index.expiries.earliest()?;
        // Deleted one millisecond after its time (it is still there during it).
        let wait_ms = (earliest + 1).saturating_sub(self.keyspace.now_unix_ms);
        Some(self.now.saturating_add(wait_ms))
    }
}
