//! EXEC: a MULTI transaction's commands run one after another with nothing in between, over a
//! private view of their keys' values, and their writes go into the log as one batch (each
//! key's final state), so a crash keeps all of them or none. The view is filled first: from
//! memory, else by reading the values from disk. While any read is outstanding, *every* key of
//! the transaction is locked, those taken from memory too: a write to one of them in between
//! would be overwritten by the view's stale copy (a lost update). So nothing another client
//! does lands between the transaction's reads and its writes (strict serializability, as
//! Redis's EXEC). A command's error is its own reply and does not undo the others, as in Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::super::clients::{Executed, SlotState};
use super::super::commit::{AppendRefused, NewRecord};
use super::super::keyspace::{CompactIndex, Lookup};
use super::super::reads::{ReadJob, ReadPurpose};
use super::super::space::Writer;
use super::super::{ClientId, Engine};
use super::commands::{compute_read_modify_write, Change, RmwContext};
use super::expiry::{ttl_reply, Current};
use crate::command::{Reply, Request, SetCondition};
use crate::engine::keyspace::SharedKey;

/// The transaction's keys and their values as its commands see them (`None`: absent).
type View = BTreeMap<Vec<u8>, Option<Arc<[u8]>>>;

/// A key's state inside a transaction: its value and expiry time (`None`: absent).
type Entry = Option<(Arc<[u8]>, Option<u64>)>;

/// What the commands of a transaction wrote so far: each key's state, and which keys changed.
struct Scratch {
    view: BTreeMap<Vec<u8>, Entry>,
    written: BTreeSet<Vec<u8>>,
}

impl Scratch {
    fn value(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        self.entry(key).map(|(value, _)| value)
    }

    fn entry(&self, key: &[u8]) -> Entry {
        self.view.get(key).cloned().flatten()
    }

    fn current(&self, key: &[u8]) -> (Option<Arc<[u8]>>, Option<u64>) {
        match self.entry(key) {
            Some((value, expires_at_ms)) => (Some(value), expires_at_ms),
            None => (None, None),
        }
    }

    fn write(&mut self, key: &[u8], entry: Entry) {
        debug_assert!(self.view.contains_key(key), "every key of the transaction is in its view");
        self.view.insert(key.to_vec(), entry);
        self.written.insert(key.to_vec());
    }

    /// A new value, without an expiry time.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.write(key, Some((Arc::from(value), None)));
    }
}

impl Engine {
    /// Starts an EXEC: runs it now if every value it needs is in memory, else reads them.
    pub(super) fn start_exec(&mut self, client_id: ClientId, slot_id: u64, commands: Vec<Request>) -> Executed {
        self.start_view(client_id, slot_id, commands, false)
    }

    /// RENAME and COPY: one command over a view of its two keys, run as a transaction is.
    pub(super) fn start_single_view(&mut self, client_id: ClientId, slot_id: u64, request: Request) -> Executed {
        self.start_view(client_id, slot_id, vec![request], true)
    }

