//! The space check: once faults stop and the clients are idle, compaction must finish its work
//! within a bounded number of ticks, and then the log must be within the engine's target (live
//! bytes times the seed's space-amplification percentage, plus a fixed slack) unless compaction
//! paused after a lap of the log gained nothing or halted at damage the faults explain. Also
//! the totals of compaction and checkpoint activity across the seed's restarts.

use quill_core::engine::HaltReason;
use quill_core::{CompactionState, EngineStats};

use crate::runner::{Sim, LIVENESS_TICKS_MAX};

/// Compaction and checkpoint activity over every engine instance of a seed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SpaceTotals {
    pub tail_advances: u64,
    pub records_moved: u64,
    pub checkpoints_written: u64,
    pub checkpoints_loaded: u64,
    pub checkpoints_rejected: u64,
    /// Crashes that hit compaction at work, or a checkpoint being written or recorded.
    pub crashes_while_compacting: u64,
    pub crashes_while_checkpointing: u64,
    /// Batches sealed while another was in flight (pipelined commits), and crashes that met
    /// two batches' log writes not yet durable.
    pub batches_pipelined: u64,
    pub crashes_with_batches_in_flight: u64,
    /// Reads that revealed a write before its reply, and the crashes aimed right after one.
    pub reveals_before_reply: u64,
    pub crashes_after_reveal: u64,
    /// Shared keys (isolation.rs): operations judged, linearizability partitions checked and
    /// those the search left undecided (its node limit), list transactions checked.
    pub shared_operations: u64,
    pub shared_partitions: u64,
    pub shared_partitions_undecided: u64,
    pub shared_transactions: u64,
    /// How the space check ended: within target, paused, halted, or not run (stopped early).
    pub ended_within_target: bool,
    pub ended_paused: bool,
    pub ended_halted: bool,
    /// The log's size over live bytes when the check ran (0 without live data).
    pub amplification_percent: u64,
}

impl SpaceTotals {
    pub fn add(&mut self, stats: &EngineStats) {
        self.tail_advances += stats.tail_advances;
        self.records_moved += stats.records_moved;
        self.checkpoints_written += stats.checkpoints_written;
        self.checkpoints_loaded += u64::from(stats.checkpoint_loaded);
        self.checkpoints_rejected += u64::from(stats.checkpoint_rejected.is_some());
        self.batches_pipelined += stats.batches_pipelined;
    }

    pub fn merge(&mut self, other: &SpaceTotals) {
        self.tail_advances += other.tail_advances;
        self.records_moved += other.records_moved;
        self.checkpoints_written += other.checkpoints_written;
        self.checkpoints_loaded += other.checkpoints_loaded;
        self.checkpoints_rejected += other.checkpoints_rejected;
        self.crashes_while_compacting += other.crashes_while_compacting;
        self.crashes_while_checkpointing += other.crashes_while_checkpointing;
        self.batches_pipelined += other.batches_pipelined;
        self.crashes_with_batches_in_flight += other.crashes_with_batches_in_flight;
        self.reveals_before_reply += other.reveals_before_reply;
        self.crashes_after_reveal += other.crashes_after_reveal;
        self.shared_operations += other.shared_operations;
        self.shared_partitions += other.shared_partitions;
        self.shared_partitions_undecided += other.shared_partitions_undecided;
        self.shared_transactions += other.shared_transactions;
    }
}

impl Sim {
    /// Runs with faults off until compaction has nothing left to do, then checks the log's size.
    pub(crate) fn settle_compaction(&mut self) {
        let deadline = self.tick + LIVENESS_TICKS_MAX;
        while self.is_running() && self.tick < deadline && self.engine().is_ready() {
            if self.engine().read_only_reason().is_some()
                || self.engine().compaction_state() != CompactionState::Working
            {
                break;
            }
            self.step();
        }
        if !self.is_running() || !self.engine().is_ready() || self.engine().read_only_reason().is_some() {
            return;
        }
        self.check_space_report();
        let space = self.engine().space();
        self.space.amplification_percent = (space.log_used_bytes * 100).checked_div(space.live_bytes).unwrap_or(0);
        match self.engine().compaction_state() {
            CompactionState::Idle => self.check_within_target(),
            CompactionState::Paused => self.space.ended_paused = true,
            CompactionState::Halted if self.compaction_halt_explained() => self.space.ended_halted = true,
            CompactionState::Halted => {
                let reason = self.engine().compaction_halted().map(ToString::to_string).unwrap_or_default();
                self.checker.fail("compaction halted with no fault that explains it", b"", "running".into(), reason);
            }
            CompactionState::Working => {
                let state = self.engine().debug_state();
                self.checker.fail(
                    format!("liveness: compaction still working {LIVENESS_TICKS_MAX} ticks after faults stopped"),
                    b"",
                    "idle".into(),
                    state,
                );
            }
        }
    }

    /// Compaction halts at corruption (beyond the budget), or after reads of the tail kept
    /// failing (injected read errors): it never drops data it could not read.
    pub(crate) fn compaction_halt_explained(&self) -> bool {
        let reads_failed = matches!(self.engine().compaction_halted(), Some(HaltReason::TailReadsFailed { .. }));
        self.faults.ledger.beyond_budget
            || reads_failed && self.faults.ledger.count(crate::faults::FaultKind::ReadError) > 0
    }

    fn check_within_target(&mut self) {
        let space = self.engine().space();
        let block_bytes = quill_core::BLOCK_BYTES as u64;
        let knobs = &self.knobs;
        // The engine's slack: its put reserve and a chunk (see space.rs), plus one batch.
        let chunk_blocks = u64::from(knobs.compaction_chunk_blocks.max(knobs.batch_blocks_max));
        let slack_blocks = 2 * chunk_blocks + 4 * u64::from(knobs.batch_blocks_max);
        let allowed =
            space.live_bytes * u64::from(knobs.space_amplification_percent) / 100 + slack_blocks * block_bytes;
        if space.log_used_bytes > allowed {
            let got = format!("{} bytes used for {} live bytes", space.log_used_bytes, space.live_bytes);
            self.checker.fail("space amplification above target once idle", b"", format!("at most {allowed}"), got);
        }
        self.space.ended_within_target = true;
    }
}
