//! Opening a replica: once both engines are ready, the Raft log, the hard state and the applied
//! index are read back, and raft-rs's `RawNode` starts from them.

use quill_core::{Reply, Request};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{RawNode, ReadOnlyOption};

use crate::raft_log;
use crate::replica::{ApplyTag, LogTag, Replica};
use crate::APPLIED_INDEX_KEY;

/// The reads of an open in flight, and what they found.
#[derive(Default)]
pub(crate) struct Load {
    reads_left: usize,
    entries: Vec<Entry>,
    hard_state: HardState,
    /// The first entry a truncation kept (1: never truncated).
    first_index: u64,
    applied: u64,
    failed: Option<String>,
}

impl Load {
    pub(crate) fn reads_left(&self) -> usize {
        self.reads_left
    }
}

impl Replica {
    /// Starts the open's reads once both engines are ready; finishes it when they are back.
    pub(crate) fn continue_load(&mut self) -> bool {
        if self.raft.is_some() {
            return false;
        }
        match &self.load {
            None if self.log_engine.is_ready() && self.state_engine.is_ready() => {
                self.start_load();
                true
            }
            Some(load) if load.reads_left == 0 => {
                let load = self.load.take().expect("a load");
                match load.failed {
                    Some(reason) => self.halt(reason),
                    None => self.finish_load(load),
                }
                true
            }
            _ => false,
        }
    }

    fn start_load(&mut self) {
        let mut entry_keys: Vec<Vec<u8>> = self
            .log_engine
            .durable_index()
            .map(|(key, _)| key.to_vec())
            .filter(|key| raft_log::entry_index(key).is_some())
            .collect();
        entry_keys.sort();
        let mut load = Load { reads_left: entry_keys.len() + 3, first_index: 1, ..Load::default() };
        load.entries.reserve(entry_keys.len());
        self.load = Some(load);
        let hard_state = Request::Get { key: raft_log::HARD_STATE_KEY.to_vec() };
        self.log_lane.push(&mut self.log_engine, LogTag::LoadHardState, hard_state);
        let first_index = Request::Get { key: raft_log::FIRST_INDEX_KEY.to_vec() };
        self.log_lane.push(&mut self.log_engine, LogTag::LoadFirstIndex, first_index);
        for key in entry_keys {
            let index = raft_log::entry_index(&key).expect("an entry key");
            self.log_lane.push(&mut self.log_engine, LogTag::LoadEntry { index }, Request::Get { key });
        }
        let applied = Request::Get { key: APPLIED_INDEX_KEY.to_vec() };
        self.apply_lane.push(&mut self.state_engine, ApplyTag::LoadApplied, applied);
    }

    /// A read of the open came back.
    pub(crate) fn on_load_reply(&mut self, tag: &LogTag, reply: Reply) {
        let load = self.load.as_mut().expect("a load in progress");
        load.reads_left -= 1;
        let value = match reply {
            Reply::Bulk(Some(value)) => value,
            Reply::Bulk(None) => return,
            other => {
                load.failed.get_or_insert(format!("reading the Raft state back failed: {other:?}"));
                return;
            }
        };
        let decoded = match tag {
            LogTag::LoadHardState => raft_log::decode_hard_state(&value).map(|state| load.hard_state = state),
            LogTag::LoadFirstIndex => raft_log::decode_first_index(&value).map(|first| load.first_index = first),
            LogTag::LoadEntry { index } => {
                raft_log::decode_entry(&raft_log::entry_key(*index), &value).map(|entry| load.entries.push(entry))
            }
            _ => unreachable!("not a load tag"),
        };
        if let Err(error) = decoded {
            load.failed.get_or_insert(error.to_string());
        }
    }

    pub(crate) fn on_applied_loaded(&mut self, reply: Reply) {
        let load = self.load.as_mut().expect("a load in progress");
        load.reads_left -= 1;
        let parsed = match reply {
            Reply::Bulk(None) => Some(0),
            Reply::Bulk(Some(value)) => std::str::from_utf8(&value).ok().and_then(|text| text.parse().ok()),
            _ => None,
        };
        match parsed {
            Some(applied) => load.applied = applied,
            None => {
                load.failed.get_or_insert("the applied index does not read back as a number".to_string());
            }
        }
    }

    fn finish_load(&mut self, mut load: Load) {
        load.entries.sort_by_key(|entry| entry.index);
        let found: Vec<(u64, u64)> = load.entries.iter().map(|entry| (entry.index, entry.term)).take(12).collect();
        let (mut entries, leftover) = raft_log::usable_prefix(load.entries, load.first_index);
        let last_index = entries.last().map_or(load.first_index - 1, |entry| entry.index);
        if load.applied > last_index || (load.first_index > 1 && entries.is_empty()) {
            let first = load.first_index;
            return self.halt(format!(
                "the Raft log from {first} to {last_index} does not reach the applied index {} (found {found:?})",
                load.applied
            ));
        }
        if !leftover.is_empty() {
            for delete in raft_log::delete_requests(leftover) {
                self.log_lane.push(&mut self.log_engine, LogTag::Cleanup, delete);
            }
        }
        let mut hard_state = load.hard_state;
        // An entry applied was committed; the hard state recording that may not have been
        // written yet when the replica stopped.
        hard_state.commit = hard_state.commit.max(load.applied).min(last_index);
        let conf_state = ConfState::from((self.config.voters.clone(), vec![]));
        let storage = MemStorage::new_with_conf_state(conf_state.clone());
        {
            let mut core = storage.wl();
            if load.first_index > 1 {
                // A truncated log is anchored at its first entry, as at a snapshot of it.
                let anchor = entries.remove(0);
                let mut snapshot = Snapshot::default();
                snapshot.mut_metadata().index = anchor.index;
                snapshot.mut_metadata().term = anchor.term;
                snapshot.mut_metadata().set_conf_state(conf_state);
                core.apply_snapshot(snapshot).expect("a fresh storage takes any snapshot");
            }
            core.append(&entries).expect("a contiguous log");
            core.set_hardstate(hard_state);
        }
        let raft_config = self.raft_config(load.applied);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raft = RawNode::new(&raft_config, storage, &logger).expect("a valid Raft configuration");
        self.raft = Some(raft);
        self.durable_last_index = last_index;
        self.log_first_index = load.first_index;
        self.applied = load.applied;
        self.apply_submitted = load.applied;
    }

    fn raft_config(&self, applied: u64) -> raft::Config {
        let config = raft::Config {
            id: self.config.id,
            election_tick: self.config.election_ticks,
            heartbeat_tick: self.config.heartbeat_ticks,
            min_election_tick: self.config.election_ticks,
            max_election_tick: self.config.election_ticks + 1,
            applied,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            max_size_per_msg: 256 * 1024,
            max_inflight_msgs: 64,
            ..raft::Config::default()
        };
        config.validate().expect("a valid Raft configuration");
        config
    }
}
