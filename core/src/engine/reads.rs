//! Value reads: GET and MGET misses, and the current value for a read-modify-write. Reads for
//! different clients are in flight together, up to the configured queue depth.

use std::sync::Arc;

use super::clients::{Executed, SlotState};
use super::config::Bug;
use super::keyspace::{Location, Lookup};
use super::{ClientId, Engine, IoPurpose};
use crate::command::Reply;
use crate::format::{RecordHeader, RecordKind, RECORD_HEADER_BYTES};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPurpose {
    /// Fill part `index` of a GET or MGET reply.
    Part(usize),
    ReadModifyWrite,
}

pub struct ReadJob {
    client_id: ClientId,
    slot_id: u64,
    key: Vec<u8>,
    pub(super) location: Location,
    purpose: ReadPurpose,
}

impl Engine {
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
                Lookup::Durable(location) => match self.cache.get(key) {
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
            return self.finish(client_id, slot_id, reply, wait);
        }
        let slot = self.clients.get_mut(&client_id).expect("client exists").slot_mut(slot_id);
        slot.state = SlotState::Reading { parts, reads_outstanding: reads.len() as u32, multi };
        slot.wait_sequence = wait;
        for (index, key, location) in reads {
            self.queue_read(client_id, slot_id, key, location, ReadPurpose::Part(index));
        }
        Executed::Ran
    }

    pub(super) fn queue_read(
        &mut self,
        client_id: ClientId,
        slot_id: u64,
        key: Vec<u8>,
        location: Location,
        purpose: ReadPurpose,
    ) {
        self.read_queue.push_back(ReadJob { client_id, slot_id, key, location, purpose });
        self.issue_queued_reads();
    }

    pub(super) fn issue_queued_reads(&mut self) {
        while self.reads_in_flight < self.shared.config.queue_depth_max {
            let Some(job) = self.read_queue.pop_front() else { break };
            let block_bytes = BLOCK_BYTES as u64;
            let first = job.location.offset_bytes / block_bytes * block_bytes;
            let end =
                (job.location.offset_bytes + u64::from(job.location.record_bytes)).div_ceil(block_bytes) * block_bytes;
            let length_bytes = u32::try_from(end - first).expect("a record is under 4 GiB");
            self.reads_in_flight += 1;
            self.shared.stats.reads_in_flight_max =
                self.shared.stats.reads_in_flight_max.max(self.reads_in_flight as u64);
            self.shared.push_io(IoPurpose::ValueRead(job), IoKind::Read { offset_bytes: first, length_bytes });
        }
    }

    pub(super) fn on_value_read(&mut self, job: ReadJob, result: Result<Vec<u8>, IoError>) {
        self.reads_in_flight -= 1;
        debug_assert_eq!(
            self.reads_in_flight,
            self.shared
                .io
                .tokens
                .purposes()
                .filter(|purpose| matches!(purpose, super::IoPurpose::ValueRead(_)))
                .count(),
            "the reads in flight are the value-read tokens"
        );
        debug_assert!(
            self.reads_in_flight < self.shared.config.queue_depth_max,
            "reads in flight within the queue depth"
        );
        let value = result
            .map_err(|error| Reply::error(format!("ERR I/O error reading key: {error}")))
            .and_then(|bytes| self.decode_value(&job, &bytes));
        if let Ok(value) = &value {
            // Cache only what the index still points at: a newer write may have moved the key.
            if self.keyspace.index.get(job.key.as_slice()) == Some(job.location) {
                self.cache.insert(&job.key, value.clone());
            }
        }
        match job.purpose {
            ReadPurpose::Part(index) => self.fill_part(&job, index, value),
            ReadPurpose::ReadModifyWrite => self.resume_read_modify_write(&job, value),
        }
    }

    /// Verifies the record under `job.location` and returns its value. A record that fails its
    /// checksum, or is not the record the index expects, is an error reply, never a value.
    fn decode_value(&mut self, job: &ReadJob, bytes: &[u8]) -> Result<Arc<[u8]>, Reply> {
        let start = (job.location.offset_bytes % BLOCK_BYTES as u64) as usize;
        let end = start + job.location.record_bytes as usize;
        if bytes.len() < end {
            return Err(Reply::error("ERR short read from the volume"));
        }
        let record = &bytes[start..end];
        let verified = if self.shared.config.has_bug(Bug::SkipReadChecksum) {
            RecordHeader::decode_trusted(record)
        } else {
            RecordHeader::decode_verified(record, self.shared.volume.volume_id, job.location.offset_bytes)
        };
        let header = verified.ok().filter(|header| {
            header.kind == RecordKind::Put
                && header.sequence as u32 == job.location.sequence_low
                && header.total_bytes() == record.len()
                && &record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + header.key_bytes as usize] == job.key.as_slice()
        });
        let Some(header) = header else {
            self.shared.stats.checksum_failures += 1;
            let offset = job.location.offset_bytes;
            return Err(Reply::error(format!(
                "ERR data corrupt: the record at byte offset {offset} failed verification"
            )));
        };
        Ok(Arc::from(&record[RECORD_HEADER_BYTES + header.key_bytes as usize..]))
    }

    fn fill_part(&mut self, job: &ReadJob, index: usize, value: Result<Arc<[u8]>, Reply>) {
        let client = self.clients.get_mut(&job.client_id).expect("a client with a read in flight exists");
        let slot = client.slot_mut(job.slot_id);
        let SlotState::Reading { parts, reads_outstanding, multi } = &mut slot.state else {
            unreachable!("a part read completes into a reading slot");
        };
        parts[index] = match value {
            Ok(value) => Reply::Bulk(Some(value.to_vec())),
            Err(error) => error,
        };
        *reads_outstanding -= 1;
        if *reads_outstanding == 0 {
            let mut parts = std::mem::take(parts);
            let reply = match parts.iter().position(Reply::is_error) {
                Some(failed) => parts.swap_remove(failed),
                None if *multi => Reply::Array(Some(parts)),
                None => parts.pop().expect("one part"),
            };
            slot.state = SlotState::Done(reply);
        }
        self.release_replies(job.client_id);
    }

    fn resume_read_modify_write(&mut self, job: &ReadJob, value: Result<Arc<[u8]>, Reply>) {
        let client = self.clients.get_mut(&job.client_id).expect("a client with a read in flight exists");
        let slot = client.slot_mut(job.slot_id);
        let SlotState::ReadModifyWrite(request) = std::mem::replace(&mut slot.state, SlotState::Done(Reply::ok()))
        else {
            unreachable!("a read-modify-write read completes into its slot");
        };
        let executed = match value {
            Ok(current) => self.finish_read_modify_write(job.client_id, job.slot_id, request, Some(current)),
            Err(error) => self.finish(job.client_id, job.slot_id, error, 0),
        };
        match executed {
            Executed::Stalled => _ = self.stalled.insert(job.client_id),
            Executed::Ran | Executed::Blocked => self.unblock(job.client_id, &job.key),
        }
    }

    /// A read-modify-write has appended its record (or failed): the key and the client go on.
    pub(super) fn unblock(&mut self, client_id: ClientId, key: &[u8]) {
        self.locked_keys.remove(key);
        if let Some(client) = self.clients.get_mut(&client_id) {
            client.blocked = false;
        }
        self.run_client(client_id);
        self.wake_stalled();
    }
}
