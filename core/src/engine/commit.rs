//! Group commit. Writes append records to the open batch; when no batch is in flight the open
//! batch is sealed (padded to whole blocks) and written to fresh blocks, then synced. Only when
//! the sync completes are its writes durable: the index learns their locations and the replies
//! that waited on the batch go out. Writes arriving meanwhile form the next batch.

use std::sync::Arc;

use super::config::{Bug, Config};
use super::keyspace::Location;
use super::space::{Ring, Writer};
use super::{CompactionState, Engine, IoPurpose};
use crate::command::Reply;
use crate::format::{blocks_for, BatchHeader, RecordHeader, RecordKind, BATCH_HEADER_BYTES};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// One record's effect, applied to the index when its batch is durable.
enum Effect {
    Put {
        key: Box<[u8]>,
        location: Location,
        value: Arc<[u8]>,
    },
    Delete {
        key: Box<[u8]>,
    },
    Clear,
    /// Compaction copied the record at `from` to `to`: repoint the key only if nothing newer
    /// replaced it meanwhile.
    Move {
        key: Box<[u8]>,
        from: Location,
        to: Location,
    },
}

/// The batch being filled.
struct OpenBatch {
    sequence: u64,
    start_block: u64,
    buffer: Vec<u8>,
    record_count: u32,
    effects: Vec<Effect>,
    /// Bytes of compaction's moved records in this batch.
    moved_bytes: usize,
}

impl OpenBatch {
    /// `capacity_bytes`: room to reserve (the last batch's size: batches under a steady load
    /// are alike, and growing the buffer record by record copied it over and over).
    fn new(sequence: u64, start_block: u64, capacity_bytes: usize) -> OpenBatch {
        let mut buffer = Vec::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES));
        buffer.resize(BATCH_HEADER_BYTES, 0);
        OpenBatch { sequence, start_block, buffer, record_count: 0, effects: Vec::new(), moved_bytes: 0 }
    }
}

struct InFlightBatch {
    sequence: u64,
    start_block: u64,
    effects: Vec<Effect>,
    durable: bool,
    /// Writes not completed yet: the batch in the log, and its mirror copy.
    writes_left: u8,
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
    last_block: Option<(u64, Vec<u8>)>,
    /// Client writes wait (stalled) for compaction to free space, rather than being refused.
    pub waiting_for_space: bool,
    /// Log space compaction's moves took, in bytes: each sealed batch's blocks in the share its
    /// moved records hold of its payload (so their part of headers and padding counts too).
    pub moved_space_bytes: u64,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            seal_at_tick: false,
            open: OpenBatch::new(1, 0, 0),
            in_flight: None,
            durable_sequence: 0,
            newest_sequence: 0,
            last_block: None,
            waiting_for_space: false,
            moved_space_bytes: 0,
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

    /// Where the next batch goes (it may still wrap to the region's start).
    pub fn head_block(&self) -> u64 {
        self.open.start_block
    }

    /// The first batch that is not durable yet, and where it starts: the log a restart must
    /// replay on top of an index checkpoint of the durable state.
    pub fn first_not_durable(&self) -> (u64, u64) {
        match &self.in_flight {
            Some(batch) => (batch.start_block, batch.sequence),
            None => (self.open.start_block, self.open.sequence),
        }
    }

    /// Whether a batch is in flight, or open with records: the durable state is about to change
    /// (a delete in it becomes garbage compaction can free).
    pub fn unsettled(&self) -> bool {
        self.in_flight.is_some() || self.open.record_count > 0
    }

    pub fn reset(&mut self, next_block: u64, next_sequence: u64) {
        assert!(next_sequence >= 1);
        *self = Log {
            open: OpenBatch::new(next_sequence, next_block, 0),
            durable_sequence: next_sequence - 1,
            newest_sequence: next_sequence - 1,
            ..Log::default()
        };
    }
}

/// A record to append.
pub enum NewRecord<'a> {
    Put {
        key: &'a [u8],
        value: Arc<[u8]>,
    },
    Delete {
        key: &'a [u8],
    },
    Clear,
    /// Compaction's copy of the live record at `from`.
    Move {
        key: &'a [u8],
        value: &'a [u8],
        from: Location,
    },
}