    fn start_view(&mut self, client_id: ClientId, slot_id: u64, commands: Vec<Request>, single: bool) -> Executed {
        let mut view = View::new();
        let mut reads = Vec::new();
        for key in transaction_keys(&commands) {
            let value = match self.keyspace.lookup(&key) {
                Lookup::Absent { .. } => None,
                Lookup::Pending { value, .. } => Some(value),
                Lookup::Durable(location) => match self.keyspace.cache.get(&key) {
                    Some(value) => Some(value),
                    None => {
                        reads.push((key, location));
                        continue;
                    }
                },
            };
            view.insert(key, value);
        }
        if reads.is_empty() {
            return self.finish_exec(client_id, slot_id, commands, view, single);
        }
        let mut locked: Vec<Vec<u8>> = view.keys().cloned().collect();
        locked.extend(reads.iter().map(|(key, _)| key.clone()));
        if self.shared.config.has_bug(crate::engine::PlantedBug::ExecViewUnlocked) {
            locked.retain(|key| !view.contains_key(key));
        }
        if self.shared.config.has_bug(crate::engine::PlantedBug::CopyIgnoresDestinationWhenCold) {
            if let [Request::Copy { source, destination, .. }] = commands.as_slice() {
                if reads.iter().any(|(key, _)| key == source) && view.contains_key(destination) {
                    view.insert(destination.clone(), None);
                }
            }
        }
        for key in &locked {
            self.clients.lock_key(key);
        }
        let reads_outstanding = u32::try_from(reads.len()).expect("a transaction's keys fit one frame");
        let view_sequence = view.keys().map(|key| self.keyspace.lookup(key).sequence()).max().unwrap_or(0);
        let state = SlotState::ExecReading {
            commands,
            single,
            values: view,
            locked,
            reads_outstanding,
            failure: None,
            view_sequence,
        };
        self.clients.slot_mut(client_id, slot_id).state = state;
        for (key, location) in reads {
            let job = ReadJob { client_id, slot_id, key, location, purpose: ReadPurpose::Exec };
            self.reads.queue(job, &mut self.shared);
        }
        Executed::Blocked
    }

