//! The log and its commit pipeline (group commit). Writes append records to the open batch; the
//! open batch is sealed (padded to whole blocks) and written to fresh blocks, then synced. Only
//! when the sync completes are its writes durable: the log hands the batch's effects to the
//! engine (`LogStep::Durable`), which applies them to the keyspace and releases the replies that
//! waited on the batch. Writes arriving meanwhile form the next batch.
//!
//! Pipelined: up to `pipeline_depth` sealed batches are in flight at once, so the next batch is
//! written while the one before is being made durable. Their completions may arrive in any
//! order, but a batch counts as durable only once every batch before it is (replies are released
//! strictly in batch order), and a failed write or sync drops every batch in flight: none after
//! the failure is acknowledged. Recovery's torn-tail rule allows for the depth (see
//! `format::superblock::pipeline_depth_max`).
//!
//! The log owns the open and in-flight batches and the sequence numbers; it reads the volume's
//! layout from `Shared` and queues its writes there. It never calls back into the engine.

use std::collections::VecDeque;
use std::sync::Arc;

use super::config::{Bug, Config};
use super::keyspace::{DurableEffect, Location};
use super::reasons::ReadOnlyReason;
use super::space::{Ring, Writer};
use super::LogPosition;
use super::{IoPurpose, Shared};
use crate::command::Reply;
use crate::engine::keyspace::SharedKey;
use crate::format::{blocks_for, BatchHeader, RecordHeader, RecordKind, RecordPlacement, BATCH_HEADER_BYTES};
use crate::io::{IoError, IoKind};
use crate::BLOCK_BYTES;

/// The batch being filled.
struct OpenBatch {
    sequence: u64,
    start_block: u64,
    buffer: Vec<u8>,
    record_count: u32,
    effects: Vec<DurableEffect>,
    /// Bytes of compaction's moved records in this batch.
    moved_bytes: usize,
    /// Zero bytes placed before records so that they start on a fresh block.
    padding_bytes: usize,
}

impl OpenBatch {
    /// `capacity_bytes`: room to reserve (the last batch's size: batches under a steady load
    /// are alike, and growing the buffer record by record copied it over and over).
    fn new(sequence: u64, start_block: u64, capacity_bytes: usize) -> OpenBatch {
        let mut buffer = Vec::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES));
        buffer.resize(BATCH_HEADER_BYTES, 0);
        OpenBatch {
            sequence,
            start_block,
            buffer,
            record_count: 0,
            effects: Vec::new(),
            moved_bytes: 0,
            padding_bytes: 0,
        }
    }
}

struct InFlightBatch {
    sequence: u64,
    start_block: u64,
    effects: Vec<DurableEffect>,
    /// Its bytes are durable (its sync, or its durable writes, completed); it is released once
    /// every batch before it is too.
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
    /// Sealed batches not yet released, oldest first (at most the pipeline's depth).
    in_flight: VecDeque<InFlightBatch>,
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
            in_flight: VecDeque::new(),
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
            self.in_flight.iter().map(|batch| batch.sequence).collect::<Vec<_>>(),
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
    pub fn first_not_durable(&self) -> LogPosition {
        match self.in_flight.front() {
            Some(batch) => LogPosition { block: batch.start_block, sequence: batch.sequence },
            None => LogPosition { block: self.open.start_block, sequence: self.open.sequence },
        }
    }

    /// Sealed batches not yet released.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the open batch holds records.
    pub fn has_pending_records(&self) -> bool {
        self.open.record_count > 0
    }

    /// How many batches may be in flight at once: the configured depth, within what the
    /// volume's mirror slots allow recovery to tell apart.
    pub fn pipeline_depth(shared: &Shared) -> usize {
        let volume_max = shared.volume.pipeline_depth_max();
        shared.config.commit_pipeline_depth.clamp(1, volume_max as u32) as usize
    }

    /// Whether another batch may be sealed now.
    pub fn pipeline_has_room(&self, shared: &Shared) -> bool {
        self.in_flight.len() < Self::pipeline_depth(shared)
    }

    /// Whether a batch is in flight, or open with records: the durable state is about to change
    /// (a delete in it becomes garbage compaction can free).
    pub fn unsettled(&self) -> bool {
        !self.in_flight.is_empty() || self.open.record_count > 0
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
        key: SharedKey,
        value: Arc<[u8]>,
        expires_at_ms: Option<u64>,
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
        expires_at_ms: Option<u64>,
    },
}

