//! Executing one command against the logical keyspace, with Redis semantics.

use std::sync::Arc;

use super::super::clients::{Executed, SlotState};
use super::super::commit::{AppendRefused, NewRecord};
use super::super::keyspace::{CompactIndex, Lookup};
use super::super::reads::{ReadJob, ReadPurpose};
use super::super::space::Writer;
use super::super::{ClientId, Engine};
use super::expiry::{self, Current};
use crate::command::parse::{not_an_integer, parse_integer};
use crate::command::{Reply, Request, SetCondition};
use crate::engine::keyspace::SharedKey;
use crate::format::KEY_BYTES_MAX;

impl Engine {
    /// Executes one command of `client_id`, whose slot is `slot_id`.
    pub(in crate::engine) fn execute(&mut self, client_id: ClientId, slot_id: u64, request: Request) -> Executed {
        if let Some(reply) = self.validate(&request) {
            return self.clients.finish(client_id, slot_id, reply, 0);
        }
        // A read-only engine refuses writes before running them, as Redis does: no read of the
        // current value, no key lock (a hot key's writers would queue behind one another's reads).
        if let Some(reason) = self.shared.read_only.as_ref().filter(|_| request.is_write()) {
            let reply = Reply::error(format!("READONLY {reason}"));
            if matches!(request, Request::Exec { .. }) {
                // Every EXEC ends the transaction, a refused one too (Redis's discard): the
                // watches must not outlive it and abort a later EXEC.
                self.watches.unwatch(client_id);
            }
            return self.clients.finish(client_id, slot_id, reply, 0);
        }
        if self.touches_locked_key(&request) {
            return self.clients.stall(client_id, slot_id, request);
        }
        self.expire_accessed_keys(&request);
        match request {
            Request::Get { key } => self.start_reads(client_id, slot_id, &[key], false),
            Request::MGet { keys } => self.start_reads(client_id, slot_id, &keys, true),
            Request::Exists { keys } => {
                let lookups: Vec<Lookup> = keys.iter().map(|key| self.keyspace.lookup(key)).collect();
                let count = lookups.iter().filter(|lookup| lookup.exists()).count() as i64;
                let wait = lookups.iter().map(Lookup::sequence).max().unwrap_or(0);
                self.clients.finish(client_id, slot_id, Reply::Integer(count), wait)
            }
            Request::StrLen { key } => {
                let lookup = self.keyspace.lookup(&key);
                let length = match &lookup {
                    Lookup::Absent { .. } => 0,
                    Lookup::Pending { value, .. } => value.len(),
                    Lookup::Durable(location) => {
                        location.value_bytes(key.len(), self.keyspace.index.expiry(&key).is_some())
                    }
                };
                self.clients.finish(client_id, slot_id, Reply::Integer(length as i64), lookup.sequence())
            }
            Request::Ttl { key, milliseconds, absolute } => {
                let lookup = self.keyspace.lookup(&key);
                let expiry = self.keyspace.expiry_of(&key);
                let reply =
                    expiry::ttl_reply(lookup.exists(), expiry, self.keyspace.now_unix_ms, milliseconds, absolute);
                self.clients.finish(client_id, slot_id, reply, lookup.sequence())
            }
            Request::DbSize => {
                let count = self.keyspace.live_keys as i64;
                self.clients.finish(client_id, slot_id, Reply::Integer(count), self.log.newest_sequence)
            }
            Request::Scan { cursor, pattern, count, only_type } => {
                let (reply, wait) = self.scan_step(cursor, count, pattern.as_deref(), only_type.as_deref());
                self.clients.finish(client_id, slot_id, reply, wait)
            }
            Request::Keys { pattern } => {
                let (reply, wait) = self.all_keys(&pattern);
                self.clients.finish(client_id, slot_id, reply, wait)
            }
            Request::RandomKey => {
                let (reply, wait) = self.random_key();
                self.clients.finish(client_id, slot_id, reply, wait)
            }
            Request::Exec { commands } => self.start_exec(client_id, slot_id, commands),
            Request::Rename { .. } | Request::Copy { .. } => self.start_single_view(client_id, slot_id, request),
            Request::Watch { keys } => {
                let keyspace = &self.keyspace;
                let reply = if self.watches.watch(client_id, &keys, |key| keyspace.is_expired(key)) {
                    Reply::ok()
                } else {
                    let limit = super::super::watches::WATCHED_KEYS_MAX;
                    Reply::error(format!("ERR a client watches at most {limit} keys"))
                };
                self.clients.finish(client_id, slot_id, reply, 0)
            }
            Request::Unwatch => {
                self.watches.unwatch(client_id);
                self.clients.finish(client_id, slot_id, Reply::ok(), 0)
            }
            Request::Ping { message: None } => self.clients.finish(client_id, slot_id, Reply::Simple("PONG".into()), 0),
            Request::Ping { message: Some(message) } => {
                self.clients.finish(client_id, slot_id, Reply::Bulk(Some(message)), 0)
            }
            Request::Set { .. }
            | Request::Del { .. }
            | Request::MSet { .. }
            | Request::MSetNx { .. }
            | Request::FlushAll => self.execute_write(client_id, slot_id, request),
            Request::IncrBy { .. }
            | Request::Append { .. }
            | Request::GetSet { .. }
            | Request::GetDel { .. }
            | Request::SetRange { .. }
            | Request::SetExpiring { .. }
            | Request::Expire { .. }
            | Request::Persist { .. }
            | Request::GetEx { .. }
            | Request::IncrByFloat { .. } => self.start_read_modify_write(client_id, slot_id, request),
        }
    }

