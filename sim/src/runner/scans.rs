//! SCAN, KEYS and RANDOMKEY. A client scans step by step, one SCAN in flight at a time; when its
//! cursor comes back to 0 the simulator checks Redis's guarantee, and QuillKV's stronger one:
//! every register key present for the whole scan was returned, exactly once, and every key
//! returned may have existed during the step that returned it. KEYS is a scan in one step.
//! RANDOMKEY returns a key that may exist, or nil only if no key was certainly present.
//! Patterns are prefixes followed by `*`, so the check needs no glob matcher of its own.

use std::collections::BTreeSet;

use quill_core::{Reply, Request};
use rand::Rng;

use crate::checker::{family, Family};
use crate::runner::{Outstanding, Sim};

/// A scan under way: its pattern's prefix, the cursor to send next, the keys seen so far.
pub(crate) struct ScanSession {
    prefix: Vec<u8>,
    count: u64,
    /// A TYPE other than string: every step must come back empty.
    keeps_nothing: bool,
    type_filter: Option<Vec<u8>>,
    cursor: u64,
    seen: BTreeSet<Vec<u8>>,
    /// When the first step was sent; the checker keeps the history from then on.
    started: Option<u64>,
    in_flight: bool,
}

const PREFIXES: [&[u8]; 7] = [b"", b"", b"k", b"k1", b"c", b"a", b"n"];

fn pattern(prefix: &[u8]) -> Vec<u8> {
    [prefix, b"*"].concat()
}

impl Sim {
    /// Now and then, a GET of a register becomes a read of the key set.
    pub(crate) fn keyset_variant(&mut self, client: usize, request: Request) -> Request {
        let Request::Get { key } = &request else { return request };
        if family(key) != Some(Family::Register) || !self.variants.chosen() {
            return request;
        }
        let rng = &mut self.variants.rng;
        match rng.gen_range(0..10) {
            0 => Request::RandomKey,
            1 => Request::Keys { pattern: pattern(PREFIXES[rng.gen_range(0..PREFIXES.len())]) },
            _ => self.next_scan_step(client).unwrap_or(request),
        }
    }

    /// The client's next SCAN step (starting a scan if none is under way), or `None` while one
    /// is in flight.
    fn next_scan_step(&mut self, client: usize) -> Option<Request> {
        let rng = &mut self.variants.rng;
        let session = self.clients[client].scan.get_or_insert_with(|| {
            let type_filter = match rng.gen_range(0..10) {
                0 => Some(b"STRING".to_vec()),
                1 => Some(b"hash".to_vec()),
                _ => None,
            };
            ScanSession {
                prefix: PREFIXES[rng.gen_range(0..PREFIXES.len())].to_vec(),
                count: rng.gen_range(1..=40),
                keeps_nothing: type_filter.as_deref() == Some(b"hash"),
                type_filter,
                cursor: 0,
                seen: BTreeSet::new(),
                started: None,
                in_flight: false,
            }
        });
        if session.in_flight {
            return None;
        }
        session.in_flight = true;
        let pattern = (!session.prefix.is_empty() || rng.gen_bool(0.5)).then(|| pattern(&session.prefix));
        Some(Request::Scan {
            cursor: session.cursor,
            pattern,
            count: session.count,
            only_type: session.type_filter.clone(),
        })
    }

    /// The client's scan ends unfinished (a crash, a cut connection, an error).
    pub(crate) fn abandon_scan(&mut self, client: usize, crashed: bool) {
        if let Some(ScanSession { started: Some(started), .. }) = self.clients[client].scan.take() {
            if !crashed {
                self.checker.end_read(started); // a crash forgets every read in flight
            }
        }
    }

    /// Judges a successful reply to SCAN, KEYS or RANDOMKEY.
    pub(crate) fn on_keyset_reply(&mut self, client: usize, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        let invoked = outstanding.invoked;
        match (&outstanding.request, reply) {
            (Request::Scan { .. }, Reply::Array(Some(parts))) => match &parts[..] {
                [Reply::Bulk(Some(cursor)), Reply::Array(Some(keys))] => {
                    self.on_scan_step(client, cursor, keys, outstanding, responded);
                }
                _ => self.keyset_mismatch("[cursor, [keys]]", reply),
            },
            (Request::Keys { pattern }, Reply::Array(Some(keys))) => {
                let prefix = &pattern[..pattern.len() - 1];
                let mut seen = BTreeSet::new();
                self.check_returned_keys(prefix, keys, &mut seen, outstanding, responded);
                self.check_scan_complete(prefix, &seen, invoked, responded, "KEYS");
            }
            (Request::RandomKey, Reply::Bulk(Some(key))) => {
                let key = Reply::Bulk(Some(key.clone()));
                self.check_returned_keys(b"", &[key], &mut BTreeSet::new(), outstanding, responded);
            }
            (Request::RandomKey, Reply::Bulk(None)) => {
                if let Some(key) = self.certainly_present_keys(b"", invoked, responded).into_iter().next() {
                    self.checker.fail(
                        "RANDOMKEY found no key while one was present",
                        &key,
                        "a key".into(),
                        "nil".into(),
                    );
                }
            }
            (_, other) => self.keyset_mismatch("the command's reply", other),
        }
        self.checker.end_read(invoked);
    }

