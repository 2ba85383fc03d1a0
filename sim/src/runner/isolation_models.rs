//! The sequential specifications the linearizability checker holds shared keys to.
//!
//! - A single key (`s…`) is a string with an expiry time, known within an interval: every
//!   single-key command, expiry and TTL included, through the value-domain model's outcomes
//!   (domains.rs), which already follow time windows.
//! - The group (`g…`) is one object of several keys without expiry times: multi-key commands
//!   (MGET, MSET, MSETNX, DEL, EXISTS, RENAME, RENAMENX, COPY) and EXECs over them are single
//!   operations on it, so strict serializability of each command and EXEC is linearizability
//!   of this object.

use std::collections::BTreeMap;
use std::sync::Arc;

use quill_core::command::SetCondition;
use quill_core::{Reply, Request};

use crate::linearizability::Model;
use crate::runner::domains::{outcome, outcomes, Limits};
use crate::runner::expiring::{self, Timed, Window};

/// One recorded operation: the request, the reply (if seen) and the wall-clock window it ran in.
#[derive(Clone, Debug)]
pub struct Observed {
    pub request: Request,
    pub reply: Option<Reply>,
    pub window: Window,
    /// Whose WATCH this is, or whose EXEC: the client's connection since the last crash (a
    /// watch dies with either).
    pub watcher: u64,
    /// Refused whole (an EXEC answered READONLY, OOM, a failed read): it changed nothing but
    /// ended its watch.
    pub refused: bool,
    /// The watch side of a write whose outcome was never seen: applied in memory, it dirtied
    /// its keys' watchers then, even if its batch failed and its values show only after the
    /// next crash, or never (the write itself is another, optional, operation).
    pub touch_only: bool,
}

pub struct SingleKey {
    pub limits: Limits,
}

impl Model for SingleKey {
    type State = Timed;
    type Operation = Observed;

    fn step(&self, state: &Timed, operation: &Observed, observed: bool) -> Vec<Timed> {
        let mut next: Vec<Timed> = single_outcomes(state, &operation.request, operation.window, &self.limits)
            .into_iter()
            .filter(|(reply, _)| !observed || operation.reply.as_ref().is_some_and(|got| reply.matches(got)))
            .map(|(_, state)| state)
            .collect();
        next.sort();
        next.dedup();
        next
    }
}

/// The replies a single-key command may get in `state` within `window`, and the state after.
fn single_outcomes(
    state: &Timed,
    request: &Request,
    window: Window,
    limits: &Limits,
) -> Vec<(expiring::Expected, Timed)> {
    use expiring::Expected::Exact;
    let exact = |reply: Reply, next: Timed| (Exact(reply), next);
    match request {
        Request::Set { value, condition, .. } if *condition != SetCondition::Always => expiring::views(state, window)
            .into_iter()
            .map(|view| {
                let allowed = (*condition == SetCondition::IfAbsent) == view.value.is_none();
                if allowed {
                    exact(Reply::ok(), Timed { value: Some(value.clone()), expires: None })
                } else {
                    exact(Reply::Bulk(None), state.clone())
                }
            })
            .collect(),
        Request::Exists { keys } => expiring::views(state, window)
            .into_iter()
            .map(|view| exact(Reply::Integer(i64::from(view.value.is_some()) * keys.len() as i64), state.clone()))
            .collect(),
        Request::StrLen { .. } => expiring::views(state, window)
            .into_iter()
            .map(|view| exact(Reply::Integer(view.value.map_or(0, |value| value.len() as i64)), state.clone()))
            .collect(),
        other => outcomes(state, other, window, limits),
    }
}

pub struct Group {
    pub limits: Limits,
}

/// The group's keys and values (absent keys are missing).
/// Values are shared, so the search's many states cost no copies of them.
/// Hashed by content: an allocation's address would be reused once freed, and two different
/// states could then share a fingerprint (seen once with a pointer hash: a false violation).
/// Beside the values, each watcher's watched keys and whether one changed since its WATCH.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupState(pub BTreeMap<Vec<u8>, Arc<[u8]>>, pub BTreeMap<u64, (Vec<Vec<u8>>, bool)>);