    /// One of an EXEC's values arrived; with the last, the transaction runs (or fails whole).
    pub(super) fn on_exec_value(&mut self, job: &ReadJob, value: Result<Arc<[u8]>, Reply>) {
        let slot = self.clients.slot_mut(job.client_id, job.slot_id);
        let SlotState::ExecReading { values, reads_outstanding, failure, .. } = &mut slot.state else {
            unreachable!("an EXEC's read completes into its slot");
        };
        assert!(*reads_outstanding > 0, "an EXEC read is outstanding");
        match value {
            Ok(value) => _ = values.insert(job.key.clone(), Some(value)),
            Err(error) => _ = failure.get_or_insert(error),
        }
        *reads_outstanding -= 1;
        if *reads_outstanding > 0 {
            return;
        }
        let SlotState::ExecReading { commands, single, values, locked, failure, view_sequence, .. } =
            std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok()))
        else {
            unreachable!("checked above");
        };
        // A batch failing turns the engine read-only and drops its writes from memory: a value
        // the view took from memory may be one of them (seed 2574 heavy: an EXEC's GET showed
        // an APPEND answered "not durable").
        let view_failed = view_sequence > self.log.durable_sequence
            && self.shared.read_only.is_some()
            && !self.shared.config.has_bug(crate::engine::PlantedBug::ExecViewRevealsFailedBatch);
        if (failure.is_some() || view_failed) && !single {
            self.watches.unwatch(job.client_id);
        }
        let executed = match failure {
            Some(error) => self.clients.finish(job.client_id, job.slot_id, error, 0),
            None if view_failed => self.clients.finish_not_durable(job.client_id, job.slot_id),
            None => self.finish_exec(job.client_id, job.slot_id, commands, values, single),
        };
        if let Executed::Stalled = executed {
            // No room in the batch: it runs again from the start, reading afresh.
            self.clients.unexecute_blocked(job.client_id, job.slot_id);
        }
        for key in &locked {
            self.clients.unblock(job.client_id, key);
        }
        match executed {
            Executed::Stalled => self.clients.mark_stalled(job.client_id),
            Executed::Ran | Executed::Blocked => {
                self.run_client(job.client_id);
                self.wake_stalled();
            }
        }
    }

    /// Runs the commands over `view` and appends every key's final state in one batch.
    fn finish_exec(
        &mut self,
        client_id: ClientId,
        slot_id: u64,
        commands: Vec<Request>,
        view: View,
        single: bool,
    ) -> Executed {
        if single {
            return self.run_exec(client_id, slot_id, commands, view, true);
        }
        let keyspace = &self.keyspace;
        self.watches.check_expired(client_id, |key| keyspace.is_expired(key));
        if self.watches.is_dirty(client_id) {
            // A watched key changed since WATCH: nothing runs (a nil reply), as in Redis.
            self.watches.unwatch(client_id);
            // The change may not be durable yet: the reply that reveals it waits for it.
            let newest = self.log.newest_sequence;
            return self.clients.finish(client_id, slot_id, Reply::Array(None), newest);
        }
        let executed = self.run_exec(client_id, slot_id, commands, view, false);
        let forget = self.shared.config.has_bug(crate::engine::PlantedBug::StalledExecForgetsWatch);
        if !matches!(executed, Executed::Stalled) || forget {
            self.watches.unwatch(client_id); // EXEC forgets the watches (a stalled one runs again)
        }
        executed
    }

    fn run_exec(
        &mut self,
        client_id: ClientId,
        slot_id: u64,
        mut commands: Vec<Request>,
        view: View,
        single: bool,
    ) -> Executed {
        let observed = view.keys().map(|key| self.keyspace.lookup(key).sequence()).max().unwrap_or(0);
        // The keys read from disk were locked, so only time may have changed them since: a key
        // that expired meanwhile is absent.
        let view: BTreeMap<Vec<u8>, Entry> = view
            .into_iter()
            .map(|(key, value)| {
                let entry = value
                    .filter(|_| self.keyspace.lookup(&key).exists())
                    .map(|value| (value, self.keyspace.expiry_of(&key)));
                (key, entry)
            })
            .collect();
        let present_before: BTreeSet<Vec<u8>> =
            view.iter().filter(|(_, entry)| entry.is_some()).map(|(key, _)| key.clone()).collect();
        let mut scratch = Scratch { view, written: BTreeSet::new() };
        let replies: Vec<Reply> =
            commands.iter().map(|command| self.run_in_transaction(command, &mut scratch)).collect();
        debug_assert_eq!(replies.len(), commands.len());
        let mut new_entry_bytes = 0;
        let mut records = Vec::new();
        if self.shared.config.has_bug(crate::engine::PlantedBug::ExecWriteSetMissesKey) && scratch.written.len() > 1 {
            scratch.written.pop_last();
        }
        for key in &scratch.written {
            match (scratch.entry(key), present_before.contains(key)) {
                (None, false) => {} // absent before and after: nothing to log
                (None, true) => records.push(NewRecord::Delete { key }),
                (Some((value, expires_at_ms)), existed) => {
                    new_entry_bytes += if existed { 0 } else { CompactIndex::entry_bytes(key.len()) };
                    records.push(NewRecord::Put { key: SharedKey::from(&key[..]), value, expires_at_ms });
                }
            }
        }
        let reply = if single { replies.into_iter().next().expect("one command") } else { Reply::Array(Some(replies)) };
        if records.is_empty() {
            return self.clients.finish(client_id, slot_id, reply, observed);
        }
        if let Some(refusal) = self.index_full(new_entry_bytes) {
            drop(records);
            return self.clients.finish(client_id, slot_id, refusal, observed);
        }
        let puts = records.iter().any(|record| matches!(record, NewRecord::Put { .. }));
        let appended = self.append_records(&records, if puts { Writer::Put } else { Writer::Delete });
        if let Ok(sequence) = appended {
            self.apply_to_keyspace(&records, sequence);
        }
        drop(records);
        match appended {
            Ok(sequence) => {
                self.maybe_seal();
                self.clients.finish(client_id, slot_id, reply, sequence.max(observed))
            }
            Err(AppendRefused::BatchFull) => {
                let request = if single { commands.pop().expect("one command") } else { Request::Exec { commands } };
                self.clients.stall(client_id, slot_id, request)
            }
            Err(AppendRefused::Reply(error)) => self.clients.finish(client_id, slot_id, error, observed),
        }
    }

    /// One command of a transaction, over its view: the reply it gets.
    fn run_in_transaction(&self, command: &Request, scratch: &mut Scratch) -> Reply {
        if let Some(error) = self.validate(command) {
            return error;
        }
        let bulk = |value: Option<Arc<[u8]>>| Reply::Bulk(value.map(|value| value.to_vec()));
        match command {
            Request::Get { key } => bulk(scratch.value(key)),
            Request::MGet { keys } => Reply::Array(Some(keys.iter().map(|key| bulk(scratch.value(key))).collect())),
            Request::Exists { keys } => {
                Reply::Integer(keys.iter().filter(|key| scratch.value(key).is_some()).count() as i64)
            }
            Request::StrLen { key } => Reply::Integer(scratch.value(key).map_or(0, |value| value.len() as i64)),
            Request::Ping { message: None } => Reply::Simple("PONG".into()),
            Request::Ping { message: Some(message) } => Reply::Bulk(Some(message.clone())),
            // EXEC forgets the watches anyway.
            Request::Unwatch => Reply::ok(),
            Request::Rename { source, destination, only_if_absent } => {
                // The expiry time moves with the value.
                let Some(value) = scratch.entry(source) else { return Reply::error("ERR no such key") };
                if source == destination {
                    return if *only_if_absent { Reply::Integer(0) } else { Reply::ok() };
                }
                if *only_if_absent && scratch.value(destination).is_some() {
                    return Reply::Integer(0);
                }
                scratch.write(destination, Some(value));
                scratch.write(source, None);
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
                let Some(value) = scratch.entry(source) else { return Reply::Integer(0) };
                if !replace && scratch.value(destination).is_some() {
                    return Reply::Integer(0);
                }
                scratch.write(destination, Some(value));
                Reply::Integer(1)
            }
            Request::Set { key, value, condition } => {
                let present = scratch.value(key).is_some();
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => !present,
                    SetCondition::IfPresent => present,
                };
                if !allowed {
                    return Reply::Bulk(None);
                }
                scratch.put(key, value);
                Reply::ok()
            }
            Request::MSet { pairs } => {
                for (key, value) in pairs {
                    scratch.put(key, value);
                }
                Reply::ok()
            }
            Request::MSetNx { pairs } => {
                if pairs.iter().any(|(key, _)| scratch.value(key).is_some()) {
                    return Reply::Integer(0);
                }
                for (key, value) in pairs {
                    scratch.put(key, value);
                }
                Reply::Integer(1)
            }
            Request::Del { keys } => {
                let mut count = 0;
                for key in keys {
                    if scratch.value(key).is_some() {
                        scratch.write(key, None);
                        count += 1;
                    }
                }
                Reply::Integer(count)
            }
            read_modify_write if read_modify_write.read_modify_write_key().is_some() => {
                let key = read_modify_write.read_modify_write_key().expect("checked by the guard");
                let context = RmwContext {
                    now_ms: self.keyspace.now_unix_ms,
                    value_bytes_max: self.shared.config.value_bytes_max,
                };
                let (value, expires_at_ms) = scratch.current(key);
                let state = Current { value: value.as_deref(), expires_at_ms };
                match compute_read_modify_write(command, state, context) {
                    Ok((change, reply)) => {
                        match change {
                            Change::Unchanged => {}
                            Change::Put(value, expires_at_ms) => scratch.write(key, Some((value, expires_at_ms))),
                            Change::Delete => scratch.write(key, None),
                        }
                        reply
                    }
                    Err(error) => error,
                }
            }
            Request::Ttl { key, milliseconds, absolute } => {
                let (value, expires_at_ms) = scratch.current(key);
                ttl_reply(value.is_some(), expires_at_ms, self.keyspace.now_unix_ms, *milliseconds, *absolute)
            }
            // The server never queues these (`Request::allowed_in_transaction`).
            other => Reply::error(format!("ERR {} is not allowed inside MULTI", other.name().to_uppercase())),
        }
    }
}

/// Every key the commands name, once each.
fn transaction_keys(commands: &[Request]) -> BTreeSet<Vec<u8>> {
    let mut keys = BTreeSet::new();
    for command in commands {
        command.any_key(|key| {
            keys.insert(key.to_vec());
            false // every key, not the first
        });
    }
    keys
}
