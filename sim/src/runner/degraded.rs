//! Every degraded path must be explained. A checkpoint the open could not use, a superblock copy
//! it could not read, a switch to read-only, an open that failed on I/O: each is legitimate only
//! when an injected fault (or the volume's real state) explains it. Otherwise the engine took a
//! fallback it should not have needed — an engine that never wrote its checkpoints would pass
//! every read check while every open fell back to a full scan.

use quill_core::format::LOG_START_BLOCK;

use crate::runner::Sim;

impl Sim {
    /// After an open finished: its fallbacks must be explained by faults.
    pub(crate) fn check_open_fallbacks(&mut self) {
        let stats = self.engine().stats().clone();
        if self.opened_read_only && stats.checkpoint_loaded {
            let what = "a check (read-only open) loaded the checkpoint instead of replaying the whole log";
            return self.checker.fail(what, b"", "a full replay".into(), "the checkpoint".into());
        }
        if stats.superblock_copies_bad > 0 && !self.faults.ledger.ever_damaged_in(0, LOG_START_BLOCK) {
            let got = format!("{} copies bad", stats.superblock_copies_bad);
            return self.checker.fail(
                "a superblock copy was unusable with no fault on it",
                b"",
                "both good".into(),
                got,
            );
        }
        let Some(reason) = stats.checkpoint_rejected else { return };
        let slots =
            self.knobs.volume_blocks - 2 * u64::from(self.knobs.checkpoint_slot_blocks)..self.knobs.volume_blocks;
        let read_failed = reason.starts_with("reading it failed") && self.faults.ledger.io_errors_since_start > 0;
        let damaged = self.faults.ledger.ever_damaged_in(slots.start, slots.end)
            || self.faults.ledger.ever_damaged_in(0, LOG_START_BLOCK);
        if !read_failed && !damaged {
            self.checker.fail(
                "a checkpoint was rejected with no fault that explains it",
                b"",
                "the checkpoint loaded".into(),
                reason,
            );
        }
    }

    /// The engine turned read-only: a failed write or sync since it started, or a read-only open.
    pub(crate) fn check_read_only_explained(&mut self) {
        let Some(reason) = self.engine().read_only_reason() else { return };
        if self.opened_read_only || self.faults.ledger.io_errors_since_start > 0 {
            return;
        }
        let got = reason.to_string();
        self.checker.fail("the engine turned read-only with no failed write or sync", b"", "writable".into(), got);
    }

    /// An open that failed on I/O needs an injected I/O error.
    pub(crate) fn open_io_error_explained(&self) -> bool {
        self.faults.ledger.io_errors_since_start > 0
    }
}