impl GroupState {
    /// A write changed `keys`: every watcher of one of them is dirty (Redis's
    /// `signalModifiedKey`; the engine's `touch_watched`).
    fn touch(&mut self, keys: &std::collections::BTreeSet<Vec<u8>>) {
        for (watched, dirty) in self.1.values_mut() {
            *dirty |= watched.iter().any(|key| keys.contains(key));
        }
    }
}

impl std::ops::Deref for GroupState {
    type Target = BTreeMap<Vec<u8>, Arc<[u8]>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for GroupState {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Model for Group {
    type State = GroupState;
    type Operation = Observed;

    fn step(&self, state: &GroupState, operation: &Observed, observed: bool) -> Vec<GroupState> {
        let mut next = state.clone();
        let commands = match &operation.request {
            Request::Watch { keys } => {
                next.1.insert(operation.watcher, (keys.clone(), false));
                return allowed(next, observed.then_some((&operation.reply, Reply::ok())));
            }
            Request::Exec { commands } => commands.as_slice(),
            single => std::slice::from_ref(single),
        };
        // EXEC ends its watch; a dirty one aborts it (nil), as in Redis.
        let exec = matches!(operation.request, Request::Exec { .. });
        if operation.refused {
            next.1.remove(&operation.watcher);
            return vec![next];
        }
        if exec && next.1.remove(&operation.watcher).is_some_and(|(_, dirty)| dirty) {
            return allowed(next, observed.then_some((&operation.reply, Reply::Array(None))));
        }
        let before = next.0.clone();
        let mut written = std::collections::BTreeSet::new();
        let mut replies: Vec<Reply> =
            commands.iter().map(|command| group_command(&mut next, command, &self.limits, &mut written)).collect();
        // A key absent before and after writes nothing (no record, no touch).
        written.retain(|key| before.contains_key(key) || next.0.contains_key(key));
        next.touch(&written);
        if operation.touch_only {
            let mut touched = state.clone();
            touched.touch(&written);
            return vec![touched];
        }
        let reply = if exec { Reply::Array(Some(replies)) } else { replies.pop().expect("one command") };
        allowed(next, observed.then_some((&operation.reply, reply)))
    }
}

/// `next`, if the reply seen (when one was) is the one expected.
fn allowed(next: GroupState, check: Option<(&Option<Reply>, Reply)>) -> Vec<GroupState> {
    match check {
        Some((seen, expected)) if seen.as_ref() != Some(&expected) => Vec::new(),
        _ => vec![next],
    }
}

/// One command over the group, as Redis runs it: its reply, and `state` changed in place.
/// `written` gathers the keys it wrote (a changed value, or a key set or deleted).
pub fn group_command(
    state: &mut GroupState,
    command: &Request,
    limits: &Limits,
    written: &mut std::collections::BTreeSet<Vec<u8>>,
) -> Reply {
    let values_before = state.0.clone();
    let reply = group_command_values(state, command, limits);
    let touched = |key: &Vec<u8>| values_before.get(key) != state.0.get(key) || wrote_regardless(command, &reply, key);
    command.any_key(|key| {
        if touched(&key.to_vec()) {
            written.insert(key.to_vec());
        }
        false
    });
    reply
}

/// Whether `command` wrote `key` even if the value came out the same: SET, MSET and GETSET
/// that applied, INCRBY 0, APPEND of nothing, COPY onto an equal value (each writes a record,
/// and Redis signals the key modified).
fn wrote_regardless(command: &Request, reply: &Reply, key: &Vec<u8>) -> bool {
    match (command, reply) {
        (_, Reply::Error(_)) => false,
        (Request::Set { .. }, Reply::Simple(_)) => true,
        (Request::MSet { .. }, _) => true,
        (Request::MSetNx { .. }, Reply::Integer(1)) => true,
        (Request::GetSet { condition: SetCondition::Always, .. }, _) => true,
        (Request::IncrBy { .. } | Request::Append { .. }, Reply::Integer(_)) => true,
        (Request::Copy { destination, .. }, Reply::Integer(1)) => destination == key,
        // RENAME of a key onto itself writes nothing (Redis returns before signalling).
        (Request::Rename { source, destination, .. }, Reply::Simple(_) | Reply::Integer(1)) => source != destination,
        _ => false,
    }
}

fn group_command_values(state: &mut GroupState, command: &Request, limits: &Limits) -> Reply {
    let present = |state: &GroupState, key: &[u8]| state.contains_key(key);
    match command {
        Request::Get { key } => Reply::Bulk(state.get(key).map(|value| value.to_vec())),
        Request::MGet { keys } => {
            Reply::Array(Some(keys.iter().map(|key| Reply::Bulk(state.get(key).map(|value| value.to_vec()))).collect()))
        }
        Request::Exists { keys } => Reply::Integer(keys.iter().filter(|key| present(state, key)).count() as i64),
        Request::StrLen { key } => Reply::Integer(state.get(key).map_or(0, |value| value.len() as i64)),
        Request::Set { key, value, condition } => {
            let allowed = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !present(state, key),
                SetCondition::IfPresent => present(state, key),
            };
            if !allowed {
                return Reply::Bulk(None);
            }
            state.insert(key.clone(), Arc::from(value.as_slice()));
            Reply::ok()
        }
        Request::MSet { pairs } => {
            for (key, value) in pairs {
                state.insert(key.clone(), Arc::from(value.as_slice()));
            }
            Reply::ok()
        }
        Request::MSetNx { pairs } => {
            if pairs.iter().any(|(key, _)| present(state, key)) {
                return Reply::Integer(0);
            }
            for (key, value) in pairs {
                state.insert(key.clone(), Arc::from(value.as_slice()));
            }
            Reply::Integer(1)
        }
        Request::Del { keys } => {
            Reply::Integer(keys.iter().filter(|key| state.remove(key.as_slice()).is_some()).count() as i64)
        }
        Request::Rename { source, destination, only_if_absent } => {
            let Some(value) = state.get(source).cloned() else { return Reply::error("ERR no such key") };
            if source == destination {
                return if *only_if_absent { Reply::Integer(0) } else { Reply::ok() };
            }
            if *only_if_absent && present(state, destination) {
                return Reply::Integer(0);
            }
            state.remove(source);
            state.insert(destination.clone(), value);
            if *only_if_absent {
                Reply::Integer(1)
            } else {
                Reply::ok()
            }
        }
        Request::Copy { source, destination, replace } => {
            if source == destination {
                return Reply::error("ERR source and destination objects are the same");
            }
            let Some(value) = state.get(source).cloned() else { return Reply::Integer(0) };
            if !replace && present(state, destination) {
                return Reply::Integer(0);
            }
            state.insert(destination.clone(), value);
            Reply::Integer(1)
        }
        Request::GetSet { key, value, condition } => {
            let old = state.get(key).map(|value| value.to_vec());
            let allowed = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => old.is_none(),
                SetCondition::IfPresent => old.is_some(),
            };
            if allowed {
                state.insert(key.clone(), Arc::from(value.as_slice()));
            }
            Reply::Bulk(old)
        }
        Request::GetDel { key } => Reply::Bulk(state.remove(key).map(|value| value.to_vec())),
        in_place @ (Request::IncrBy { key, .. } | Request::Append { key, .. } | Request::SetRange { key, .. }) => {
            let (reply, value) = outcome(&state.get(key).map(|value| value.to_vec()), in_place, limits);
            match value {
                Some(value) => state.insert(key.clone(), Arc::from(value)),
                None => state.remove(key),
            };
            reply
        }
        other => unreachable!("the group workload sends no {}", other.name()),
    }
}