    /// Limits checked before anything runs: a clear error, nothing changed.
    pub(super) fn validate(&self, request: &Request) -> Option<Reply> {
        // Checked in place, without collecting keys and values: this runs for every command.
        let value_bytes_max = self.shared.config.value_bytes_max;
        let large = |value: &[u8]| value.len() > value_bytes_max;
        let key_too_long = request.any_key(|key| key.len() > KEY_BYTES_MAX);
        let value_too_big = match request {
            Request::Set { value, .. }
            | Request::Append { value, .. }
            | Request::GetSet { value, .. }
            | Request::SetRange { value, .. }
            | Request::SetExpiring { value, .. } => large(value),
            Request::MSet { pairs } | Request::MSetNx { pairs } => pairs.iter().any(|(_, value)| large(value)),
            _ => false,
        };
        if key_too_long {
            return Some(Reply::error(format!("ERR key too long (the limit is {KEY_BYTES_MAX} bytes)")));
        }
        value_too_big.then(|| value_too_large(value_bytes_max))
    }

    fn touches_locked_key(&self, request: &Request) -> bool {
        if !self.clients.any_key_locked() {
            return false;
        }
        match request {
            Request::FlushAll => true,
            Request::Exec { commands } => commands.iter().any(|command| self.touches_locked_key(command)),
            // Registering a watch reads nothing.
            Request::Watch { .. } => false,
            // Reads of the key set see a locked key's durable state, as DBSIZE does.
            other => other.any_key(|key| self.clients.is_locked(key)),
        }
    }

