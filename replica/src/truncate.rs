//! Truncating the Raft log, as TiKV's CompactLog does: the leader proposes an entry naming the
//! first index to keep, no higher than what every replica has persisted (their `matched`
//! index) and what it has applied; each replica that applies the entry drops the entries
//! before that index from raft-rs's storage and from its log volume. No replica ever needs an
//! entry another has dropped, so no snapshot is sent (a replica whose volume is lost would
//! need one: not built yet, docs/replication.md).

use raft::StateRole;

use crate::raft_log;
use crate::ready::TRUNCATION_CONTEXT;
use crate::replica::{LogTag, Replica};

impl Replica {
    /// On the leader, after an apply: proposes a truncation when the log has grown enough.
    pub(crate) fn maybe_propose_truncation(&mut self) {
        if self.truncation_proposed || self.role != StateRole::Leader {
            return;
        }
        let Some(raft) = self.raft.as_mut() else { return };
        let matched_min = raft.raft.prs().iter().map(|(_, progress)| progress.matched).min().unwrap_or(0);
        // A margin below what every replica holds: when a replica that restarted with entries
        // the others replaced rejects an append, raft-rs walks back over a few entries below
        // its `matched` index to find where the logs agree (seed 61 of 3 heavy replicas: with
        // no margin, the leader needed entry 214 after truncating to 215, and sent a snapshot).
        let margin = match self.config.has_bug(crate::ClusterBug::TruncateWithoutMargin) {
            true => 0,
            false => self.config.truncate_after_entries / 2,
        };
        let first = matched_min.min(self.applied).saturating_sub(margin);
        if first < self.log_first_index + self.config.truncate_after_entries {
            return;
        }
        if raft.propose(TRUNCATION_CONTEXT.to_vec(), first.to_le_bytes().to_vec()).is_ok() {
            self.truncation_proposed = true;
        }
    }

    /// A truncation entry applied: entries before `first` go.
    pub(crate) fn truncate_log(&mut self, first: u64) {
        self.truncation_proposed = false;
        if first <= self.log_first_index {
            return;
        }
        let Some(raft) = self.raft.as_mut() else { return };
        assert!(first <= self.applied, "a truncation past the applied index {}", self.applied);
        raft.mut_store().wl().compact(first).expect("compacting applied entries");
        let requests = raft_log::truncate_requests(self.log_first_index, first);
        self.log_first_index = first;
        for request in requests {
            self.log_lane.push(&mut self.log_engine, LogTag::Truncate, request);
        }
    }
}
