//! Group commit. Writes append records to the open batch; when no batch is in flight the open
//! batch is sealed (padded to whole blocks) and written to fresh blocks, then synced. Only when
//! the sync completes are its writes durable: the index learns their locations and the replies
//! that waited on the batch go out. Writes arriving meanwhile form the next batch.

use std::sync::Arc;

use super::config::{Bug, Config};
use super::keyspace::Location;
use super::{Engine, IoPurpose};
use crate::command::Reply;
use crate::format::{blocks_for, BatchHeader, RecordHeader, RecordKind, BATCH_HEADER_BYTES};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// One record's effect, applied to the index when its batch is durable.
enum Effect {
    Put { key: Box<[u8]>, location: Location, value: Arc<[u8]> },
    Delete { key: Box<[u8]> },
    Clear,
}

/// The batch being filled.
struct OpenBatch {
    sequence: u64,
    start_block: u64,
    buffer: Vec<u8>,
    record_count: u32,
    effects: Vec<Effect>,
}

impl OpenBatch {
    fn new(sequence: u64, start_block: u64) -> OpenBatch {
        OpenBatch { sequence, start_block, buffer: vec![0; BATCH_HEADER_BYTES], record_count: 0, effects: Vec::new() }
    }
}

struct InFlightBatch {
    sequence: u64,
    effects: Vec<Effect>,
    durable: bool,
}

/// The log's write side.
pub struct Log {
    /// A batch became durable while writes waited: seal them at the next `tick` (the end of the
    /// driver's loop turn), so the clients just answered can join this batch.
    pub seal_at_tick: bool,
    open: OpenBatch,
    in_flight: Option<InFlightBatch>,
    pub durable_sequence: u64,
    /// The sequence of the newest write in the logical state.
    pub newest_sequence: u64,
    /// The previous batch's last block, kept only for the planted tail-overwrite bug.
    last_block: Option<Vec<u8>>,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            seal_at_tick: false,
            open: OpenBatch::new(1, 0),
            in_flight: None,
            durable_sequence: 0,
            newest_sequence: 0,
            last_block: None,
        }
    }
}

impl Log {
    pub fn debug_state(&self) -> String {
        format!(
            "open batch {} ({} records, {} bytes), in flight {:?}, durable {}, seal at tick {}",
            self.open.sequence,
            self.open.record_count,
            self.open.buffer.len(),
            self.in_flight.as_ref().map(|batch| batch.sequence),
            self.durable_sequence,
            self.seal_at_tick
        )
    }

    pub fn reset(&mut self, next_block: u64, next_sequence: u64) {
        assert!(next_sequence >= 1);
        *self = Log {
            open: OpenBatch::new(next_sequence, next_block),
            durable_sequence: next_sequence - 1,
            newest_sequence: next_sequence - 1,
            ..Log::default()
        };
    }
}

/// A record to append.
pub enum NewRecord<'a> {
    Put { key: &'a [u8], value: Arc<[u8]> },
    Delete { key: &'a [u8] },
    Clear,
}

impl NewRecord<'_> {
    fn encoded_bytes(&self) -> usize {
        let body = match self {
            NewRecord::Put { key, value } => key.len() + value.len(),
            NewRecord::Delete { key } => key.len(),
            NewRecord::Clear => 0,
        };
        crate::format::RECORD_HEADER_BYTES + body
    }
}

/// Why records could not be appended now.
pub enum AppendRefused {
    /// The open batch is too full; retry once it has been sealed.
    BatchFull,
    /// A reply to send instead (read-only, disk full, too large).
    Reply(Reply),
}

