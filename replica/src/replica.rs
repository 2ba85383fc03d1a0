//! The replica's state and its inputs and outputs; the work is in load.rs (open), ready.rs
//! (raft-rs's Ready), requests.rs (clients) and apply.rs (committed entries).

use std::collections::{BTreeMap, VecDeque};

use quill_core::engine::ClientId;
use quill_core::{Engine, IoCompletion, IoRequest, Reply, Request};
use raft::eraftpb::Message;
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};

use crate::config::ReplicaConfig;
use crate::lane::Lane;
use crate::load::Load;
use crate::outbox::{Outbox, ReplyTo};
use crate::proposal::Command;

/// Which of a replica's two volumes an I/O is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Volume {
    /// The Raft log and hard state.
    Log,
    /// The keyspace.
    State,
}

/// The replica's part in the cluster, as far as it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Its engines are opening or it is reading its Raft state back.
    Opening,
    Follower,
    Candidate,
    Leader,
    /// It stopped (a failed write, a refused open): only a restart brings it back.
    Halted,
}

/// The log engine's lane carries a Ready's writes and the open's reads.
pub(crate) enum LogTag {
    Persist { number: u64 },
    LoadHardState,
    LoadFirstIndex,
    Truncate,
    LoadEntry { index: u64 },
    Cleanup,
}

/// The keyspace engine's apply lane carries committed entries and the open's read of the
/// applied index.
pub(crate) enum ApplyTag {
    /// The oldest apply group in flight (`Replica::apply_groups`).
    Group,
    LoadApplied,
}

/// A Ready being made durable: the messages that wait for it.
pub(crate) struct Persist {
    pub number: u64,
    pub requests_left: usize,
    pub messages: Vec<Message>,
    /// Its last entry's index, if it had entries.
    pub last_index: Option<u64>,
}

/// A write proposed by this replica, waiting for its entry to apply.
pub(crate) struct Proposal {
    pub term: u64,
    pub to: ReplyTo,
    /// Commands in the entry; `None`: one command, answered with its own reply, not an array.
    pub transaction_commands: Option<usize>,
    /// A reply already went (only under a planted bug).
    pub answered: bool,
    pub is_plain_set: bool,
}

/// A read waiting for its ReadIndex.
pub(crate) struct PendingRead {
    pub to: ReplyTo,
    pub request: Request,
    pub asked_at_tick: u64,
    /// The log's last index when the read arrived: it runs only once that is applied, so a
    /// read sees every write its connection sent before it (Redis's order on a connection).
    pub after_index: u64,
}

pub struct Replica {
    pub(crate) config: ReplicaConfig,
    pub(crate) log_engine: Engine,
    pub(crate) state_engine: Engine,
    pub(crate) raft: Option<RawNode<MemStorage>>,
    pub(crate) load: Option<Load>,
    pub(crate) halted: Option<String>,
    pub(crate) log_lane: Lane<LogTag>,
    pub(crate) apply_lane: Lane<ApplyTag>,
    pub(crate) read_lane: Lane<ReplyTo>,
    pub(crate) persists: VecDeque<Persist>,
    /// The highest entry index whose key may be in the log engine.
    pub(crate) durable_last_index: u64,
    /// The log's first entry kept by the last truncation (1: never truncated).
    pub(crate) log_first_index: u64,
    /// A truncation this replica proposed as leader and has not seen applied.
    pub(crate) truncation_proposed: bool,
    pub(crate) proposals: BTreeMap<u64, Proposal>,
    pub(crate) reads_pending: BTreeMap<u64, PendingRead>,
    /// Reads not yet asked of raft-rs: the leader has not committed in its term.
    pub(crate) reads_deferred: Vec<u64>,
    /// Reads whose index is known, waiting for the apply to reach it (indexes never decrease).
    pub(crate) reads_ready: VecDeque<(u64, ReplyTo, Request)>,
    pub(crate) read_next: u64,
    /// Entries applied (their EXEC answered) up to here; queued up to `apply_submitted`.
    pub(crate) applied: u64,
    pub(crate) apply_submitted: u64,
    pub(crate) apply_queue: VecDeque<raft::eraftpb::Entry>,
    /// Applies in flight, oldest first (one, but for a planted bug).
    pub(crate) apply_groups: VecDeque<crate::apply::ApplyGroup>,
    pub(crate) messages: VecDeque<Message>,
    pub(crate) outbox: Outbox,
    pub(crate) raft_ticks: u64,
    pub(crate) role: StateRole,
}

