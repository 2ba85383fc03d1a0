//! The engine's reports must be honest. Drivers print them (INFO, `quill bench`, `quill check`)
//! and the simulator's own checks read some of them, so a report that lies would blind both.
//! Each is checked against what the simulator saw: I/Os issued and in flight, the client
//! backlog, the durable sequence (never backwards), the epoch (forward at every open), the
//! volume id, the cache within its budget, the space report against the index, a wake-up asked
//! for exactly now.

use quill_core::server::DIRECT_CLIENT_BASE;
use quill_core::{CompactionState, IoKind};

use crate::runner::Sim;

/// What the simulator saw of the engine instance running now.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    pub reads: u64,
    pub writes: u64,
    pub syncs: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub durable_sequence: u64,
    /// The epoch the last writable open recorded (every later open reports a greater one; a
    /// read-only open records nothing).
    pub epoch_written: u64,
    /// The volume id the run formatted.
    pub volume_id: Option<u64>,
}

impl Watch {
    pub fn count(&mut self, kind: &IoKind) {
        match kind {
            IoKind::Read { length_bytes, .. } => {
                self.reads += 1;
                self.bytes_read += u64::from(*length_bytes);
            }
            IoKind::Write { data, .. } | IoKind::WriteDurable { data, .. } => {
                self.writes += 1;
                self.bytes_written += data.len() as u64;
            }
            IoKind::Sync => self.syncs += 1,
        }
    }

    /// A new engine instance: its counters start again.
    pub fn restart(&mut self) {
        *self = Watch { epoch_written: self.epoch_written, volume_id: self.volume_id, ..Watch::default() };
    }
}

impl Sim {
    /// The cheap reports, after every step.
    pub(crate) fn check_reports(&mut self) {
        if let Some(what) = self.dishonest_report() {
            let got = format!("{what}; engine: {}", self.engine().debug_state());
            self.checker.fail(
                "the engine reported something the simulator did not see",
                b"",
                "honest reports".into(),
                got,
            );
        }
    }

    fn dishonest_report(&mut self) -> Option<String> {
        let engine = self.server.engine();
        let stats = engine.stats();
        let watch = &mut self.watch;
        let counted = (stats.reads, stats.writes, stats.syncs, stats.bytes_read, stats.bytes_written);
        let issued = (watch.reads, watch.writes, watch.syncs, watch.bytes_read, watch.bytes_written);
        if counted != issued {
            return Some(format!("I/Os and bytes {counted:?} counted, {issued:?} issued"));
        }
        if engine.io_in_flight() != self.storage.len() {
            return Some(format!("{} I/Os in flight, {} pending", engine.io_in_flight(), self.storage.len()));
        }
        if engine.reads_in_flight() > self.config.queue_depth_max || engine.reads_in_flight() > engine.io_in_flight() {
            return Some(format!("{} value reads in flight", engine.reads_in_flight()));
        }
        if engine.durable_sequence() < watch.durable_sequence || engine.durable_sequence() < stats.batches_committed {
            return Some(format!("durable sequence {} after {}", engine.durable_sequence(), watch.durable_sequence));
        }
        watch.durable_sequence = engine.durable_sequence();
        if engine.cache_bytes() > self.config.cache_bytes_max {
            return Some(format!("cache holds {} bytes of {}", engine.cache_bytes(), self.config.cache_bytes_max));
        }
        if engine.compaction_halted().is_some() != (engine.compaction_state() == CompactionState::Halted) {
            return Some(format!("halted {:?} in state {:?}", engine.compaction_halted(), engine.compaction_state()));
        }
        // A wake-up is now, or later only for a key's expiry time; never in the past.
        let expiring = engine.expiring_key_count() > 0;
        if engine.poll_timeout().is_some_and(|at| at < self.tick || at > self.tick && !expiring) {
            return Some(format!("a wake-up at {:?}, now is {}", engine.poll_timeout(), self.tick));
        }
        if !self.knobs.network {
            for (client, state) in self.clients.iter().enumerate() {
                let backlog = engine.client_backlog(DIRECT_CLIENT_BASE + client as u64);
                if backlog != state.outstanding.len() {
                    return Some(format!(
                        "client {client} has {backlog} commands queued, {} sent",
                        state.outstanding.len()
                    ));
                }
            }
        }
        None
    }

    /// Once an open finished: the volume and epoch it reports, and the bytes recovery read.
    pub(crate) fn check_open_reports(&mut self) {
        let (volume_id, epoch) = (self.engine().volume_id(), self.engine().epoch());
        let recovery_bytes = self.engine().stats().recovery_bytes_read;
        // Recovery read both superblocks at least; compaction may have read since it ended.
        // (A format reads nothing.)
        let superblocks_bytes = quill_core::format::LOG_START_BLOCK * quill_core::BLOCK_BYTES as u64;
        if self.formatted && (recovery_bytes > self.watch.bytes_read || recovery_bytes < superblocks_bytes) {
            let got = format!("{recovery_bytes} bytes read by recovery, {} issued", self.watch.bytes_read);
            return self.checker.fail("an open reported the wrong volume", b"", "honest reports".into(), got);
        }
        let expected = *self.watch.volume_id.get_or_insert(volume_id);
        let what = if volume_id != expected {
            format!("volume id {volume_id:#x}, formatted as {expected:#x}")
        } else if epoch <= self.watch.epoch_written {
            format!("epoch {epoch} after {} was written", self.watch.epoch_written)
        } else {
            if !self.opened_read_only {
                self.watch.epoch_written = epoch;
            }
            return;
        };
        self.checker.fail("an open reported the wrong volume", b"", "the formatted volume".into(), what);
    }

    /// Once idle: the space report against the index and the geometry.
    pub(crate) fn check_space_report(&mut self) {
        let engine = self.engine();
        let space = engine.space();
        let live_bytes: u64 = engine.durable_index().map(|(_, location)| u64::from(location.record_bytes)).sum();
        let capacity_bytes =
            (self.disk.log_end_block - quill_core::format::LOG_START_BLOCK) * quill_core::BLOCK_BYTES as u64;
        if space.live_bytes != live_bytes
            || space.log_capacity_bytes != capacity_bytes
            || space.log_used_bytes > capacity_bytes
            || space.log_used_bytes < live_bytes
        {
            let got = format!("{space:?}; the index holds {live_bytes} bytes, the log region {capacity_bytes}");
            self.checker.fail("the space report disagrees with the index", b"", "agreement".into(), got);
        }
    }
}
