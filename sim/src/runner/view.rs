//! The published cache (`Config::publish_cache`): the copy `Db` keeps so that GETs of cached
//! values are answered on the caller's thread. The simulator keeps it the same way (changes
//! drained before replies) and, on seeds that publish, answers half the GETs from it at the
//! instant they are issued. The checker judges each such read like any GET: a value seen there
//! must be one linearizability allows at that instant, so a copy that showed a write before
//! it was durable, or kept a value after an acknowledged overwrite or DEL, fails the seed.

use crate::trace::TraceEvent;
use quill_core::{CacheChange, Request};
use rand::Rng;

use crate::runner::Sim;

impl Sim {
    pub(crate) fn apply_cache_change(&mut self, change: CacheChange) {
        match change {
            CacheChange::Put(key, value) => {
                self.view.insert(key.into_vec(), value);
            }
            CacheChange::Remove(key) => {
                self.view.remove(key.as_ref());
            }
            CacheChange::Clear => self.view.clear(),
        }
    }

    /// The copy holds exactly what the cache holds: the same bytes (keys plus values) as the
    /// engine reports. Checked once the run is idle; a change never published (a put missed,
    /// an eviction unreported) shows here even where it made no read wrong.
    pub(crate) fn check_view_mirrors_cache(&mut self) {
        if !self.knobs.publish_cache || !self.is_running() {
            return;
        }
        // Read without the engine, the copy knows no time: a key that expires must not be there.
        if let Some(key) = self.view.keys().find(|key| self.engine().durable_expiry(key).is_some()) {
            let key = key.clone();
            return self.checker.fail(
                "the published cache holds a key that expires",
                &key,
                "absent".into(),
                "present".into(),
            );
        }
        let view_bytes: usize = self.view.iter().map(|(key, value)| key.len() + value.len()).sum();
        let cache_bytes = self.engine().cache_bytes();
        if view_bytes != cache_bytes {
            let got = format!("{view_bytes} bytes in {} keys published, {cache_bytes} bytes cached", self.view.len());
            self.checker.fail("the published cache differs from the cache", b"", "the same bytes".into(), got);
        }
    }

    /// On publishing seeds, half the GETs look in the published copy first; a hit is answered
    /// there and then (returns true), a miss goes to the engine.
    pub(crate) fn read_from_view(&mut self, client: usize, request: &Request) -> bool {
        let Request::Get { key } = request else { return false };
        use crate::checker::Family;
        let judged = matches!(crate::checker::family(key), Some(Family::Register | Family::Counter | Family::Append));
        if !self.knobs.publish_cache || !judged || self.workload_rng.gen_bool(0.5) {
            return false;
        }
        let Some(value) = self.view.get(key).cloned() else { return false };
        let invoked = self.checker.now();
        self.checker.begin_read(invoked);
        let responded = self.checker.now();
        self.trace.record(
            self.tick,
            &[TraceEvent::PublishedRead.word(), client as u64, crate::trace::digest(&value)],
            |line| line.push_str(&format!("client {client} reads {} bytes from the published cache", value.len())),
        );
        self.check_value(key, Some(&value), invoked, responded);
        self.checker.end_read(invoked);
        true
    }
}