/// Internal clients of the engines (user clients never reach an engine directly).
const LOG_CLIENT: ClientId = 1;
const APPLY_CLIENT: ClientId = 1;
const READ_CLIENT: ClientId = 2;
/// Turns of the pump's loop at most per input: each turn drains what the last produced.
const PUMP_TURNS_MAX: usize = 100_000;

impl Replica {
    /// A replica over its two engines, each formatted or opened by the caller, with
    /// `Config::hand_out_index_work` off (the replica drives no index work of its own) and a
    /// client pipeline limit of at least 16 (its lanes).
    pub fn new(config: ReplicaConfig, log_engine: Engine, state_engine: Engine) -> Replica {
        let log_lane = Lane::new(LOG_CLIENT, 16);
        let apply_lane = Lane::new(APPLY_CLIENT, 16);
        let read_lane = Lane::new(READ_CLIENT, 16);
        let mut replica = Replica {
            config,
            log_engine,
            state_engine,
            raft: None,
            load: None,
            halted: None,
            log_lane,
            apply_lane,
            read_lane,
            persists: VecDeque::new(),
            durable_last_index: 0,
            log_first_index: 1,
            truncation_proposed: false,
            proposals: BTreeMap::new(),
            reads_pending: BTreeMap::new(),
            reads_deferred: Vec::new(),
            reads_ready: VecDeque::new(),
            read_next: 0,
            applied: 0,
            apply_submitted: 0,
            apply_queue: VecDeque::new(),
            apply_groups: VecDeque::new(),
            messages: VecDeque::new(),
            outbox: Outbox::default(),
            raft_ticks: 0,
            role: StateRole::Follower,
        };
        replica.pump();
        replica
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Input: one client request: a command, or (`transaction`) the commands of one EXEC.
    /// Proposals and reads wait for the next [`Replica::tick`] to go out in one Ready with the
    /// turn's others (one log write and one append per peer for all of them); refusals and
    /// redirects are answered at once.
    pub fn submit(&mut self, client: ClientId, commands: Vec<Command>, transaction: bool) {
        let to = self.outbox.assign(client);
        self.handle_request(to, commands, transaction);
        self.drain_engine_replies();
    }

    /// Input: a Raft message from a peer. Messages for another replica, or arriving while this
    /// one opens or is halted, are dropped (the network may lose any message anyway).
    pub fn step(&mut self, message: Message) {
        if message.to != self.config.id {
            return;
        }
        if let Some(raft) = self.raft.as_mut() {
            // An error is a message raft-rs ignores (a stale or unknown peer's): a lost message.
            let _ = raft.step(message);
        }
        // The Ready waits for the turn's `tick`, with the other messages the turn brought.
    }

    pub fn complete(&mut self, volume: Volume, completion: IoCompletion) {
        match volume {
            Volume::Log => self.log_engine.complete(completion),
            Volume::State => self.state_engine.complete(completion),
        }
        self.pump();
    }

    /// Input: the end of the driver's loop turn, with its monotonic and Unix times: the turn's
    /// requests and messages make one Ready here. Call it after every turn that had input.
    pub fn tick(&mut self, now_ms: u64, unix_ms: u64) {
        for engine in [&mut self.log_engine, &mut self.state_engine] {
            engine.set_unix_time_ms(unix_ms);
            engine.tick(now_ms);
        }
        self.pump();
    }

    /// Input: one tick of Raft's clock (elections, heartbeats, read timeouts).
    pub fn raft_tick(&mut self) {
        self.raft_ticks += 1;
        if let Some(raft) = self.raft.as_mut() {
            raft.tick();
        }
        self.expire_reads();
        self.pump();
    }

    pub fn disconnect(&mut self, client: ClientId) {
        self.outbox.disconnect(client);
    }

    pub fn poll_io(&mut self) -> Option<(Volume, IoRequest)> {
        if let Some(request) = self.log_engine.poll_io() {
            return Some((Volume::Log, request));
        }
        self.state_engine.poll_io().map(|request| (Volume::State, request))
    }

    pub fn poll_message(&mut self) -> Option<Message> {
        self.messages.pop_front()
    }

    pub fn poll_reply(&mut self) -> Option<(ClientId, Reply)> {
        self.outbox.poll()
    }

    /// When the engines next want `tick` (see `Engine::poll_timeout`).
    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.log_engine.poll_timeout(), self.state_engine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn role(&self) -> Role {
        if self.halted.is_some() {
            return Role::Halted;
        }
        if self.raft.is_none() {
            return Role::Opening;
        }
        match self.role {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
            StateRole::Follower => Role::Follower,
        }
    }

    /// The leader this replica knows of (0: none).
    pub fn leader_id(&self) -> u64 {
        self.raft.as_ref().map_or(0, |raft| raft.raft.leader_id)
    }

    pub fn term(&self) -> u64 {
        self.raft.as_ref().map_or(0, |raft| raft.raft.term)
    }

    /// The log's first entry (above 1 once truncated).
    pub fn log_first_index(&self) -> u64 {
        self.log_first_index
    }

    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    pub fn commit_index(&self) -> u64 {
        self.raft.as_ref().map_or(0, |raft| raft.raft.raft_log.committed)
    }

    /// One line for traces and failure reports.
    pub fn debug_state(&self) -> String {
        let load = match &self.load {
            Some(load) => format!("loading ({} reads left)", load.reads_left()),
            None => "not loading".to_string(),
        };
        format!(
            "{:?}, {load}, log volume ready {} ({}), keyspace volume ready {} ({}), applied {}, \
             persists in flight {}, proposals {}, reads waiting {}",
            self.role(),
            self.log_engine.is_ready(),
            self.log_engine.debug_state(),
            self.state_engine.is_ready(),
            self.state_engine.debug_state(),
            self.applied,
            self.persists.len(),
            self.proposals.len(),
            self.reads_pending.len() + self.reads_ready.len()
        )
    }

    pub fn halt_reason(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    pub fn state_engine(&self) -> &Engine {
        &self.state_engine
    }

    pub fn log_engine(&self) -> &Engine {
        &self.log_engine
    }

    /// Drains the engines' replies and raft-rs's Ready until nothing more comes.
    pub(crate) fn pump(&mut self) {
        for _ in 0..PUMP_TURNS_MAX {
            let mut progress = self.drain_engine_replies();
            if self.halted.is_none() {
                progress |= self.check_engines();
                progress |= self.continue_load();
                progress |= self.handle_readies();
                progress |= self.ask_deferred_reads();
                progress |= self.start_ready_reads();
            }
            if !progress {
                return;
            }
        }
        panic!("replica {} pumped {PUMP_TURNS_MAX} turns without settling", self.config.id);
    }

    fn drain_engine_replies(&mut self) -> bool {
        let mut progress = false;
        while let Some((client, reply)) = self.log_engine.poll_reply() {
            progress = true;
            debug_assert_eq!(client, LOG_CLIENT);
            let tag = self.log_lane.on_reply(&mut self.log_engine).expect("a log reply in order");
            self.on_log_reply(tag, reply);
        }
        while let Some((client, reply)) = self.state_engine.poll_reply() {
            progress = true;
            if client == APPLY_CLIENT {
                let tag = self.apply_lane.on_reply(&mut self.state_engine).expect("an apply reply in order");
                self.on_apply_reply(tag, reply);
            } else {
                debug_assert_eq!(client, READ_CLIENT);
                let to = self.read_lane.on_reply(&mut self.state_engine).expect("a read reply in order");
                self.outbox.reply(to, reply);
            }
        }
        progress
    }

    /// An engine that failed to open or turned read-only stops the replica: it can no longer
    /// keep Raft's storage contract.
    fn check_engines(&mut self) -> bool {
        let mut failure = None;
        for (name, engine) in [("log", &self.log_engine), ("keyspace", &self.state_engine)] {
            if let Some(error) = engine.open_error() {
                failure = Some(format!("the {name} volume did not open: {error}"));
            } else if let Some(reason) = engine.read_only_reason() {
                failure = Some(format!("the {name} volume is read-only: {reason}"));
            }
        }
        let Some(reason) = failure else { return false };
        self.halt(reason);
        true
    }

    /// Stops the replica: what waits on it is answered, nothing more is sent.
    pub(crate) fn halt(&mut self, reason: String) {
        if self.halted.is_some() {
            return;
        }
        let unknown = format!("TRYAGAIN outcome unknown: replica {} halted ({reason})", self.config.id);
        for (_, proposal) in std::mem::take(&mut self.proposals) {
            if !proposal.answered {
                self.outbox.reply(proposal.to, Reply::Error(unknown.clone()));
            }
        }
        let refused = format!("CLUSTERDOWN replica {} halted ({reason})", self.config.id);
        for (_, read) in std::mem::take(&mut self.reads_pending) {
            self.outbox.reply(read.to, Reply::Error(refused.clone()));
        }
        for (_, to, _) in std::mem::take(&mut self.reads_ready) {
            self.outbox.reply(to, Reply::Error(refused.clone()));
        }
        self.messages.clear();
        self.raft = None;
        self.halted = Some(reason);
    }
}
