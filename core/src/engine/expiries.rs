//! The expiry times of the durable keys: key → Unix milliseconds, and the same ordered by time
//! so that active expiry finds the keys due first without a scan. Only keys with an expiry time
//! are here (most keys have none, and then this costs nothing). The index owns it, so that
//! every change of a key's durable record (put, delete, clear, a rebuilt index) changes its
//! expiry time with it.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct Expiries {
    by_key: BTreeMap<Box<[u8]>, u64>,
    by_time: BTreeSet<(u64, Box<[u8]>)>,
}

impl Expiries {
    pub fn get(&self, key: &[u8]) -> Option<u64> {
        if self.by_key.is_empty() {
            return None; // the common case: no key expires
        }
        self.by_key.get(key).copied()
    }

    /// Sets (`Some`) or removes (`None`) the key's expiry time.
    pub fn set(&mut self, key: &[u8], expires_at_ms: Option<u64>) {
        let old = match expires_at_ms {
            Some(time) => self.by_key.insert(key.into(), time),
            None if self.by_key.is_empty() => None,
            None => self.by_key.remove(key),
        };
        if let Some(old_time) = old {
            let removed = self.by_time.remove(&(old_time, Box::from(key)));
            debug_assert!(removed, "both orders hold the same keys");
        }
        if let Some(time) = expires_at_ms {
            self.by_time.insert((time, key.into()));
        }
        debug_assert_eq!(self.by_key.len(), self.by_time.len());
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The earliest expiry time.
    pub fn earliest(&self) -> Option<u64> {
        self.by_time.first().map(|(time, _)| *time)
    }

    /// The keys whose time is at or before `now_ms`, earliest first.
    pub fn due(&self, now_ms: u64) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.by_time.iter().take_while(move |(time, _)| *time <= now_ms).map(|(time, key)| (*time, &key[..]))
    }

    /// Every key with its time, in key order (checkpoints).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.by_key.iter().map(|(key, time)| (&key[..], *time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_orders_follow_every_change() {
        let mut expiries = Expiries::default();
        expiries.set(b"a", Some(30));
        expiries.set(b"b", Some(10));
        expiries.set(b"c", Some(20));
        expiries.set(b"c", Some(40));
        expiries.set(b"b", None);
        expiries.set(b"missing", None);
        assert_eq!(expiries.get(b"c"), Some(40));
        assert_eq!(expiries.get(b"b"), None);
        assert_eq!(expiries.earliest(), Some(30));
        let due: Vec<(u64, &[u8])> = expiries.due(35).collect();
        assert_eq!(due, vec![(30, &b"a"[..])]);
        assert_eq!(expiries.len(), 2);
    }
}
