//! The read scheduler: value reads (GET and MGET misses, the current value of a read-modify-
//! write) wait in a queue and go out up to the configured queue depth, for all clients
//! together. It issues the reads and verifies what comes back; what a read was for is the
//! engine's (execute/).

use std::collections::VecDeque;
use std::sync::Arc;

use super::config::Bug;
use super::keyspace::Location;
use super::{ClientId, IoPurpose, Shared};
use crate::command::Reply;
use crate::format::{RecordHeader, RecordKind};
use crate::io::IoKind;
use crate::BLOCK_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPurpose {
    /// Fill part `index` of a GET or MGET reply.
    Part(usize),
    ReadModifyWrite,
    /// A value an EXEC's commands need.
    Exec,
}

pub struct ReadJob {
    pub client_id: ClientId,
    pub slot_id: u64,
    pub key: Vec<u8>,
    pub location: Location,
    pub purpose: ReadPurpose,
}

/// Value reads waiting and in flight.
#[derive(Default)]
pub struct ReadScheduler {
    queue: VecDeque<ReadJob>,
    in_flight: usize,
}

impl ReadScheduler {
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues a read and issues what the queue depth allows.
    pub fn queue(&mut self, job: ReadJob, shared: &mut Shared) {
        self.queue.push_back(job);
        self.issue(shared);
    }

    /// Issues queued reads while fewer than the queue depth are in flight.
    pub fn issue(&mut self, shared: &mut Shared) {
        let depth_max = shared.config.queue_depth_max;
        while self.in_flight < depth_max {
            let Some(job) = self.queue.pop_front() else { break };
            let block_bytes = BLOCK_BYTES as u64;
            let first = job.location.offset_bytes / block_bytes * block_bytes;
            let end =
                (job.location.offset_bytes + u64::from(job.location.record_bytes)).div_ceil(block_bytes) * block_bytes;
            let length_bytes = u32::try_from(end - first).expect("a record is under 4 GiB");
            let ring = shared.ring();
            debug_assert!(length_bytes > 0 && ring.start * block_bytes <= first && end <= ring.end * block_bytes);
            self.in_flight += 1;
            shared.stats.reads_in_flight_max = shared.stats.reads_in_flight_max.max(self.in_flight as u64);
            shared.push_io(IoPurpose::ValueRead(job), IoKind::Read { offset_bytes: first, length_bytes });
        }
        debug_assert!(self.in_flight <= depth_max, "reads in flight within the queue depth");
    }

    /// A value read completed (its token is gone from `shared`).
    pub fn completed(&mut self, shared: &Shared) {
        assert!(self.in_flight > 0, "a value read completes only while one is in flight");
        self.in_flight -= 1;
        debug_assert_eq!(
            self.in_flight,
            shared.io.tokens.purposes().filter(|purpose| matches!(purpose, IoPurpose::ValueRead(_))).count(),
            "the reads in flight are the value-read tokens"
        );
    }

    /// Whether a value read, in flight or queued, points into the blocks `freed` names.
    pub fn any_points_into(&self, shared: &Shared, freed: impl Fn(&Location) -> bool) -> bool {
        let in_flight = shared.io.tokens.purposes().any(|purpose| match purpose {
            IoPurpose::ValueRead(job) => freed(&job.location),
            _ => false,
        });
        in_flight || self.queue.iter().any(|job| freed(&job.location))
    }
}

/// Verifies the record under `job.location` and returns its value. A record that fails its
/// checksum, or is not the record the index expects, is an error reply, never a value.
pub fn decode_value(job: &ReadJob, bytes: &[u8], shared: &mut Shared) -> Result<Arc<[u8]>, Reply> {
    let start = (job.location.offset_bytes % BLOCK_BYTES as u64) as usize;
    let end = start + job.location.record_bytes as usize;
    if bytes.len() < end {
        return Err(Reply::error("ERR short read from the volume"));
    }
    let record = &bytes[start..end];
    let verified = if shared.config.has_bug(Bug::SkipReadChecksum) {
        RecordHeader::decode_trusted(record)
    } else {
        RecordHeader::decode_verified(record, shared.volume.volume_id, job.location.offset_bytes)
    };
    let header = verified.ok().filter(|header| {
        header.kind == RecordKind::Put
            && crate::format::low_32_bits(header.sequence) == job.location.sequence_low
            && header.total_bytes() == record.len()
            && &record[header.key_offset()..header.value_offset()] == job.key.as_slice()
    });
    let Some(header) = header else {
        shared.stats.checksum_failures += 1;
        let offset = job.location.offset_bytes;
        return Err(Reply::error(format!("ERR data corrupt: the record at byte offset {offset} failed verification")));
    };
    Ok(Arc::from(&record[header.value_offset()..]))
}
