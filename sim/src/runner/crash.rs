//! Crashes and recoveries. A crash drops every I/O in flight and every reply not yet sent;
//! the disk keeps what was durable plus whatever the crash model lets through; the engine
//! restarts on that image and runs its own recovery.

use crate::trace::TraceEvent;
use quill_core::server::Server;
use quill_core::Engine;

use crate::runner::server_config;
use rand::Rng;

use crate::faults::Outcome;
use crate::runner::Sim;

impl Sim {
    pub(crate) fn crash(&mut self) {
        self.crashes += 1;
        self.crash_time = self.checker.now();
        let stats = self.engine().stats().clone();
        self.space.add(&stats);
        let compacting = self.engine().compaction_state() == quill_core::CompactionState::Working;
        self.space.crashes_while_compacting += u64::from(compacting);
        self.space.crashes_while_checkpointing += u64::from(self.engine().checkpoint_in_progress());
        let log = quill_core::format::LOG_START_BLOCK..self.disk.log_end_block;
        let log_writes = self.disk.unsynced_intended_ranges().iter().filter(|(first, _)| log.contains(first)).count();
        self.space.crashes_with_batches_in_flight += u64::from(log_writes >= 2);
        self.aimed_tail.two_in_flight = log_writes >= 2;
        let number = self.crashes;
        let read_only = self.engine().read_only_reason().is_some();
        self.trace.record(self.tick, &[TraceEvent::Crash.word(), number, u64::from(read_only)], |line| {
            let restart = if read_only { " (restart after a failed write)" } else { "" };
            line.push_str(&format!("crash {number}{restart}; engine was: {}", self.server.engine().debug_state()))
        });
        self.read_only.until = None;
        self.watch.restart();
        self.faults.ledger.io_errors_since_start = 0;
        self.storage.clear();
        self.index_work.clear(); // the old engine's partitions die with it
                                 // A new engine starts with an empty cache, and so does the copy of it (a new `Db`).
        self.view.clear();
        for client in 0..self.clients.len() {
            self.abandon_scan(client, true);
            self.forget_watch(client);
        }
        let lost: Vec<crate::runner::Outstanding> =
            self.clients.iter_mut().flat_map(|client| std::mem::take(&mut client.outstanding)).collect();
        self.domain_requests_lost(&lost, true, None);
        self.isolation_lost(&lost, true);
        self.checker.crash();
        let lose_unsynced = std::mem::take(&mut self.aimed_tail.lose_unsynced);
        let (survive, tear) = if self.faults.enabled && lose_unsynced {
            (0, 0)
        } else if self.faults.enabled {
            (self.knobs.crash_survive_ppm, self.knobs.crash_tear_ppm)
        } else {
            (1_000_000, 0) // a clean restart once faults are off: unsynced writes reach the disk whole
        };
        match self.crash_plan.forced_image.take() {
            Some(masks) => self.disk.crash_with_masks(&masks, &mut self.faults.ledger),
            None => self.disk.crash(&mut self.faults.rng, survive, tear, &mut self.faults.ledger),
        }
        // Format never finished (an injected error or crash hit it): format again, as an
        // operator would; otherwise restart and recover.
        let engine = if self.formatted {
            // Now and then the restart is a read-only open (what `quill check` does); the next
            // tick sees the engine read-only and restarts it normally.
            let mut config = self.config.clone();
            let writable = std::mem::take(&mut self.next_open_writable);
            config.open_read_only = self.faults.enabled && self.faults.rng.gen_range(0..10) == 0 && !writable;
            // As `quill check` opens: read-only, and replaying the whole log, not the checkpoint.
            config.use_checkpoint = !config.open_read_only;
            self.opened_read_only = config.open_read_only;
            Engine::open(config)
        } else {
            Engine::format(self.config.clone(), self.faults.rng.gen())
        };
        self.server = Server::new(engine, server_config());
        self.reconnect_all();
        self.recovering = true;
        self.drain_engine();
    }

    /// The promise behind the aimed bit rot, checked on the disk itself: after a writable open,
    /// every batch in flight at the crash that the open took, if it is among the newest (as
    /// many as batches may be in flight), has a mirror slot holding the same bytes as its log
    /// copy.
    fn check_adopted_tail_mirrored(&mut self) {
        if self.opened_read_only || !self.knobs.mirrored {
            return;
        }
        for tail in self.disk.adopted_tails.clone() {
            self.check_adopted_batch_mirrored(tail);
        }
    }