impl NewRecord<'_> {
    fn encoded_bytes(&self) -> usize {
        let expiry_bytes = |expires_at_ms: &Option<u64>| expires_at_ms.map_or(0, |_| crate::format::EXPIRY_BYTES);
        let body = match self {
            NewRecord::Put { key, value, expires_at_ms } => key.len() + value.len() + expiry_bytes(expires_at_ms),
            NewRecord::Move { key, value, expires_at_ms, .. } => key.len() + value.len() + expiry_bytes(expires_at_ms),
            NewRecord::Delete { key } => key.len(),
            NewRecord::Clear => 0,
        };
        crate::format::RECORD_HEADER_BYTES + body
    }

    /// The bytes `records` take, padding included, appended `at` bytes into a batch.
    fn placed_bytes(records: &[NewRecord<'_>], at: usize, placement: RecordPlacement) -> usize {
        let end = records.iter().fold(at, |end, record| {
            let record_bytes = record.encoded_bytes();
            end + placement.padding_before(end, record_bytes) + record_bytes
        });
        end - at
    }
}

/// Why records could not be appended now.
pub enum AppendRefused {
    /// The open batch is too full; retry once it has been sealed.
    BatchFull,
    /// A reply to send instead (read-only, disk full, too large).
    Reply(Reply),
}

/// Why the log refused an append, before the engine decides what the writer hears.
pub enum LogRefused {
    /// The open batch has no room for these records; retry once it has been sealed.
    BatchFull,
    /// The started open batch cannot grow where it is: it must be sealed first. A client writer
    /// waits for space.
    MustSeal,
    /// The ring has no room for the writer (beyond its reserve): the engine decides whether
    /// space may still come (compaction at work) or the disk is full.
    NoRoom,
    /// A reply to send instead (read-only, too large).
    Reply(Reply),
}

/// What a batch I/O completion led to, for the engine to act on.
pub enum LogStep {
    Nothing,
    /// These batches are durable, in sequence order: apply their effects and release the
    /// replies that waited.
    Durable {
        batches: Vec<(u64, Vec<DurableEffect>)>,
    },
    /// A write or sync failed: nothing more is written; the engine goes read-only.
    Failed(ReadOnlyReason),
}

