//! GET and MGET, and what a completed value read was for.

use std::sync::Arc;

use super::super::clients::{Executed, SlotState};
use super::super::keyspace::Lookup;
use super::super::reads::{decode_value, ReadJob, ReadPurpose};
use super::super::{ClientId, Engine, Phase};
use crate::command::Reply;
use crate::engine::keyspace::SharedKey;
use crate::format::KEY_BYTES_MAX;
use crate::io::IoError;

impl Engine {
    /// A GET answered at once, with no slot and no reply queued (the server's hot path:
    /// no allocation), when the full path ([`Engine::submit`]) could not answer differently or
    /// later: the engine is serving, the client has nothing in the engine ahead of it, the key
    /// is valid, not locked by a read-modify-write, not past its expiry time (the full path
    /// deletes it), and its value or absence is durable and in memory. `None`: submit it.
    pub fn get_at_once(&mut self, client_id: ClientId, key: &[u8]) -> Option<Option<Arc<[u8]>>> {
        let serving = matches!(self.phase, Phase::Ready);
        if !serving || self.clients.backlog(client_id) > 0 || key.len() > KEY_BYTES_MAX {
            return None;
        }
        if (self.clients.any_key_locked() && self.clients.is_locked(key))
            || (self.keyspace.may_expire() && self.keyspace.is_expired(key))
        {
            return None;
        }
        let durable = self.log.durable_sequence;
        let answer = match self.keyspace.lookup(key) {
            Lookup::Absent { sequence } if sequence <= durable => Some(None),
            Lookup::Pending { value, sequence } if sequence <= durable => Some(Some(value)),
            Lookup::Durable(_) => self.keyspace.cache.get(key).map(Some),
            Lookup::Absent { .. } | Lookup::Pending { .. } => None,
        };
        // The promise, checked apart from the guards above: an answer reveals only durable state.
        debug_assert!(
            answer.is_none() || self.keyspace.lookup(key).sequence() <= durable,
            "an answer at once reveals only durable state"
        );
        answer
    }

    /// GET and MGET: answer from memory where possible, read the rest.
    pub(super) fn start_reads(&mut self, client_id: ClientId, slot_id: u64, keys: &[Vec<u8>], multi: bool) -> Executed {
        let mut parts = Vec::with_capacity(keys.len());
        let mut wait = 0;
        let mut reads = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let lookup = self.keyspace.lookup(key);
            wait = wait.max(lookup.sequence());
            parts.push(match lookup {
                Lookup::Absent { .. } => Reply::Bulk(None),
                Lookup::Pending { value, .. } => Reply::Bulk(Some(value.to_vec())),
                Lookup::Durable(location) => match self.keyspace.cache.get(key) {
                    Some(value) => Reply::Bulk(Some(value.to_vec())),
                    None => {
                        reads.push((index, key.clone(), location));
                        Reply::Bulk(None)
                    }
                },
            });
        }
        if reads.is_empty() {
            let reply = if multi { Reply::Array(Some(parts)) } else { parts.pop().expect("one key") };
            return self.clients.finish(client_id, slot_id, reply, wait);
        }
        let reads_outstanding = u32::try_from(reads.len()).expect("an MGET's keys fit one frame");
        let slot = self.clients.slot_mut(client_id, slot_id);
        slot.state = SlotState::Reading { parts, reads_outstanding, multi };
        slot.wait_sequence = wait;
        for (index, key, location) in reads {
            let job = ReadJob { client_id, slot_id, key, location, purpose: ReadPurpose::Part(index) };
            self.reads.queue(job, &mut self.shared);
        }
        Executed::Ran
    }

    pub(in crate::engine) fn on_value_read(&mut self, job: ReadJob, result: Result<Vec<u8>, IoError>) {
        self.reads.completed(&self.shared);
        let value = result
            .map_err(|error| Reply::error(format!("ERR I/O error reading key: {error}")))
            .and_then(|bytes| decode_value(&job, &bytes, &mut self.shared));
        if let Ok(value) = &value {
            // Cache only what the index still points at: a newer write may have moved the key.
            let expiry = self.keyspace.index.expiry(&job.key);
            if self.keyspace.index.get(job.key.as_slice()) == Some(job.location) && self.keyspace.cacheable(expiry) {
                self.keyspace.cache.insert(SharedKey::from(job.key.as_slice()), value.clone());
            }
        }
        match job.purpose {
            ReadPurpose::Part(index) => {
                self.clients.fill_part(job.client_id, job.slot_id, index, value);
                self.release_replies(job.client_id);
            }
            ReadPurpose::ReadModifyWrite => self.resume_read_modify_write(&job, value),
            ReadPurpose::Exec => self.on_exec_value(&job, value),
        }
    }

    fn resume_read_modify_write(&mut self, job: &ReadJob, value: Result<Arc<[u8]>, Reply>) {
        let slot = self.clients.slot_mut(job.client_id, job.slot_id);
        let SlotState::ReadModifyWrite(request) = std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok()))
        else {
            unreachable!("a read-modify-write read completes into its slot");
        };
        let executed = match value {
            Ok(current) => self.finish_read_modify_write(job.client_id, job.slot_id, request, Some(current)),
            Err(error) => self.clients.finish(job.client_id, job.slot_id, error, 0),
        };
        match executed {
            Executed::Stalled => {
                if self.shared.config.has_bug(crate::engine::PlantedBug::ReadModifyWriteReleasedEarly) {
                    self.clients.unlock_key(&job.key);
                }
                self.clients.mark_stalled(job.client_id)
            }
            Executed::Ran | Executed::Blocked => {
                // The key and the client go on.
                self.clients.unblock(job.client_id, &job.key);
                self.run_client(job.client_id);
                self.wake_stalled();
            }
        }
    }
}