impl Engine {
    /// Appends a command's records to the open batch, all or none; returns the batch sequence.
    pub(super) fn append_records(&mut self, records: &[NewRecord<'_>]) -> Result<u64, AppendRefused> {
        if let Some(reason) = &self.read_only {
            return Err(AppendRefused::Reply(Reply::error(format!("READONLY {reason}"))));
        }
        let added: usize = records.iter().map(NewRecord::encoded_bytes).sum();
        let payload_max = Config::batch_payload_bytes_max(self.volume.batch_blocks_max);
        if added > payload_max {
            return Err(AppendRefused::Reply(Reply::error("ERR command too large: its records exceed one batch")));
        }
        let open = &self.log.open;
        if open.buffer.len() - BATCH_HEADER_BYTES + added > payload_max {
            return Err(AppendRefused::BatchFull);
        }
        let blocks_after = blocks_for(open.buffer.len() + added) as u64;
        if open.start_block + blocks_after > self.volume.volume_blocks {
            return Err(AppendRefused::Reply(Reply::error("OOM disk full: no room left in the log for this write")));
        }
        for record in records {
            self.append_record(record);
        }
        let sequence = self.log.open.sequence;
        self.log.newest_sequence = sequence;
        Ok(sequence)
    }

    fn append_record(&mut self, record: &NewRecord<'_>) {
        let volume_id = self.volume.volume_id;
        let epoch_low = self.volume.epoch as u32;
        let open = &mut self.log.open;
        let offset_bytes = open.start_block * BLOCK_BYTES as u64 + open.buffer.len() as u64;
        let (kind, key, value): (RecordKind, &[u8], &[u8]) = match record {
            NewRecord::Put { key, value } => (RecordKind::Put, key, value),
            NewRecord::Delete { key } => (RecordKind::Delete, key, &[]),
            NewRecord::Clear => (RecordKind::Clear, &[], &[]),
        };
        let header = RecordHeader {
            kind,
            key_bytes: u16::try_from(key.len()).expect("key length checked at parse"),
            value_bytes: u32::try_from(value.len()).expect("value length checked at parse"),
            epoch_low,
            sequence: open.sequence,
        };
        header.encode_into(&mut open.buffer, volume_id, offset_bytes, key, value);
        open.record_count += 1;
        let record_bytes = header.total_bytes() as u32;
        open.effects.push(match record {
            NewRecord::Put { key, value } => Effect::Put {
                key: (*key).into(),
                location: Location { offset_bytes, record_bytes, sequence_low: open.sequence as u32 },
                value: value.clone(),
            },
            NewRecord::Delete { key } => Effect::Delete { key: (*key).into() },
            NewRecord::Clear => Effect::Clear,
        });
    }

    /// Seals and writes the open batch if it has records and nothing is in flight, unless a
    /// seal is deferred to the next tick.
    pub(super) fn maybe_seal(&mut self) {
        if self.log.seal_at_tick {
            return;
        }
        self.seal_now();
    }

    /// The end of the driver's loop turn: a deferred seal happens now.
    pub(super) fn seal_deferred(&mut self) {
        if std::mem::take(&mut self.log.seal_at_tick) {
            self.seal_now();
        }
    }

    fn seal_now(&mut self) {
        if self.log.in_flight.is_some() || self.log.open.record_count == 0 || self.read_only.is_some() {
            return;
        }
        let next_sequence = self.log.open.sequence + 1;
        let mut batch = std::mem::replace(&mut self.log.open, OpenBatch::new(next_sequence, 0));
        let block_count = blocks_for(batch.buffer.len());
        let payload_bytes = (batch.buffer.len() - BATCH_HEADER_BYTES) as u32;
        batch.buffer.resize(block_count * BLOCK_BYTES, 0);
        let mut header = BatchHeader {
            volume_id: self.volume.volume_id,
            epoch: self.volume.epoch,
            sequence: batch.sequence,
            block: batch.start_block,
            block_count: block_count as u32,
            payload_bytes,
            record_count: batch.record_count,
            payload_checksum: 0,
        };
        header.seal(&mut batch.buffer);
        self.log.open.start_block = batch.start_block + block_count as u64;
        let mut offset_bytes = batch.start_block * BLOCK_BYTES as u64;
        let mut data = batch.buffer;
        let last_block = data[data.len() - BLOCK_BYTES..].to_vec();
        if self.config.has_bug(Bug::OverwriteTailBlock) {
            if let Some(previous) = self.log.last_block.take() {
                offset_bytes -= BLOCK_BYTES as u64;
                data.splice(0..0, previous);
            }
            self.log.last_block = Some(last_block);
        }
        self.log.in_flight = Some(InFlightBatch { sequence: batch.sequence, effects: batch.effects, durable: false });
        let kind = if self.config.write_through {
            IoKind::WriteDurable { offset_bytes, data }
        } else {
            IoKind::Write { offset_bytes, data }
        };
        self.push_io(IoPurpose::BatchWrite, kind);
        // Room in the open batch again: clients stalled on a full batch may go on.
        self.wake_stalled();
    }

    pub(super) fn on_batch_write(&mut self, result: Result<Vec<u8>, IoError>) {
        if let Err(error) = result {
            return self.fail_writes(format!("a log write failed ({error}); the engine is read-only until restart"));
        }
        if self.config.write_through {
            // The write was durable when it completed: this is the commit.
            return self.on_batch_durable();
        }
        if self.config.has_bug(Bug::AcknowledgeBeforeSync) {
            self.make_durable();
        }
        self.push_io(IoPurpose::BatchSync, IoKind::Sync);
    }

    pub(super) fn on_batch_sync(&mut self, result: Result<Vec<u8>, IoError>) {
        if let Err(error) = result {
            return self.fail_writes(format!("a log sync failed ({error}); the engine is read-only until restart"));
        }
        self.on_batch_durable();
    }

    /// The in-flight batch is durable (its sync, or its durable write, completed).
    fn on_batch_durable(&mut self) {
        self.make_durable();
        self.log.in_flight = None;
        // Not now: the replies just released reach their clients only after this input, and
        // their next writes belong in the next batch. The driver's next tick seals it.
        self.log.seal_at_tick = true;
    }

    /// The in-flight batch is durable: apply its effects and release the replies waiting on it.
    fn make_durable(&mut self) {
        let in_flight = self.log.in_flight.as_mut().expect("a batch is in flight");
        if in_flight.durable {
            return;
        }
        in_flight.durable = true;
        let sequence = in_flight.sequence;
        let effects = std::mem::take(&mut in_flight.effects);
        assert_eq!(sequence, self.log.durable_sequence + 1, "batches become durable in order");
        self.stats.records_committed += effects.len() as u64;
        for effect in effects {
            match effect {
                Effect::Put { key, location, value } => {
                    self.cache.insert(&key, value);
                    self.keyspace.index.insert(&key, location);
                }
                Effect::Delete { key } => {
                    self.cache.remove(&key);
                    self.keyspace.index.remove(&key);
                }
                Effect::Clear => {
                    self.cache.clear();
                    self.keyspace.index.clear();
                }
            }
        }
        self.log.durable_sequence = sequence;
        self.keyspace.retire(sequence);
        self.stats.batches_committed += 1;
        self.release_all_replies();
    }

    /// After a failed write or sync nothing more is written: the open and in-flight batches are
    /// dropped, every reply that waited on them becomes an error, and reads see only what is
    /// durable. A restart runs recovery.
    pub(super) fn fail_writes(&mut self, reason: String) {
        self.read_only = Some(reason);
        self.log.in_flight = None;
        self.log.seal_at_tick = false;
        let sequence = self.log.open.sequence;
        self.log.open = OpenBatch::new(sequence, self.log.open.start_block);
        self.keyspace.discard_overlay();
        self.fail_waiting_slots();
        self.release_all_replies();
        self.wake_stalled();
    }
}