    fn execute_write(&mut self, client_id: ClientId, slot_id: u64, request: Request) -> Executed {
        let (records, reply, observed) = match &request {
            Request::Set { key, value, condition } => {
                let lookup = self.keyspace.lookup(key);
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => !lookup.exists(),
                    SetCondition::IfPresent => lookup.exists(),
                };
                if !allowed {
                    return self.clients.finish(client_id, slot_id, Reply::Bulk(None), lookup.sequence());
                }
                let new_entry_bytes = if lookup.exists() { 0 } else { CompactIndex::entry_bytes(key.len()) };
                if let Some(refusal) = self.index_full(new_entry_bytes) {
                    return self.clients.finish(client_id, slot_id, refusal, lookup.sequence());
                }
                // The hot path: one record, on the stack.
                let records = [NewRecord::Put {
                    key: key.as_slice().into(),
                    value: value.as_slice().into(),
                    expires_at_ms: None,
                }];
                let logged =
                    self.log_records(client_id, slot_id, &records, Writer::Put, Reply::ok(), lookup.sequence());
                return logged.unwrap_or_else(|| self.clients.stall(client_id, slot_id, request));
            }
            Request::MSet { pairs } => {
                if let Some(refusal) = self.index_full(self.mset_new_entry_bytes(pairs)) {
                    return self.clients.finish(client_id, slot_id, refusal, 0);
                }
                let records = pairs.iter().map(|(key, value)| NewRecord::Put {
                    key: SharedKey::from(key.as_slice()),
                    value: Arc::from(value.as_slice()),
                    expires_at_ms: None,
                });
                (records.collect(), Reply::ok(), 0)
            }
            Request::MSetNx { pairs } => {
                let observed = pairs.iter().map(|(key, _)| self.keyspace.lookup(key).sequence()).max().unwrap_or(0);
                if pairs.iter().any(|(key, _)| self.keyspace.lookup(key).exists()) {
                    return self.clients.finish(client_id, slot_id, Reply::Integer(0), observed);
                }
                if let Some(refusal) = self.index_full(self.mset_new_entry_bytes(pairs)) {
                    return self.clients.finish(client_id, slot_id, refusal, observed);
                }
                let records = pairs.iter().map(|(key, value)| NewRecord::Put {
                    key: SharedKey::from(key.as_slice()),
                    value: Arc::from(value.as_slice()),
                    expires_at_ms: None,
                });
                (records.collect(), Reply::Integer(1), observed)
            }
            Request::Del { keys } => self.delete_records(keys),
            Request::FlushAll => (vec![NewRecord::Clear], Reply::ok(), 0),
            _ => unreachable!("only writes reach execute_write"),
        };
        if records.is_empty() {
            return self.clients.finish(client_id, slot_id, reply, observed);
        }
        // Deletes may use space puts may not: a full disk must still take the DELs that free it.
        let writer =
            if matches!(request, Request::Del { .. } | Request::FlushAll) { Writer::Delete } else { Writer::Put };
        let logged = self.log_records(client_id, slot_id, &records, writer, reply, observed);
        drop(records);
        logged.unwrap_or_else(|| self.clients.stall(client_id, slot_id, request))
    }

    /// Appends a write's records and applies them to the keyspace; the reply waits for their
    /// batch. `None`: the open batch is full, and the command must stall (the caller holds it).
    fn log_records(
        &mut self,
        client_id: ClientId,
        slot_id: u64,
        records: &[NewRecord<'_>],
        writer: Writer,
        reply: Reply,
        observed: u64,
    ) -> Option<Executed> {
        match self.append_records(records, writer) {
            Ok(sequence) => {
                self.apply_to_keyspace(records, sequence);
                self.maybe_seal();
                Some(self.clients.finish(client_id, slot_id, reply, sequence.max(observed)))
            }
            Err(AppendRefused::BatchFull) => None,
            Err(AppendRefused::Reply(error)) => Some(self.clients.finish(client_id, slot_id, error, observed)),
        }
    }

    /// The index entries an MSET adds: its distinct keys absent now. Counted exactly only when
    /// the limit is within reach of every key it names (no set built on the common path).
    fn mset_new_entry_bytes(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        let named: u64 = pairs.iter().map(|(key, _)| CompactIndex::entry_bytes(key.len())).sum();
        if self.keyspace.index.live_entry_bytes() + named <= self.shared.config.index_bytes_max {
            return 0; // even if every key were new, it fits
        }
        let mut new_keys = std::collections::BTreeSet::new();
        for (key, _) in pairs {
            if !self.keyspace.lookup(key).exists() {
                new_keys.insert(key.as_slice());
            }
        }
        new_keys.iter().map(|key| CompactIndex::entry_bytes(key.len())).sum()
    }

    /// A write that adds keys (`new_entry_bytes` of index entries) beyond the index's room is
    /// refused: the arena's 32-bit offsets bound it (see `Config::index_bytes_max`).
    pub(super) fn index_full(&self, new_entry_bytes: u64) -> Option<Reply> {
        let limit = self.shared.config.index_bytes_max;
        let full = new_entry_bytes > 0 && self.keyspace.index.live_entry_bytes() + new_entry_bytes > limit;
        full.then(|| {
            Reply::error(format!(
                "OOM index full: no room in memory for more keys (the limit is {limit} bytes of index entries)"
            ))
        })
    }

    /// DEL writes a tombstone only for keys that exist (each once), and counts them.
    fn delete_records<'a>(&self, keys: &'a [Vec<u8>]) -> (Vec<NewRecord<'a>>, Reply, u64) {
        let mut records = Vec::new();
        let mut observed = 0;
        let mut seen = std::collections::BTreeSet::new();
        for key in keys {
            let lookup = self.keyspace.lookup(key);
            observed = observed.max(lookup.sequence());
            if lookup.exists() && seen.insert(key.as_slice()) {
                records.push(NewRecord::Delete { key });
            }
        }
        let count = records.len() as i64;
        (records, Reply::Integer(count), observed)
    }

    pub(super) fn apply_to_keyspace(&mut self, records: &[NewRecord<'_>], sequence: u64) {
        if !self.watches.is_empty() {
            self.touch_watched(records);
        }
        for record in records {
            match record {
                NewRecord::Put { key, value, expires_at_ms } => {
                    self.keyspace.write(SharedKey::clone(key), Some(value.clone()), *expires_at_ms, sequence)
                }
                NewRecord::Delete { key } => self.keyspace.write(SharedKey::from(*key), None, None, sequence),
                NewRecord::Clear => self.keyspace.clear(sequence),
                NewRecord::Move { .. } => unreachable!("clients do not move records"),
            }
        }
    }

    /// Marks the clients watching what `records` change (FLUSHALL: the watched keys that exist).
    fn touch_watched(&mut self, records: &[NewRecord<'_>]) {
        for record in records {
            match record {
                NewRecord::Put { key, .. } => self.watches.touch(key),
                NewRecord::Delete { key } => self.watches.touch(key),
                NewRecord::Clear => {
                    for key in self.watches.keys() {
                        if self.keyspace.lookup(&key).exists() {
                            self.watches.touch(&key);
                        }
                    }
                }
                NewRecord::Move { .. } => {}
            }
        }
    }

    /// INCRBY and APPEND need the key's current value: from memory if it is there, else from
    /// disk, with the key locked so nothing else touches it meanwhile.
    fn start_read_modify_write(&mut self, client_id: ClientId, slot_id: u64, request: Request) -> Executed {
        let key = request_key(&request).to_vec();
        let current = match self.keyspace.lookup(&key) {
            Lookup::Absent { .. } => None,
            Lookup::Pending { value, .. } => Some(value),
            Lookup::Durable(location) => match self.keyspace.cache.get(&key) {
                Some(value) => Some(value),
                None => {
                    self.clients.lock_key(&key);
                    self.clients.slot_mut(client_id, slot_id).state = SlotState::ReadModifyWrite(request);
                    let job = ReadJob { client_id, slot_id, key, location, purpose: ReadPurpose::ReadModifyWrite };
                    self.reads.queue(job, &mut self.shared);
                    return Executed::Blocked;
                }
            },
        };
        let executed = self.finish_read_modify_write(client_id, slot_id, request, current);
        if let Executed::Stalled = executed {
            // The batch is full. No key lock is held on this path, so the command waits as not
            // executed yet and reads the current value afresh when it runs again.
            let slot = self.clients.slot_mut(client_id, slot_id);
            if let SlotState::ReadModifyWriteReady(request, _) =
                std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok()))
            {
                slot.state = SlotState::Queued(request);
            }
        }
        executed
    }

    /// Computes and appends the new value (or the deletion). The wait includes the batch of the
    /// value read, so a reply never reveals a value that is not durable.
    pub(in crate::engine) fn finish_read_modify_write(
        &mut self,
        client_id: ClientId,
        slot_id: u64,
        request: Request,
        current: Option<Arc<[u8]>>,
    ) -> Executed {
        let lookup = self.keyspace.lookup(request_key(&request));
        let observed = lookup.sequence();
        // The key was locked while its value was read, so only time may have changed it: it
        // may have expired meanwhile.
        let current = current.filter(|_| lookup.exists());
        let state = Current {
            value: current.as_deref(),
            expires_at_ms: current.as_ref().and(self.keyspace.expiry_of(request_key(&request))),
        };
        let context =
            RmwContext { now_ms: self.keyspace.now_unix_ms, value_bytes_max: self.shared.config.value_bytes_max };
        let (change, reply) = match compute_read_modify_write(&request, state, context) {
            Ok(computed) => computed,
            Err(error) => return self.clients.finish(client_id, slot_id, error, observed),
        };
        let (record, writer) = match change {
            Change::Unchanged => return self.clients.finish(client_id, slot_id, reply, observed),
            Change::Put(value, expires_at_ms) => {
                let new_entry_bytes =
                    if current.is_none() { CompactIndex::entry_bytes(request_key(&request).len()) } else { 0 };
                if let Some(refusal) = self.index_full(new_entry_bytes) {
                    return self.clients.finish(client_id, slot_id, refusal, observed);
                }
                (NewRecord::Put { key: request_key(&request).into(), value, expires_at_ms }, Writer::Put)
            }
            Change::Delete => (NewRecord::Delete { key: request_key(&request) }, Writer::Delete),
        };
        let records = [record];
        let appended = self.append_records(&records, writer);
        if let Ok(sequence) = appended {
            self.apply_to_keyspace(&records, sequence);
        }
        drop(records);
        match appended {
            Ok(sequence) => {
                self.maybe_seal();
                self.clients.finish(client_id, slot_id, reply, sequence)
            }
            Err(AppendRefused::BatchFull) => {
                let slot = self.clients.slot_mut(client_id, slot_id);
                slot.state = SlotState::ReadModifyWriteReady(request, current);
                Executed::Stalled
            }
            Err(AppendRefused::Reply(error)) => self.clients.finish(client_id, slot_id, error, 0),
        }
    }
}

