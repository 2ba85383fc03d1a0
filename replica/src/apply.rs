//! Committed entries applied to the keyspace, and the reads that wait for the apply.

use quill_core::{Reply, Request};
use raft::eraftpb::Entry;

use crate::proposal;
use crate::ready::carries_commands;
use crate::replica::{ApplyTag, Replica};
use crate::APPLIED_INDEX_KEY;

/// Commands in one apply at most (the engine runs an EXEC's commands in one batch).
const APPLY_COMMANDS_MAX: usize = 1024;

/// Committed entries applied together, as one EXEC.
pub(crate) struct ApplyGroup {
    /// Each entry's index, term and number of commands, in order.
    pub entries: Vec<(u64, u64, usize)>,
    /// A truncation among the entries: the first index to keep, once they are applied.
    pub truncate_to: Option<u64>,
    /// The EXEC, kept to run again if it fails whole with the engine still writable (a read
    /// error on a value it needed).
    pub request: Request,
    pub attempts: u32,
}

/// Times an apply runs at most before the replica halts.
const APPLY_ATTEMPTS_MAX: u32 = 3;

impl Replica {
    /// Queues entries past what was already queued, in order. `committed`: raft-rs said so
    /// (the planted apply-before-commit bug also queues entries only in the local log).
    pub(crate) fn apply_entries(&mut self, entries: Vec<Entry>, committed: bool) {
        debug_assert!(committed || self.config.has_bug(crate::ClusterBug::ApplyBeforeCommit));
        for entry in entries {
            if entry.index <= self.apply_submitted {
                continue;
            }
            assert_eq!(entry.index, self.apply_submitted + 1, "entries apply in order");
            self.apply_submitted = entry.index;
            self.apply_queue.push_back(entry);
        }
        self.start_apply();
    }

    /// Applies the queued entries, as many as fit, in one EXEC that also records the last
    /// one's index: all or none of them reach the keyspace, so the applied index never passes
    /// an entry that failed. One EXEC at a time: the next waits for this one's answer.
    pub(crate) fn start_apply(&mut self) {
        // The planted bug is the old pipeline: one EXEC per entry, several in flight, so a
        // later entry's applied index could pass one that failed (found by seed 110 heavy).
        let one_by_one = self.config.has_bug(crate::ClusterBug::ApplyPassesFailedEntry);
        let groups_max = if one_by_one { 16 } else { 1 };
        while self.apply_groups.len() < groups_max && !self.apply_queue.is_empty() && self.halted.is_none() {
            self.start_apply_group(one_by_one);
        }
    }

    fn start_apply_group(&mut self, one_entry: bool) {
        let bytes_max = self.state_engine.value_bytes_max().max(1);
        let (mut commands, mut group, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        let mut truncate_to = None;
        while let Some(entry) = self.apply_queue.front() {
            let parsed = match carries_commands(entry) {
                true => match parse_entry(&entry.data) {
                    Ok(parsed) => parsed,
                    Err(reason) => return self.halt(format!("entry {} does not parse: {reason}", entry.index)),
                },
                false => Vec::new(),
            };
            let fits = commands.len() + parsed.len() < APPLY_COMMANDS_MAX && bytes + entry.data.len() <= bytes_max;
            if !group.is_empty() && (!fits || one_entry) {
                break;
            }
            bytes += entry.data.len();
            truncate_to = crate::ready::truncation(entry).or(truncate_to);
            group.push((entry.index, entry.term, parsed.len()));
            commands.extend(parsed);
            self.apply_queue.pop_front();
        }
        let last_index = group.last().expect("one entry at least").0;
        commands.push(Request::Set {
            key: APPLIED_INDEX_KEY.to_vec(),
            value: last_index.to_string().into_bytes(),
            condition: quill_core::command::SetCondition::Always,
        });
        let request = Request::Exec { commands };
        self.apply_groups.push_back(ApplyGroup { entries: group, truncate_to, request: request.clone(), attempts: 1 });
        self.apply_lane.push(&mut self.state_engine, ApplyTag::Group, request);
    }

    pub(crate) fn on_apply_reply(&mut self, tag: ApplyTag, reply: Reply) {
        if self.halted.is_some() {
            return;
        }
        if let ApplyTag::LoadApplied = tag {
            return self.on_applied_loaded(reply);
        }
        let group = self.apply_groups.pop_front().expect("an apply in flight");
        let commands: usize = group.entries.iter().map(|(_, _, count)| count).sum();
        let replies = match reply {
            Reply::Array(Some(replies)) if replies.len() == commands + 1 && replies[commands] == Reply::ok() => replies,
            // The keyspace refused the EXEC: a local failure (the volume failing or full),
            // never the entries' fault. Skipping them would fork this replica's state.
            other => return self.on_apply_failed(group, other),
        };
        let mut replies = replies.into_iter();
        for (index, term, count) in group.entries {
            debug_assert_eq!(index, self.applied + 1);
            self.applied = index;
            let entry_replies: Vec<Reply> = replies.by_ref().take(count).collect();
            self.answer_proposals(index, term, entry_replies);
        }
        if let Some(first) = group.truncate_to {
            self.truncate_log(first);
        }
        if let Some(raft) = self.raft.as_mut() {
            // Equal to `applied` unless a planted bug applied past what raft-rs allows.
            let log = &raft.raft.raft_log;
            let allowed = self.applied.min(log.committed).min(log.persisted);
            raft.advance_apply_to(allowed.max(log.applied));
        }
        self.maybe_propose_truncation();
        self.start_apply();
    }

    /// An apply failed whole. With the keyspace still writable (a read it needed failed) and
    /// this the only apply in flight, nothing of it took effect: it runs again. Otherwise the
    /// replica halts.
    fn on_apply_failed(&mut self, mut group: ApplyGroup, reply: Reply) {
        let alone = self.apply_groups.is_empty();
        let writable = self.state_engine.read_only_reason().is_none();
        if alone && writable && group.attempts < APPLY_ATTEMPTS_MAX {
            group.attempts += 1;
            let request = group.request.clone();
            self.apply_groups.push_back(group);
            self.apply_lane.push(&mut self.state_engine, ApplyTag::Group, request);
            return;
        }
        let last = group.entries.last().map_or(0, |(index, _, _)| *index);
        self.halt(format!("applying entries up to {last} failed ({} attempts): {reply:?}", group.attempts));
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
        // Reads run in the order they came (ReadIndex answers in that order), each once the
        // apply has reached its index, the writes before it, and the read before it.
        let previous = self.reads_ready.back().map_or(0, |(last, _, _)| *last);
        let index = index.max(read.after_index).max(previous);
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