    fn on_scan_step(
        &mut self,
        client: usize,
        cursor: &[u8],
        keys: &[Reply],
        outstanding: &Outstanding,
        responded: u64,
    ) {
        let invoked = outstanding.invoked;
        let Some(mut session) = self.clients[client].scan.take() else {
            return self.checker.fail("a SCAN reply without a scan under way", b"", "none".into(), "a reply".into());
        };
        if session.started.is_none() {
            self.checker.begin_read(invoked); // the history stays until the scan ends
            session.started = Some(invoked);
        }
        session.in_flight = false;
        if session.keeps_nothing && !keys.is_empty() {
            self.keyset_mismatch("no keys for TYPE hash", &Reply::Array(Some(keys.to_vec())));
        }
        self.check_returned_keys(&session.prefix, keys, &mut session.seen, outstanding, responded);
        let Some(next) = std::str::from_utf8(cursor).ok().and_then(|text| text.parse::<u64>().ok()) else {
            return self.keyset_mismatch("a numeric cursor", &Reply::Bulk(Some(cursor.to_vec())));
        };
        if next != 0 {
            session.cursor = next;
            self.clients[client].scan = Some(session);
            return;
        }
        let started = session.started.expect("set above");
        if !session.keeps_nothing {
            self.check_scan_complete(&session.prefix, &session.seen, started, responded, "SCAN");
        }
        self.checker.end_read(started);
    }

    /// Every key returned matches the pattern, is new to this scan, and may have existed.
    fn check_returned_keys(
        &mut self,
        prefix: &[u8],
        keys: &[Reply],
        seen: &mut BTreeSet<Vec<u8>>,
        outstanding: &Outstanding,
        responded: u64,
    ) {
        let invoked = outstanding.invoked;
        for key in keys {
            let Reply::Bulk(Some(key)) = key else { return self.keyset_mismatch("a key", key) };
            let (what, fine) = if !key.starts_with(prefix) {
                ("a key the pattern does not match", false)
            } else if !seen.insert(key.clone()) {
                ("a key returned twice in one scan", false)
            } else if family(key) == Some(Family::Register) {
                ("a key no history allows to exist", self.checker.register_possibilities(key, invoked, responded).1)
            } else if crate::runner::expiring::is_expiring_key(key) {
                ("an expiry key gone (or never there) while listed", self.expiring_key_may_exist(key, outstanding))
            } else {
                ("a key never written", self.checker.keys.contains_key(key))
            };
            if !fine {
                return self.checker.fail(what, key, "keys that may exist".into(), String::from_utf8_lossy(key).into());
            }
        }
    }

    /// Every register key with the prefix certainly present from `started` to `responded` was seen.
    fn check_scan_complete(
        &mut self,
        prefix: &[u8],
        seen: &BTreeSet<Vec<u8>>,
        started: u64,
        responded: u64,
        what: &str,
    ) {
        let missing =
            self.certainly_present_keys(prefix, started, responded).into_iter().find(|key| !seen.contains(key));
        if let Some(key) = missing {
            let what = format!("{what} missed a key present for the whole iteration");
            self.checker.fail(what, &key, "the key".into(), format!("{} keys without it", seen.len()));
        }
    }

    fn certainly_present_keys(&mut self, prefix: &[u8], started: u64, responded: u64) -> Vec<Vec<u8>> {
        let candidates: Vec<Vec<u8>> = self
            .checker
            .keys
            .keys()
            .filter(|key| key.starts_with(prefix) && family(key) == Some(Family::Register))
            .cloned()
            .collect();
        candidates
            .into_iter()
            .filter(|key| self.checker.certainly_present_throughout(key, started, responded))
            .collect()
    }

    fn keyset_mismatch(&mut self, expected: &str, got: &Reply) {
        self.checker.fail("a key-set reply of the wrong shape", b"", expected.to_string(), format!("{got:?}"));
    }
}
