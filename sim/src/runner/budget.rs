//! The fault budget the design promises to survive: between two crashes, at most one
//! corruption (bit rot or a misdirected write) on the copies of the last acknowledged batch.
//! Format 3 keeps two copies (the log and a mirror slot), so one of them may be hit; a format-2
//! volume has one copy, which no corruption may hit. A corruption beyond the budget is not
//! injected (and not counted): the checker then holds the engine to never losing an
//! acknowledged write, with no category of losses set apart.
//!
//! "The last acknowledged batch" is any batch that may be it at the next crash: the last durable
//! log writes (two: with two batches in flight, the one before the newest may be the one a torn
//! tail is mistaken for), and every log write not durable yet.

use crate::disk::SimDisk;
use crate::faults::FaultLedger;

/// What the budget judges from: the disk's writes, the damage so far, the format, and whether
/// the engine can repair now.
pub(crate) struct BudgetView<'a> {
    pub disk: &'a SimDisk,
    pub ledger: &'a FaultLedger,
    pub mirrored: bool,
    pub batch_blocks_max: u32,
    /// The engine is recovering, or serves a read-only open: it cannot rewrite a torn slot.
    pub cannot_repair: bool,
}

impl BudgetView<'_> {
    /// Whether damage on the blocks `first..end` stays within the budget. `new_log_write`: the
    /// damage is a log write of its own going astray (a batch that may become the last one).
    pub fn within(&self, first: u64, end: u64, new_log_write: bool) -> bool {
        let tails = self.tail_candidates();
        let hits_tail =
            new_log_write || tails.iter().any(|(tail_first, tail_end)| first < *tail_end && *tail_first < end);
        if !self.mirrored {
            return !hits_tail;
        }
        let (mirror_first, mirror_end) = self.mirror_region();
        let hits_mirror = first < mirror_end && mirror_first < end;
        let tail_damaged =
            tails.iter().any(|(tail_first, tail_end)| self.ledger.has_corruption_in(*tail_first, *tail_end));
        // A batch in flight at a crash whose mirror copy tore has one copy until a writable open
        // rewrites its slot: while the engine recovers, or serves it read-only (seed 848: a
        // read-only open served it, bit rot then hit it). A writable engine must have rewritten
        // it by the time it is ready: then the promise holds again.
        let adopted_unmirrored = self.disk.adopted_tails.iter().any(|tail| !tail.mirror_whole) && self.cannot_repair;
        // Likewise a batch whose mirror write failed (seed 407).
        let adopted_unmirrored = adopted_unmirrored || self.disk.mirror_write_failed && self.cannot_repair;
        let mirror_damaged = adopted_unmirrored || self.ledger.has_corruption_in(mirror_first, mirror_end);
        !(hits_tail && (hits_mirror || mirror_damaged) || hits_mirror && tail_damaged)
    }

    /// The blocks of every batch that may be the last acknowledged one at the next crash.
    fn tail_candidates(&self) -> Vec<(u64, u64)> {
        let log = quill_core::format::LOG_START_BLOCK..self.disk.log_end_block;
        let mut tails = self.disk.unsynced_intended_ranges();
        tails.retain(|(first, _)| log.contains(first));
        tails.extend(self.disk.recent_durable_log_writes.iter().copied());
        tails.extend(self.disk.adopted_tails.iter().map(|tail| (tail.first, tail.end)));
        tails
    }

    fn mirror_region(&self) -> (u64, u64) {
        let first = self.disk.log_end_block;
        (
            first,
            first
                + quill_core::format::superblock::mirror_blocks(
                    quill_core::format::superblock::new_volume_mirror_slots(self.mirrored),
                    self.batch_blocks_max,
                ),
        )
    }
}

impl crate::runner::Sim {
    /// The budget as it stands now.
    pub(crate) fn budget(&self) -> BudgetView<'_> {
        BudgetView {
            disk: &self.disk,
            ledger: &self.faults.ledger,
            mirrored: self.knobs.mirrored,
            batch_blocks_max: self.knobs.batch_blocks_max,
            cannot_repair: self.recovering || self.opened_read_only,
        }
    }

    /// Whether damage on the blocks `first..end` stays within the budget (see [`BudgetView::within`]).
    pub(crate) fn corruption_within_budget(&self, first: u64, end: u64, new_log_write: bool) -> bool {
        self.budget().within(first, end, new_log_write)
    }
}
