//! raft-rs's Ready, handled as its documentation asks (see the crate documentation).

use quill_core::Reply;
use raft::eraftpb::{Entry, EntryType, Message};
use raft::StateRole;

use crate::config::ClusterBug;
use crate::raft_log;
use crate::replica::{LogTag, Persist, Replica};

/// Readies handled per pump turn at most (each turn drains the rest).
const READIES_PER_TURN_MAX: usize = 64;

impl Replica {
    pub(crate) fn handle_readies(&mut self) -> bool {
        let mut progress = false;
        for _ in 0..READIES_PER_TURN_MAX {
            let Some(raft) = self.raft.as_mut() else { return progress };
            if !raft.has_ready() {
                return progress;
            }
            progress = true;
            let mut ready = raft.ready();
            if let Some(soft) = ready.ss() {
                self.on_role(soft.raft_state);
            }
            self.send(ready.take_messages());
            if !ready.snapshot().is_empty() {
                let index = ready.snapshot().get_metadata().index;
                let log = &self.raft.as_ref().expect("running").raft.raft_log;
                let (first, last) = (log.first_index(), log.last_index());
                let reason = format!(
                    "a snapshot at index {index} arrived (this log holds {first} to {last}), and this replica cannot install one yet"
                );
                self.halt(reason);
                return true;
            }
            let entries = ready.take_entries();
            let hard_state = ready.hs().cloned();
            let raft = self.raft.as_mut().expect("running");
            if !entries.is_empty() {
                raft.mut_store().wl().append(&entries).expect("raft-rs hands out entries that fit its log");
            }
            if let Some(state) = &hard_state {
                raft.mut_store().wl().set_hardstate(state.clone());
            }
            let persisted_messages = ready.take_persisted_messages();
            let committed = ready.take_committed_entries();
            let read_states = ready.take_read_states();
            let number = ready.number();
            raft.advance_append_async(ready);
            if self.config.has_bug(ClusterBug::ApplyBeforeCommit) {
                self.apply_entries(entries.clone(), false);
            }
            self.persist(number, &entries, hard_state.as_ref(), persisted_messages);
            self.apply_entries(committed, true);
            for state in read_states {
                self.on_read_state(&state.request_ctx, state.index);
            }
        }
        progress
    }

    fn on_role(&mut self, role: StateRole) {
        let was_leader = self.role == StateRole::Leader;
        self.role = role;
        if was_leader && role != StateRole::Leader {
            self.refuse_pending_reads();
            self.reads_deferred.clear();
            self.truncation_proposed = false;
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.messages.extend(messages);
    }

    /// Writes a Ready's entries and hard state to the log engine; its persisted messages wait
    /// for that (and for every earlier Ready's writes).
    fn persist(
        &mut self,
        number: u64,
        entries: &[Entry],
        hard_state: Option<&raft::eraftpb::HardState>,
        mut messages: Vec<Message>,
    ) {
        if self.config.has_bug(ClusterBug::VoteSentBeforePersisted) {
            self.send(std::mem::take(&mut messages));
        }
        let stale = entries.last().and_then(|last| {
            (last.index < self.durable_last_index).then_some((last.index + 1, self.durable_last_index))
        });
        let last_index = entries.last().map(|entry| entry.index);
        if let Some(last) = last_index {
            self.durable_last_index = last;
        }
        let chunk_bytes = self.log_engine.value_bytes_max().max(1);
        let requests = raft_log::persist_requests(entries, hard_state, stale, chunk_bytes);
        self.persists.push_back(Persist { number, requests_left: requests.len(), messages, last_index });
        for request in requests {
            self.log_lane.push(&mut self.log_engine, LogTag::Persist { number }, request);
        }
        self.release_persisted();
    }

    pub(crate) fn on_log_reply(&mut self, tag: LogTag, reply: Reply) {
        if self.halted.is_some() {
            return;
        }
        match tag {
            LogTag::Persist { number } => {
                if !matches!(&reply, Reply::Array(Some(replies)) if !replies.iter().any(Reply::is_error)) {
                    self.halt(format!("a Raft log write failed: {reply:?}"));
                    return;
                }
                let persist =
                    self.persists.iter_mut().find(|persist| persist.number == number).expect("a Ready in flight");
                persist.requests_left -= 1;
                self.release_persisted();
            }
            LogTag::Cleanup | LogTag::Truncate => {
                if reply.is_error() {
                    self.halt(format!("deleting Raft entries (a truncation or a crash's leftover) failed: {reply:?}"));
                }
            }
            LogTag::LoadHardState | LogTag::LoadFirstIndex | LogTag::LoadEntry { .. } => {
                self.on_load_reply(&tag, reply)
            }
        }
    }

    /// Readies whose writes are all durable, in order: their messages go, raft-rs hears.
    fn release_persisted(&mut self) {
        while self.persists.front().is_some_and(|persist| persist.requests_left == 0) {
            let persist = self.persists.pop_front().expect("a front");
            self.send(persist.messages);
            if let Some(raft) = self.raft.as_mut() {
                raft.on_persist_ready(persist.number);
            }
            if let Some(last) = persist.last_index {
                self.on_locally_durable(last);
            }
        }
    }

    /// Entries up to `last` are in this replica's log. Correct replies wait for the apply;
    /// the planted bug answers a SET here.
    fn on_locally_durable(&mut self, last: u64) {
        if !self.config.has_bug(ClusterBug::AckBeforeMajority) || self.role != StateRole::Leader {
            return;
        }
        for proposal in self.proposals.range_mut(..=last).map(|(_, proposal)| proposal) {
            if proposal.is_plain_set && !proposal.answered {
                proposal.answered = true;
                self.outbox.reply(proposal.to, Reply::ok());
            }
        }
    }
}

/// Whether an entry carries a client's commands (not the empty entry a new leader appends,
/// nor a truncation).
pub(crate) fn carries_commands(entry: &Entry) -> bool {
    entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() && truncation(entry).is_none()
}

/// The context of an entry that truncates the log (TiKV's CompactLog): its data is the first
/// index to keep, 8 bytes little-endian.
pub(crate) const TRUNCATION_CONTEXT: &[u8] = b"quill/truncate-log";

/// The first index a truncation entry keeps.
pub(crate) fn truncation(entry: &Entry) -> Option<u64> {
    if entry.context.as_ref() != TRUNCATION_CONTEXT {
        return None;
    }
    Some(u64::from_le_bytes(entry.data.as_ref().try_into().ok()?))
}
