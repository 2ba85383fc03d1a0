//! A client's request: refused, redirected to the leader, proposed (a write), or read through
//! ReadIndex.

use quill_core::{Reply, Request};
use raft::StateRole;

use crate::config::ClusterBug;
use crate::outbox::ReplyTo;
use crate::proposal::{self, Command, COMMANDS_PER_ENTRY_MAX};
use crate::replica::{PendingRead, Proposal, Replica};
use crate::{slot, RESERVED_KEY_PREFIX};

/// An entry's protobuf fields around its data, at most (index, term, type, context).
const ENTRY_OVERHEAD_BYTES_MAX: usize = 64;

impl Replica {
    pub(crate) fn handle_request(&mut self, to: ReplyTo, commands: Vec<Command>, transaction: bool) {
        let request = match self.parse(&commands, transaction) {
            Ok(request) => request,
            Err(reply) => return self.outbox.reply(to, reply),
        };
        if let Some(reason) = &self.halted {
            let text = format!("CLUSTERDOWN replica {} halted ({reason})", self.config.id);
            return self.outbox.reply(to, Reply::Error(text));
        }
        let serves_reads_anyway = self.config.has_bug(ClusterBug::FollowerServesReads) && self.raft.is_some();
        if !request.is_write() && self.role != StateRole::Leader && serves_reads_anyway {
            self.read_lane.push(&mut self.state_engine, to, request);
            return;
        }
        if self.raft.is_none() || self.role != StateRole::Leader {
            let reply = self.redirect_reply(&request);
            return self.outbox.reply(to, reply);
        }
        if request.is_write() {
            self.propose(to, &commands, &request, transaction);
        } else {
            self.read(to, request);
        }
    }

    /// The request as the engine would run it, or the error that refuses it here.
    fn parse(&self, commands: &[Command], transaction: bool) -> Result<Request, Reply> {
        if commands.is_empty() || commands.len() > COMMANDS_PER_ENTRY_MAX || (!transaction && commands.len() != 1) {
            return Err(Reply::error("ERR a request carries one command, or 1 to 1024 in a transaction"));
        }
        let bytes: usize = commands.iter().flatten().map(Vec::len).sum();
        // An entry is a value of the log engine (the arguments, their lengths and the entry's
        // own fields) and its commands run in one EXEC of the keyspace engine: a larger one
        // would be refused on every replica, at every start.
        let arguments: usize = commands.iter().map(Vec::len).sum();
        let encoding_bytes = 4 + 4 * commands.len() + 4 * arguments; // proposal.rs's lengths
        let log_limit = self.log_engine.value_bytes_max().saturating_sub(ENTRY_OVERHEAD_BYTES_MAX + encoding_bytes);
        let bytes_max = self.config.request_bytes_max.min(log_limit).min(self.state_engine.value_bytes_max());
        if bytes > bytes_max {
            return Err(Reply::error(format!("ERR request of {bytes} bytes is above the replicated limit")));
        }
        let mut parsed = Vec::with_capacity(commands.len());
        for command in commands {
            let request = quill_core::command::parse_request(command)?;
            if !request.allowed_in_transaction() || matches!(request, Request::Unwatch) {
                return Err(Reply::error(format!(
                    "ERR {} is not supported by a replicated QuillKV yet",
                    request.name()
                )));
            }
            if request.any_key(|key| key.starts_with(RESERVED_KEY_PREFIX)) {
                return Err(Reply::error("ERR keys starting with \\xffquill/ are reserved"));
            }
            parsed.push(request);
        }
        Ok(match transaction {
            true => Request::Exec { commands: parsed },
            false => parsed.pop().expect("one command"),
        })
    }

    fn propose(&mut self, to: ReplyTo, commands: &[Command], request: &Request, transaction: bool) {
        let raft = self.raft.as_mut().expect("a leader runs Raft");
        if raft.propose(Vec::new(), proposal::encode(commands)).is_err() {
            let reply = self.redirect_reply(request);
            return self.outbox.reply(to, reply);
        }
        let index = raft.raft.raft_log.last_index();
        let term = raft.raft.term;
        let is_plain_set = matches!(request, Request::Set { condition: quill_core::command::SetCondition::Always, .. });
        let proposal = Proposal {
            term,
            to,
            transaction_commands: transaction.then_some(commands.len()),
            answered: false,
            is_plain_set,
        };
        // A proposal of an earlier term at this index left this log; another leader may still
        // hold and commit it.
        if let Some(previous) = self.proposals.insert(index, proposal) {
            if !previous.answered {
                let text = format!("TRYAGAIN outcome unknown: entry {index} of term {} left this log", previous.term);
                self.outbox.reply(previous.to, Reply::Error(text));
            }
        }
    }

    fn read(&mut self, to: ReplyTo, request: Request) {
        let context = self.read_next;
        self.read_next += 1;
        let raft = self.raft.as_mut().expect("a leader runs Raft");
        let after_index = raft.raft.raft_log.last_index();
        // raft-rs 0.7 drops a ReadIndex silently while the leader has not committed an entry
        // of its own term: such reads wait here until it has.
        if raft.raft.commit_to_current_term() {
            raft.read_index(context.to_le_bytes().to_vec());
        } else {
            self.reads_deferred.push(context);
        }
        let read = PendingRead { to, request, asked_at_tick: self.raft_ticks, after_index };
        self.reads_pending.insert(context, read);
    }

    /// Asks the reads deferred until the leader committed in its term, once it has.
    pub(crate) fn ask_deferred_reads(&mut self) -> bool {
        let Some(raft) = self.raft.as_mut() else { return false };
        if self.reads_deferred.is_empty() || self.role != StateRole::Leader || !raft.raft.commit_to_current_term() {
            return false;
        }
        for context in std::mem::take(&mut self.reads_deferred) {
            if self.reads_pending.contains_key(&context) {
                raft.read_index(context.to_le_bytes().to_vec());
            }
        }
        true
    }

    /// MOVED to the leader this replica knows, for the request's first key; CLUSTERDOWN when
    /// it knows none.
    pub(crate) fn redirect_reply(&self, request: &Request) -> Reply {
        let leader = self.leader_id();
        let address = self.config.address_of(leader);
        match address {
            Some(address) if leader != self.config.id => {
                Reply::Error(format!("MOVED {} {address}", slot::key_slot(first_key(request))))
            }
            _ => Reply::error("CLUSTERDOWN The cluster is down: no leader is known"),
        }
    }
}

/// The first key a request names (an EXEC's: its first command's that names one).
fn first_key(request: &Request) -> &[u8] {
    let mut first: &[u8] = &[];
    let mut take = |key| {
        first = key;
        true
    };
    match request {
        Request::Exec { commands } => {
            commands.iter().any(|command| command.any_key(&mut take));
        }
        other => {
            other.any_key(&mut take);
        }
    }
    first
}