    fn check_adopted_batch_mirrored(&mut self, tail: crate::disk::AdoptedTail) {
        use quill_core::format::superblock::{new_volume_mirror_slots, pipeline_depth_max};
        use quill_core::format::BatchHeader;
        use quill_core::BLOCK_BYTES;
        let log_copy = self.disk.read(tail.first * BLOCK_BYTES as u64, (tail.end - tail.first) as usize * BLOCK_BYTES);
        if crc32c::crc32c(&log_copy) != tail.digest {
            // The write did not land whole (nor was it repaired): what is there is another
            // batch, perhaps a stale one of the same sequence (seed 102545), not the one taken.
            return;
        }
        let (volume_id, blocks_max) = (self.engine().volume_id(), self.knobs.batch_blocks_max);
        let Ok(header) = BatchHeader::decode(&log_copy[..BLOCK_BYTES], tail.first, volume_id, blocks_max) else {
            return; // torn or lost: the open did not take it
        };
        let batch_bytes = header.block_count as usize * BLOCK_BYTES;
        let slots = new_volume_mirror_slots(true);
        let durable = self.engine().durable_sequence();
        let newest = header.sequence <= durable && header.sequence + u64::from(pipeline_depth_max(slots)) > durable;
        if !newest || batch_bytes > log_copy.len() || header.verify_payload(&log_copy[..batch_bytes]).is_err() {
            return;
        }
        let slot_block = self.disk.log_end_block + (header.sequence % u64::from(slots)) * u64::from(blocks_max);
        // The open's write to the slot was itself damaged (a misdirected write, seed 102543):
        // the engine did its part, an injected fault undid it.
        if self.faults.ledger.has_corruption_in(slot_block, slot_block + u64::from(header.block_count)) {
            return;
        }
        let mirror_copy = self.disk.read(slot_block * BLOCK_BYTES as u64, batch_bytes);
        // Whole as a batch: the same header (bound to the log place) and a payload that verifies;
        // padding after the payload is covered by no checksum, and a torn write may leave it.
        let mirror_whole = BatchHeader::decode(&mirror_copy[..BLOCK_BYTES], tail.first, volume_id, blocks_max)
            .is_ok_and(|copy| copy == header && copy.verify_payload(&mirror_copy).is_ok());
        if !mirror_whole {
            let got = format!("batch {} at block {}: its mirror slot differs", header.sequence, tail.first);
            let what = "a writable open took the batch in flight at the crash with one copy";
            self.checker.fail(what, b"", "both copies".into(), got);
        }
    }

    /// A writable open that took the batch in flight at the crash must give it both copies
    /// before it serves it (mirror.rs, `check_newest_mirror`): half the time, in seeds with bit
    /// rot, a flip on that batch follows soon, then a crash (runner.rs, `flip_adopted_tail`).
    fn aim_at_adopted_tail(&mut self) {
        let aimed = !self.opened_read_only
            && self.knobs.bit_flip_per_tick_ppm > 0
            && !self.disk.adopted_tails.is_empty()
            && self.faults.rng.gen_bool(0.5);
        if aimed {
            self.aimed_tail.flip_at = Some(self.tick + self.faults.rng.gen_range(1..30));
        }
        // A crash that met two batches in flight may leave the second one whole beyond a torn
        // first: the open writes new batches over that place, and a second crash soon after
        // must not let recovery take the stale batch for the new one's successor.
        let again = std::mem::take(&mut self.aimed_tail.two_in_flight)
            && self.crashes < 2 * u64::from(self.knobs.crashes_max) + 2
            && self.faults.rng.gen_bool(0.9);
        if again && self.aimed_tail.crash_at.is_none() {
            self.aimed_tail.crash_at = Some(self.tick + self.faults.rng.gen_range(1..15));
        }
    }

    /// A read returned a write's value before the write's reply: the engine reveals only
    /// durable writes, so a crash now must keep it. A quarter of such reads aim a crash within
    /// two ticks (before the batch in flight can finish, were the write not durable yet) that
    /// loses every write not durable.
    pub(crate) fn aim_after_reveal(&mut self) {
        let reveals = self.checker.reveals_before_reply;
        if reveals == self.space.reveals_before_reply {
            return;
        }
        self.space.reveals_before_reply = reveals;
        let aimed = self.formatted
            && self.aimed_tail.crash_at.is_none()
            && self.crashes < 2 * u64::from(self.knobs.crashes_max) + 2
            && self.faults.rng.gen_bool(0.25);
        if aimed {
            self.space.crashes_after_reveal += 1;
            self.aimed_tail.crash_at = Some(self.tick + self.faults.rng.gen_range(0..2));
            self.aimed_tail.lose_unsynced = true;
        }
    }