impl NewRecord<'_> {
    fn encoded_bytes(&self) -> usize {
        let body = match self {
            NewRecord::Put { key, value } => key.len() + value.len(),
            NewRecord::Delete { key } => key.len(),
            NewRecord::Clear => 0,
            NewRecord::Move { key, value, .. } => key.len() + value.len(),
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
    pub(super) fn append_records(&mut self, records: &[NewRecord<'_>], writer: Writer) -> Result<u64, AppendRefused> {
        if let Some(reason) = &self.shared.read_only {
            return Err(AppendRefused::Reply(Reply::error(format!("READONLY {reason}"))));
        }
        let added: usize = records.iter().map(NewRecord::encoded_bytes).sum();
        let payload_max = Config::batch_payload_bytes_max(self.shared.volume.batch_blocks_max);
        if added > payload_max {
            return Err(AppendRefused::Reply(Reply::error("ERR command too large: its records exceed one batch")));
        }
        let open = &self.log.open;
        if open.buffer.len() - BATCH_HEADER_BYTES + added > payload_max {
            return Err(AppendRefused::BatchFull);
        }
        // Moves fill at most their share of a batch, so client writes find room beside them, but
        // may always fill the blocks the batch already takes: a batch of moves alone padded to
        // its block would make compaction's copies larger than what it frees.
        let moved_bytes_max = payload_max * self.shared.config.compaction_batch_percent as usize / 100;
        let grows = blocks_for(open.buffer.len() + added) > blocks_for(open.buffer.len());
        if writer == Writer::Compaction && open.moved_bytes > 0 && open.moved_bytes + added > moved_bytes_max && grows {
            return Err(AppendRefused::BatchFull);
        }
        let start_block = self.place_open_batch(added, writer).inspect_err(|refused| {
            if writer != Writer::Compaction && matches!(refused, AppendRefused::BatchFull) {
                self.log.waiting_for_space = true;
            }
        })?;
        self.log.open.start_block = start_block;
        if writer == Writer::Compaction {
            self.log.open.moved_bytes += added;
        }
        for record in records {
            self.append_record(record);
        }
        let sequence = self.log.open.sequence;
        self.log.newest_sequence = sequence;
        Ok(sequence)
    }

    /// Where the open batch goes if it grows by `added` bytes: an empty batch is placed afresh
    /// (it may wrap); a started one must still fit where it is, else it is sealed first. The
    /// free space left must cover the writer's reserve.
    fn place_open_batch(&self, added: usize, writer: Writer) -> Result<u64, AppendRefused> {
        let ring = self.shared.ring();
        let tail = self.shared.volume.tail_block;
        let open = &self.log.open;
        let blocks_after = blocks_for(open.buffer.len() + added) as u64;
        let start_block = if open.record_count == 0 {
            ring.place(tail, open.start_block, blocks_after).ok_or_else(|| self.disk_full(writer))?
        } else {
            if open.start_block + blocks_after > ring.limit(tail, open.start_block) {
                return Err(AppendRefused::BatchFull);
            }
            open.start_block
        };
        let reserve = Ring::reserve_blocks(writer, self.shared.chunk_blocks(), self.shared.volume.batch_blocks_max);
        if ring.free_blocks(tail, start_block + blocks_after) < reserve {
            return Err(self.disk_full(writer));
        }
        Ok(start_block)
    }

    /// No room for `writer` now. Compaction waits for the batch; a client write waits while
    /// compaction is at work and will free space (the tail's advance, or compaction stopping,
    /// wakes it); otherwise the disk is full for it.
    fn disk_full(&self, writer: Writer) -> AppendRefused {
        if writer == Writer::Compaction || self.space_may_come() {
            return AppendRefused::BatchFull;
        }
        let why = match &self.cleaner.halted {
            Some(reason) => format!("compaction is halted: {reason}"),
            None => "compaction cannot free more until keys are deleted".to_string(),
        };
        AppendRefused::Reply(Reply::error(format!("OOM disk full: no room left in the log for this write ({why})")))
    }

    /// Whether a write refused for space now may fit soon: compaction is at work, or a batch
    /// about to become durable may turn records into garbage it can free.
    pub(super) fn space_may_come(&self) -> bool {
        self.shared.read_only.is_none() && (self.compaction_state() == CompactionState::Working || self.log.unsettled())
    }

    fn append_record(&mut self, record: &NewRecord<'_>) {
        let volume_id = self.shared.volume.volume_id;
        let epoch_low = self.shared.volume.epoch as u32;
        let open = &mut self.log.open;
        let offset_bytes = open.start_block * BLOCK_BYTES as u64 + open.buffer.len() as u64;
        let (kind, key, value): (RecordKind, &[u8], &[u8]) = match record {
            NewRecord::Put { key, value } => (RecordKind::Put, key, value),
            NewRecord::Delete { key } => (RecordKind::Delete, key, &[]),
            NewRecord::Clear => (RecordKind::Clear, &[], &[]),
            NewRecord::Move { key, value, .. } => (RecordKind::Put, key, value),
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
        let record_bytes = crate::format::batch_size_u32(header.total_bytes());
        let location = Location { offset_bytes, record_bytes, sequence_low: open.sequence as u32 };
        open.effects.push(match record {
            NewRecord::Put { key, value } => Effect::Put { key: (*key).into(), location, value: value.clone() },
            NewRecord::Delete { key } => Effect::Delete { key: (*key).into() },
            NewRecord::Clear => Effect::Clear,
            NewRecord::Move { key, from, .. } => Effect::Move { key: (*key).into(), from: *from, to: location },
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
        if self.log.in_flight.is_some() || self.log.open.record_count == 0 || self.shared.read_only.is_some() {
            return;
        }
        let next_sequence = self.log.open.sequence + 1;
        let block_count = blocks_for(self.log.open.buffer.len());
        let next = OpenBatch::new(next_sequence, 0, block_count * BLOCK_BYTES);
        let mut batch = std::mem::replace(&mut self.log.open, next);
        let payload_bytes = crate::format::batch_size_u32(batch.buffer.len() - BATCH_HEADER_BYTES);
        let batch_bytes = (block_count * BLOCK_BYTES) as u64;
        self.log.moved_space_bytes += batch_bytes * batch.moved_bytes as u64 / batch.buffer.len() as u64;
        batch.buffer.resize(block_count * BLOCK_BYTES, 0);
        let mut header = BatchHeader {
            volume_id: self.shared.volume.volume_id,
            epoch: self.shared.volume.epoch,
            sequence: batch.sequence,
            block: batch.start_block,
            block_count: crate::format::batch_size_u32(block_count),
            payload_bytes,
            record_count: batch.record_count,
            payload_checksum: 0,
        };
        header.seal(&mut batch.buffer);
        self.log.open.start_block = self.shared.ring().next_head(batch.start_block + block_count as u64);
        // The head never reaches the tail: one block between them always stays free.
        assert_ne!(self.log.open.start_block, self.shared.volume.tail_block, "the head caught up with the tail");
        let mut offset_bytes = batch.start_block * BLOCK_BYTES as u64;
        // The same bytes in the batch's mirror slot; its header names its place in the log.
        let mirror =
            self.shared.volume.mirrored.then(|| {
                (self.shared.volume.mirror_slot_block(batch.sequence) * BLOCK_BYTES as u64, batch.buffer.clone())
            });
        let mut data = batch.buffer;
        if self.shared.config.has_bug(Bug::OverwriteTailBlock) {
            let last_block = data[data.len() - BLOCK_BYTES..].to_vec();
            // Only where the previous batch ended right before this one (not across a wrap).
            if let Some((end_block, previous)) = self.log.last_block.take() {
                if end_block == batch.start_block {
                    offset_bytes -= BLOCK_BYTES as u64;
                    data.splice(0..0, previous);
                }
            }
            self.log.last_block = Some((batch.start_block + block_count as u64, last_block));
        }
        self.log.in_flight = Some(InFlightBatch {
            sequence: batch.sequence,
            start_block: batch.start_block,
            effects: batch.effects,
            durable: false,
            writes_left: 1 + u8::from(mirror.is_some()),
        });
        for (offset_bytes, data) in std::iter::once((offset_bytes, data)).chain(mirror) {
            let kind = if self.shared.config.write_through {
                IoKind::WriteDurable { offset_bytes, data }
            } else {
                IoKind::Write { offset_bytes, data }
            };
            self.shared.push_io(IoPurpose::BatchWrite, kind);
        }
        // Room in the open batch again: clients stalled on a full batch may go on.
        self.wake_stalled();
    }

    pub(super) fn on_batch_write(&mut self, result: Result<Vec<u8>, IoError>) {
        if self.batch_abandoned() {
            return;
        }
        if let Err(error) = result {
            return self.fail_writes(format!("a log write failed ({error}); the engine is read-only until restart"));
        }
        let in_flight = self.log.in_flight.as_mut().expect("checked above");
        in_flight.writes_left -= 1;
        if in_flight.writes_left > 0 {
            return; // the other copy is still being written
        }
        if self.shared.config.write_through {
            // The write was durable when it completed: this is the commit.
            return self.on_batch_durable();
        }
        if self.shared.config.has_bug(Bug::AcknowledgeBeforeSync) {
            self.make_durable();
        }
        self.shared.push_io(IoPurpose::BatchSync, IoKind::Sync);
    }

    pub(super) fn on_batch_sync(&mut self, result: Result<Vec<u8>, IoError>) {
        if self.batch_abandoned() {
            return;
        }
        if let Err(error) = result {
            if self.shared.config.has_bug(Bug::RetrySyncAfterFailure) {
                return self.shared.push_io(IoPurpose::BatchSync, IoKind::Sync);
            }
            return self.fail_writes(format!("a log sync failed ({error}); the engine is read-only until restart"));
        }
        self.on_batch_durable();
    }

    /// Another write (a superblock or checkpoint) failed while this batch was in flight: the
    /// batch was dropped and its waiters answered with errors; its completion changes nothing.
    fn batch_abandoned(&self) -> bool {
        let abandoned = self.log.in_flight.is_none();
        assert!(!abandoned || self.shared.read_only.is_some(), "a batch completion with no batch in flight");
        abandoned
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
        self.shared.stats.records_committed += effects.len() as u64;
        for effect in effects {
            match effect {
                Effect::Put { key, location, value } => {
                    self.cache.insert(&key, value);
                    let before = self.keyspace.index.len();
                    self.keyspace.index.insert(&key, location);
                    self.shared.stats.records_replaced += u64::from(self.keyspace.index.len() == before);
                }
                Effect::Delete { key } => {
                    self.cache.remove(&key);
                    self.keyspace.index.remove(&key);
                    self.shared.stats.records_replaced += 1;
                }
                Effect::Clear => {
                    self.cache.clear();
                    self.shared.stats.records_replaced += self.keyspace.index.len() as u64 + 1;
                    self.keyspace.index.clear();
                }
                Effect::Move { key, from, to } => {
                    let moved = self.keyspace.index.replace_if(&key, from, to);
                    self.shared.stats.records_moved += u64::from(moved);
                }
            }
        }
        self.log.durable_sequence = sequence;
        self.keyspace.retire(sequence);
        self.shared.stats.batches_committed += 1;
        self.release_all_replies();
    }

    /// After a failed write or sync nothing more is written: the open and in-flight batches are
    /// dropped, every reply that waited on them becomes an error, and reads see only what is
    /// durable. A restart runs recovery.
    pub(super) fn fail_writes(&mut self, reason: String) {
        self.shared.read_only = Some(reason);
        self.log.in_flight = None;
        self.log.seal_at_tick = false;
        let sequence = self.log.open.sequence;
        self.log.open = OpenBatch::new(sequence, self.log.open.start_block, 0);
        if !self.shared.config.has_bug(Bug::ReadOnlyKeepsPendingWrites) {
            self.keyspace.discard_overlay();
            assert!(
                self.keyspace.overlay.is_empty() && self.keyspace.cleared_at.is_none(),
                "read-only shows durable state only"
            );
        }
        // The newest state is the durable one now: a later DBSIZE waits on nothing that could
        // never become durable.
        self.log.newest_sequence = self.log.durable_sequence;
        self.clients.fail_waiting(self.log.durable_sequence);
        self.release_all_replies();
        self.wake_stalled();
    }
}