/// The key of a read-modify-write (`Request::read_modify_write_key`).
pub(super) fn request_key(request: &Request) -> &[u8] {
    request.read_modify_write_key().expect("only read-modify-writes")
}

/// What a read-modify-write does to its key: a new value (with its expiry time) or a deletion.
pub(super) enum Change {
    Unchanged,
    Put(Arc<[u8]>, Option<u64>),
    Delete,
}

/// What a read-modify-write needs besides the key's state.
#[derive(Clone, Copy)]
pub(super) struct RmwContext {
    /// Wall-clock time, Unix milliseconds.
    pub now_ms: u64,
    pub value_bytes_max: usize,
}

pub(super) fn value_too_large(limit: usize) -> Reply {
    Reply::error(format!("ERR value too large (the limit is {limit} bytes)"))
}

/// What a read-modify-write does over the key's state, and its reply. Changing a value in place
/// (INCRBY, APPEND, SETRANGE) keeps its expiry time; replacing it (GETSET) drops it.
pub(super) fn compute_read_modify_write(
    request: &Request,
    state: Current<'_>,
    context: RmwContext,
) -> Result<(Change, Reply), Reply> {
    if expiry::is_expiry_command(request) {
        return expiry::compute_expiry_command(request, state, context.now_ms);
    }
    let (current, value_bytes_max, kept) = (state.value, context.value_bytes_max, state.expires_at_ms);
    let old_value = || Reply::Bulk(current.map(<[u8]>::to_vec));
    match request {
        Request::IncrBy { delta, .. } => {
            let old = match current {
                None => 0,
                Some(bytes) => parse_integer(bytes).ok_or_else(not_an_integer)?,
            };
            let new =
                old.checked_add(*delta).ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
            Ok((Change::Put(Arc::from(new.to_string().into_bytes()), kept), Reply::Integer(new)))
        }
        Request::Append { value, .. } => {
            let old = current.unwrap_or(&[]);
            if old.len() + value.len() > value_bytes_max {
                return Err(value_too_large(value_bytes_max));
            }
            let mut joined = Vec::with_capacity(old.len() + value.len());
            joined.extend_from_slice(old);
            joined.extend_from_slice(value);
            let length = joined.len() as i64;
            Ok((Change::Put(Arc::from(joined), kept), Reply::Integer(length)))
        }
        Request::IncrByFloat { increment, .. } => {
            let new = crate::command::float::incr_by_float(current, increment)?;
            if new.len() > value_bytes_max {
                return Err(value_too_large(value_bytes_max));
            }
            let reply = Reply::Bulk(Some(new.clone()));
            Ok((Change::Put(Arc::from(new), kept), reply))
        }
        Request::GetSet { value, condition, .. } => {
            let allowed = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => current.is_none(),
                SetCondition::IfPresent => current.is_some(),
            };
            let change = if allowed { Change::Put(Arc::from(value.as_slice()), None) } else { Change::Unchanged };
            Ok((change, old_value()))
        }
        Request::GetDel { .. } => {
            let change = if current.is_some() { Change::Delete } else { Change::Unchanged };
            Ok((change, old_value()))
        }
        Request::SetRange { offset, value, .. } => set_range(state, *offset, value, value_bytes_max),
        _ => unreachable!("only read-modify-writes"),
    }
}

/// Redis's own bound on a string (`proto-max-bulk-len`), checked first so its error is Redis's.
const REDIS_STRING_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// SETRANGE over `current`, as Redis's `setrangeCommand` does it: an empty value changes nothing
/// (and creates no key), and the gap past the old end fills with zero bytes.
fn set_range(state: Current<'_>, offset: u64, value: &[u8], value_bytes_max: usize) -> Result<(Change, Reply), Reply> {
    let old = state.value.unwrap_or(&[]);
    if value.is_empty() {
        return Ok((Change::Unchanged, Reply::Integer(old.len() as i64)));
    }
    let end = offset.saturating_add(value.len() as u64);
    if end > REDIS_STRING_BYTES_MAX {
        return Err(Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"));
    }
    let (offset, end) = (offset as usize, end as usize);
    let length = old.len().max(end);
    if length > value_bytes_max {
        return Err(value_too_large(value_bytes_max));
    }
    let mut joined = Vec::with_capacity(length);
    joined.extend_from_slice(old);
    joined.resize(length, 0);
    joined[offset..end].copy_from_slice(value);
    debug_assert_eq!(joined.len(), length);
    Ok((Change::Put(Arc::from(joined), state.expires_at_ms), Reply::Integer(length as i64)))
}