    /// Once a recovery has finished: account for the damage it met, and decide whether a refusal
    /// to open is a detection (damage beyond the budget) or a bug.
    pub(crate) fn after_recovery_if_done(&mut self) {
        if !self.recovering || !(self.engine().is_ready() || self.engine().open_error().is_some()) {
            return;
        }
        self.recovering = false;
        let epoch = self.engine().epoch();
        if let Some(error @ quill_core::OpenError::Io(_)) = self.engine().open_error().cloned() {
            if !self.open_io_error_explained() {
                let got = error.to_string();
                return self.checker.fail("an open failed on I/O with no injected error", b"", "an open".into(), got);
            }
            // An injected I/O error during recovery: the engine said so; restart and retry.
            self.trace.record(self.tick, &[TraceEvent::Recovery.word(), 2], |line| {
                line.push_str(&format!("recovery failed: {error}; restarting"))
            });
            return self.crash();
        }
        if let Some(error @ quill_core::OpenError::NeedsRepair { block, .. }) = self.engine().open_error().cloned() {
            // A read-only open met a batch its mirror can repair: it must say so (never serve
            // around it), and damage there must explain it. The writable open after repairs it.
            if !self.faults.ledger.ever_damaged_in(block, block + u64::from(self.knobs.batch_blocks_max)) {
                let got = error.to_string();
                return self.checker.fail(
                    "a repair was needed with no fault that explains it",
                    b"",
                    "a clean open".into(),
                    got,
                );
            }
            self.trace.record(self.tick, &[TraceEvent::Recovery.word(), 3], |line| {
                line.push_str(&format!("read-only open refused: {error}; restarting writable"))
            });
            self.next_open_writable = true;
            return self.crash();
        }
        if let Some(error) = self.engine().open_error().cloned() {
            self.trace.record(self.tick, &[TraceEvent::Recovery.word(), 0], |line| {
                line.push_str(&format!("recovery refused: {error}"))
            });
            self.faults.ledger.resolve_blocks(0, u64::MAX, Outcome::Detected);
            if self.faults.ledger.beyond_budget {
                self.stopped_by_detection =
                    Some(format!("the engine refused to open after damage beyond the fault budget: {error}"));
            } else {
                self.checker.fail(
                    "the engine refused to open with no fault that explains it",
                    b"",
                    "a clean open".into(),
                    error.to_string(),
                );
            }
            return;
        }
        self.check_open_fallbacks();
        self.check_open_reports();
        let stats = self.engine().stats().clone();
        self.trace.record(self.tick, &[TraceEvent::Recovery.word(), 1, epoch, stats.recovered_batches], |line| {
            line.push_str(&format!(
                "recovered: epoch {epoch}, {} batches, truncated at {:?}, {} superblock copies bad, checkpoint loaded {} rejected {:?}, {} batches repaired; {}",
                stats.recovered_batches,
                stats.truncated_at_block,
                stats.superblock_copies_bad,
                stats.checkpoint_loaded,
                stats.checkpoint_rejected,
                stats.batches_repaired,
                self.server.engine().debug_state()
            ))
        });
        self.check_adopted_tail_mirrored();
        self.settle_undecided_writes();
        self.aim_at_adopted_tail();
        let superblock_outcome = if stats.superblock_copies_bad > 0 { Outcome::Repaired } else { Outcome::Harmless };
        self.faults.ledger.resolve_blocks(0, quill_core::format::LOG_START_BLOCK, superblock_outcome);
        match stats.truncated_at_block {
            Some(block) => {
                // Recovery verified everything before the tail and examined one batch's reach
                // after it (the torn tail it discarded); damage further out is not log data.
                let depth = quill_core::format::superblock::pipeline_depth_max(
                    quill_core::format::superblock::new_volume_mirror_slots(self.knobs.mirrored),
                );
                let examined_end = block + (1 + u64::from(depth)) * u64::from(self.knobs.batch_blocks_max) + 1;
                self.faults.ledger.resolve_blocks(quill_core::format::LOG_START_BLOCK, block, Outcome::Harmless);
                self.faults.ledger.resolve_blocks(block, examined_end, Outcome::Detected);
            }
            None => self.faults.ledger.resolve_blocks(quill_core::format::LOG_START_BLOCK, u64::MAX, Outcome::Harmless),
        }
    }
}