impl Log {
    /// Appends a command's records to the open batch, all or none; returns the batch sequence.
    pub fn append(&mut self, records: &[NewRecord<'_>], writer: Writer, shared: &Shared) -> Result<u64, LogRefused> {
        if let Some(reason) = &shared.read_only {
            return Err(LogRefused::Reply(Reply::error(format!("READONLY {reason}"))));
        }
        let placement = shared.record_placement();
        let payload_max = Config::batch_payload_bytes_max(shared.volume.batch_blocks_max);
        // Judged in an empty batch, where it would go after the open one is sealed.
        if NewRecord::placed_bytes(records, BATCH_HEADER_BYTES, placement) > payload_max {
            return Err(LogRefused::Reply(Reply::error("ERR command too large: its records exceed one batch")));
        }
        let open = &self.open;
        let added = NewRecord::placed_bytes(records, open.buffer.len(), placement);
        if open.buffer.len() - BATCH_HEADER_BYTES + added > payload_max {
            return Err(LogRefused::BatchFull);
        }
        // Moves fill at most their share of a batch, so client writes find room beside them, but
        // may always fill the blocks the batch already takes: a batch of moves alone padded to
        // its block would make compaction's copies larger than what it frees.
        let moved_bytes_max = payload_max * shared.config.compaction_batch_percent as usize / 100;
        let grows = blocks_for(open.buffer.len() + added) > blocks_for(open.buffer.len());
        if writer == Writer::Compaction && open.moved_bytes > 0 && open.moved_bytes + added > moved_bytes_max && grows {
            return Err(LogRefused::BatchFull);
        }
        let start_block = self.place_open_batch(added, writer, shared)?;
        self.open.start_block = start_block;
        if writer == Writer::Compaction {
            self.open.moved_bytes += added;
        }
        let records_before = self.open.record_count;
        let length_before = self.open.buffer.len();
        for record in records {
            self.append_record(record, placement, shared);
        }
        debug_assert_eq!(self.open.record_count as usize, records_before as usize + records.len());
        assert_eq!(self.open.buffer.len(), length_before + added, "the records took the room they were placed in");
        let sequence = self.open.sequence;
        self.newest_sequence = sequence;
        Ok(sequence)
    }

    /// Where the open batch goes if it grows by `added` bytes: an empty batch is placed afresh
    /// (it may wrap); a started one must still fit where it is, else it is sealed first. The
    /// free space left must cover the writer's reserve.
    fn place_open_batch(&self, added: usize, writer: Writer, shared: &Shared) -> Result<u64, LogRefused> {
        let ring = shared.ring();
        let tail = shared.volume.tail.block;
        let open = &self.open;
        let blocks_after = blocks_for(open.buffer.len() + added) as u64;
        let start_block = if open.record_count == 0 {
            ring.place(tail, open.start_block, blocks_after).ok_or(LogRefused::NoRoom)?
        } else {
            if open.start_block + blocks_after > ring.limit(tail, open.start_block) {
                return Err(LogRefused::MustSeal);
            }
            open.start_block
        };
        let reserve = Ring::reserve_blocks(writer, shared.chunk_blocks(), shared.volume.batch_blocks_max);
        if ring.free_blocks(tail, start_block + blocks_after) < reserve {
            return Err(LogRefused::NoRoom);
        }
        Ok(start_block)
    }

    fn append_record(&mut self, record: &NewRecord<'_>, placement: RecordPlacement, shared: &Shared) {
        let volume_id = shared.volume.volume_id;
        let epoch_low = crate::format::low_32_bits(shared.volume.epoch);
        let open = &mut self.open;
        let record_bytes = record.encoded_bytes();
        let padding_bytes = placement.padding_before(open.buffer.len(), record_bytes);
        open.buffer.resize(open.buffer.len() + padding_bytes, 0);
        open.padding_bytes += padding_bytes;
        let room_bytes = BLOCK_BYTES - open.buffer.len() % BLOCK_BYTES;
        assert!(!placement.may_pad() || room_bytes >= crate::format::RECORD_HEADER_BYTES, "a header crosses a block");
        assert!(
            placement != RecordPlacement::SmallRecordsWhole || record_bytes > BLOCK_BYTES || record_bytes <= room_bytes,
            "a small record crosses a block"
        );
        let offset_bytes = open.start_block * BLOCK_BYTES as u64 + open.buffer.len() as u64;
        let (kind, key, value, expires_at_ms): (RecordKind, &[u8], &[u8], Option<u64>) = match record {
            NewRecord::Put { key, value, expires_at_ms } => (RecordKind::Put, key, value, *expires_at_ms),
            NewRecord::Delete { key } => (RecordKind::Delete, key, &[], None),
            NewRecord::Clear => (RecordKind::Clear, &[], &[], None),
            NewRecord::Move { key, value, expires_at_ms, .. } => (RecordKind::Put, key, value, *expires_at_ms),
        };
        let header = RecordHeader {
            kind,
            key_bytes: u16::try_from(key.len()).expect("key length checked at parse"),
            value_bytes: u32::try_from(value.len()).expect("value length checked at parse"),
            epoch_low,
            sequence: open.sequence,
            expires_at_ms,
        };
        header.encode_into(&mut open.buffer, volume_id, offset_bytes, key, value);
        open.record_count += 1;
        let record_bytes = crate::format::batch_size_u32(header.total_bytes());
        let location = Location { offset_bytes, record_bytes, sequence_low: crate::format::low_32_bits(open.sequence) };
        open.effects.push(match record {
            NewRecord::Put { key, value, expires_at_ms } => {
                DurableEffect::Put { key: key.clone(), location, value: value.clone(), expires_at_ms: *expires_at_ms }
            }
            NewRecord::Delete { key } => DurableEffect::Delete { key: (*key).into() },
            NewRecord::Clear => DurableEffect::Clear,
            NewRecord::Move { key, from, .. } => DurableEffect::Move { key: (*key).into(), from: *from, to: location },
        });
    }

    /// Seals and writes the open batch if it has records and the pipeline has room. Returns
    /// whether it did: the open batch has room again, so writers stalled on it may go on.
    pub fn seal(&mut self, shared: &mut Shared) -> bool {
        if !self.pipeline_has_room(shared) || self.open.record_count == 0 || shared.read_only.is_some() {
            return false;
        }
        let next_sequence = self.open.sequence + 1;
        let block_count = blocks_for(self.open.buffer.len());
        let next = OpenBatch::new(next_sequence, 0, block_count * BLOCK_BYTES);
        let mut batch = std::mem::replace(&mut self.open, next);
        let payload_bytes = crate::format::batch_size_u32(batch.buffer.len() - BATCH_HEADER_BYTES);
        shared.stats.payload_bytes_sealed += u64::from(payload_bytes);
        shared.stats.record_padding_bytes += batch.padding_bytes as u64;
        let batch_bytes = (block_count * BLOCK_BYTES) as u64;
        self.moved_space_bytes += batch_bytes * batch.moved_bytes as u64 / batch.buffer.len() as u64;
        batch.buffer.resize(block_count * BLOCK_BYTES, 0);
        let mut header = BatchHeader {
            volume_id: shared.volume.volume_id,
            epoch: shared.volume.epoch,
            sequence: batch.sequence,
            block: batch.start_block,
            block_count: crate::format::batch_size_u32(block_count),
            payload_bytes,
            record_count: batch.record_count,
            payload_checksum: 0,
        };
        header.seal(&mut batch.buffer);
        self.open.start_block = shared.ring().next_head(batch.start_block + block_count as u64);
        // The head never reaches the tail: one block between them always stays free.
        assert_ne!(self.open.start_block, shared.volume.tail.block, "the head caught up with the tail");
        let offset_bytes = batch.start_block * BLOCK_BYTES as u64;
        // The same bytes in the batch's mirror slot; its header names its place in the log.
        let mirror = shared
            .volume
            .mirrored()
            .then(|| (shared.volume.mirror_slot_block(batch.sequence) * BLOCK_BYTES as u64, batch.buffer.clone()));
        let (offset_bytes, data) = self.planted_tail_overwrite(shared, offset_bytes, batch.start_block, batch.buffer);
        let sequence = batch.sequence;
        shared.stats.batches_pipelined += u64::from(!self.in_flight.is_empty());
        debug_assert!(self.in_flight.back().is_none_or(|last| last.sequence + 1 == sequence), "sealed in order");
        self.in_flight.push_back(InFlightBatch {
            sequence,
            start_block: batch.start_block,
            effects: batch.effects,
            durable: false,
            writes_left: 1 + u8::from(mirror.is_some()),
        });
        assert!(self.in_flight.len() <= Self::pipeline_depth(shared), "the pipeline holds at most its depth");
        debug_assert_eq!(self.open.sequence, next_sequence, "the next batch follows the sealed one");
        debug_assert_eq!(self.open.record_count, 0, "the new open batch starts empty");
        debug_assert!(self.durable_sequence < next_sequence - 1, "a sealed batch is not durable yet");
        for (offset_bytes, data) in std::iter::once((offset_bytes, data)).chain(mirror) {
            debug_assert!(data.len() <= (shared.volume.batch_blocks_max as usize + 1) * BLOCK_BYTES);
            let kind = if shared.config.write_through {
                IoKind::WriteDurable { offset_bytes, data }
            } else {
                IoKind::Write { offset_bytes, data }
            };
            shared.push_io(IoPurpose::BatchWrite { sequence }, kind);
        }
        true
    }

    /// The planted bug `overwrite-tail-block`: the batch's write also covers the previous
    /// batch's last block, with the bytes it had (harmless, unless torn). Otherwise unchanged.
    fn planted_tail_overwrite(
        &mut self,
        shared: &Shared,
        mut offset_bytes: u64,
        start_block: u64,
        mut data: Vec<u8>,
    ) -> (u64, Vec<u8>) {
        if !shared.config.has_bug(Bug::OverwriteTailBlock) {
            return (offset_bytes, data);
        }
        let block_count = (data.len() / BLOCK_BYTES) as u64;
        let last_block = data[data.len() - BLOCK_BYTES..].to_vec();
        // Only where the previous batch ended right before this one (not across a wrap).
        if let Some((end_block, previous)) = self.last_block.take() {
            if end_block == start_block {
                offset_bytes -= BLOCK_BYTES as u64;
                data.splice(0..0, previous);
            }
        }
        self.last_block = Some((start_block + block_count, last_block));
        (offset_bytes, data)
    }

    pub fn on_write(&mut self, sequence: u64, result: Result<Vec<u8>, IoError>, shared: &mut Shared) -> LogStep {
        let Some(index) = self.in_flight_index(sequence, shared) else { return LogStep::Nothing };
        if let Err(error) = result {
            return LogStep::Failed(ReadOnlyReason::LogWriteFailed(error));
        }
        let batch = &mut self.in_flight[index];
        assert!(batch.writes_left > 0, "a batch write completes only while one is in flight");
        assert!(!batch.durable, "a batch is durable only after its writes");
        batch.writes_left -= 1;
        if batch.writes_left > 0 {
            return LogStep::Nothing; // the other copy is still being written
        }
        if shared.config.write_through {
            // The write was durable when it completed: this is the commit.
            batch.durable = true;
            return self.release_durable(shared);
        }
        shared.push_io(IoPurpose::BatchSync { sequence }, IoKind::Sync);
        if shared.config.has_bug(Bug::AcknowledgeBeforeSync) {
            batch.durable = true;
            return self.release_durable(shared);
        }
        LogStep::Nothing
    }

    pub fn on_sync(&mut self, sequence: u64, result: Result<Vec<u8>, IoError>, shared: &mut Shared) -> LogStep {
        let Some(index) = self.in_flight_index(sequence, shared) else { return LogStep::Nothing };
        if let Err(error) = result {
            if shared.config.has_bug(Bug::RetrySyncAfterFailure) {
                shared.push_io(IoPurpose::BatchSync { sequence }, IoKind::Sync);
                return LogStep::Nothing;
            }
            return LogStep::Failed(ReadOnlyReason::LogSyncFailed(error));
        }
        let batch = &mut self.in_flight[index];
        assert_eq!(batch.writes_left, 0, "a batch is synced after its writes completed");
        batch.durable = true;
        self.release_durable(shared)
    }

    /// Where batch `sequence` is in the pipeline. None if it is no longer there: another write
    /// failed while it was in flight (the batch was dropped and its waiters answered with
    /// errors), or the planted early acknowledgement released it before its sync.
    fn in_flight_index(&self, sequence: u64, shared: &Shared) -> Option<usize> {
        let index = self.in_flight.iter().position(|batch| batch.sequence == sequence);
        let early_bug =
            shared.config.has_bug(Bug::AcknowledgeBeforeSync) || shared.config.has_bug(Bug::ReleaseOutOfOrder);
        let released_early = early_bug && sequence <= self.durable_sequence;
        assert!(
            index.is_some() || shared.read_only.is_some() || released_early,
            "a completion for batch {sequence}, which is not in flight"
        );
        index
    }

    /// Releases the durable batches at the front of the pipeline, in order: a batch durable
    /// before the one ahead of it waits for it.
    fn release_durable(&mut self, shared: &Shared) -> LogStep {
        if shared.config.has_bug(Bug::ReleaseOutOfOrder) {
            // The planted bug: a durable batch stands for every batch before it.
            if let Some(newest) = self.in_flight.iter().rposition(|batch| batch.durable) {
                self.in_flight.iter_mut().take(newest).for_each(|batch| batch.durable = true);
            }
        }
        let mut batches = Vec::new();
        while self.in_flight.front().is_some_and(|batch| batch.durable) {
            let batch = self.in_flight.pop_front().expect("checked above");
            assert_eq!(batch.sequence, self.durable_sequence + 1, "batches become durable in order");
            assert!(batch.sequence <= self.newest_sequence, "a durable batch was appended to");
            self.durable_sequence = batch.sequence;
            batches.push((batch.sequence, batch.effects));
        }
        if batches.is_empty() {
            return LogStep::Nothing;
        }
        // Not now: the replies just released reach their clients only after this input, and
        // their next writes belong in the next batch. The driver's next tick seals it.
        self.seal_at_tick = true;
        LogStep::Durable { batches }
    }

    /// After a failed write or sync nothing more is written: the open and in-flight batches are
    /// dropped, and the newest state is the durable one (a later DBSIZE waits on nothing that
    /// could never become durable).
    pub fn abandon(&mut self) {
        self.in_flight.clear();
        self.seal_at_tick = false;
        let sequence = self.open.sequence;
        self.open = OpenBatch::new(sequence, self.open.start_block, 0);
        self.newest_sequence = self.durable_sequence;
    }
}
