//! Committed entries applied to the keyspace, and the reads that wait for the apply.

use quill_core::{Reply, Request};
use raft::eraftpb::Entry;

use crate::proposal;
use crate::ready::carries_commands;
use crate::replica::{ApplyTag, Replica};
use crate::APPLIED_INDEX_KEY;

impl Replica {
    /// Applies each entry past what was already submitted, in order: its commands and the
    /// applied index in one EXEC. `committed`: raft-rs said so (the planted apply-before-commit
    /// bug also applies entries that are only in the local log).
    pub(crate) fn apply_entries(&mut self, entries: Vec<Entry>, committed: bool) {
        debug_assert!(committed || self.config.has_bug(crate::ClusterBug::ApplyBeforeCommit));
        for entry in entries {
            if entry.index <= self.apply_submitted {
                continue;
            }
            assert_eq!(entry.index, self.apply_submitted + 1, "entries apply in order");
            self.apply_submitted = entry.index;
            let mut commands = Vec::new();
            if carries_commands(&entry) {
                match parse_entry(&entry.data) {
                    Ok(parsed) => commands = parsed,
                    Err(reason) => {
                        self.halt(format!("entry {} does not parse: {reason}", entry.index));
                        return;
                    }
                }
            }
            let applied = entry.index.to_string().into_bytes();
            commands.push(Request::Set {
                key: APPLIED_INDEX_KEY.to_vec(),
                value: applied,
                condition: quill_core::command::SetCondition::Always,
            });
            let tag = ApplyTag::Entry { index: entry.index, term: entry.term };
            self.apply_lane.push(&mut self.state_engine, tag, Request::Exec { commands });
        }
    }

    pub(crate) fn on_apply_reply(&mut self, tag: ApplyTag, reply: Reply) {
        if self.halted.is_some() {
            return;
        }
        let (index, term) = match tag {
            ApplyTag::LoadApplied => return self.on_applied_loaded(reply),
            ApplyTag::Entry { index, term } => (index, term),
        };
        let Reply::Array(Some(mut replies)) = reply else {
            // The keyspace refused the whole EXEC: a local failure (the volume full or
            // failing), never the entry's fault. Skipping it would fork this replica's state.
            return self.halt(format!("applying entry {index} failed: {reply:?}"));
        };
        debug_assert!(index == self.applied + 1);
        self.applied = index;
        if let Some(raft) = self.raft.as_mut() {
            raft.advance_apply_to(index.min(raft.raft.raft_log.committed));
        }
        replies.pop(); // the applied index's OK
        self.answer_proposals(index, term, replies);
    }

    /// The proposal at `index` gets its replies if the entry applied is the one it proposed;
    /// any proposal at or below `index` that is not was overwritten and will never apply.
    fn answer_proposals(&mut self, index: u64, term: u64, replies: Vec<Reply>) {
        let mut replies = Some(replies);
        while let Some((&proposed_index, _)) = self.proposals.first_key_value() {
            if proposed_index > index {
                break;
            }
            let proposal = self.proposals.pop_first().expect("a first").1;
            if proposal.answered {
                continue;
            }
            let reply = match replies.take() {
                Some(mut replies) if proposed_index == index && proposal.term == term => {
                    match proposal.transaction_commands {
                        None if replies.len() == 1 => replies.pop().expect("one reply"),
                        Some(count) if replies.len() == count => Reply::Array(Some(replies)),
                        _ => panic!("entry {index} gave {} replies for its proposal", replies.len()),
                    }
                }
                _ => Reply::Error(format!(
                    "TRYAGAIN not committed: entry {proposed_index} of term {} was replaced by a new leader's",
                    proposal.term
                )),
            };
            self.outbox.reply(proposal.to, reply);
        }
    }

    pub(crate) fn on_read_state(&mut self, context: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(context) else { return };
        let Some(read) = self.reads_pending.remove(&u64::from_le_bytes(bytes)) else { return };
        debug_assert!(self.reads_ready.back().is_none_or(|(last, _, _)| *last <= index));
        self.reads_ready.push_back((index, read.to, read.request));
    }

    /// Reads whose index the apply has reached run now, on the keyspace.
    pub(crate) fn start_ready_reads(&mut self) -> bool {
        let mut progress = false;
        while self.reads_ready.front().is_some_and(|(index, _, _)| *index <= self.applied) {
            let (_, to, request) = self.reads_ready.pop_front().expect("a front");
            self.read_lane.push(&mut self.state_engine, to, request);
            progress = true;
        }
        progress
    }

    /// The leader stepped down: reads waiting to confirm its role are refused.
    pub(crate) fn refuse_pending_reads(&mut self) {
        for (_, read) in std::mem::take(&mut self.reads_pending) {
            let reply = self.redirect_reply(&read.request);
            self.outbox.reply(read.to, reply);
        }
    }

    /// Reads whose ReadIndex never came (the leader lost its quorum) are refused.
    pub(crate) fn expire_reads(&mut self) {
        let deadline = self.config.read_wait_ticks_max;
        let now = self.raft_ticks;
        let expired: Vec<u64> = self
            .reads_pending
            .iter()
            .filter(|(_, read)| now - read.asked_at_tick > deadline)
            .map(|(context, _)| *context)
            .collect();
        for context in expired {
            let read = self.reads_pending.remove(&context).expect("listed");
            let text = format!("TRYAGAIN not committed: the read's ReadIndex did not come within {deadline} ticks");
            self.outbox.reply(read.to, Reply::Error(text));
        }
    }
}

fn parse_entry(data: &[u8]) -> Result<Vec<Request>, String> {
    let commands = proposal::decode(data).map_err(|error| error.to_string())?;
    commands
        .iter()
        .map(|command| quill_core::command::parse_request(command).map_err(|reply| format!("{reply:?}")))
        .collect()
}
