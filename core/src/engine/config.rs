//! Engine configuration.

use crate::BLOCK_BYTES;

/// A deliberately wrong behaviour that only tests (and `quill sim --plant`, as a
/// demonstration) switch on, to prove the simulator catches it. Without the `planted-bugs`
/// feature none can be switched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Acknowledge a batch once its write completes, before its sync.
    AcknowledgeBeforeSync,
    /// Rewrite the previous batch's last block in place in front of every new batch.
    OverwriteTailBlock,
    /// Serve values read from disk without verifying their checksum.
    SkipReadChecksum,
    /// At recovery, truncate the log at the first bad batch even when valid ones follow.
    TruncateAtFirstBadBatch,
    /// Write zeros where the index checkpoint's data belongs (the superblock still points at it).
    SkipCheckpointData,
    /// After a failed log sync, sync again and acknowledge if that succeeds (fsyncgate).
    RetrySyncAfterFailure,
    /// Keep the not-yet-durable writes visible when the engine turns read-only.
    ReadOnlyKeepsPendingWrites,
    /// Compact only above the space target, never because free space runs low (deletes on a
    /// full disk then free nothing: the lock-up a user hit).
    CompactionIgnoresLowSpace,
    /// At recovery, replay a batch from an older epoch where the next is expected (a stale
    /// batch left beside a torn one by an earlier crash with two batches in flight).
    IgnoreStaleEpoch,
    /// Release a durable batch's replies without waiting for the batches before it.
    ReleaseOutOfOrder,
    /// An EXEC, RENAME or COPY that reads from disk locks only the keys it reads, not the ones
    /// whose values it took from memory (the lost update of issue 27).
    ExecViewUnlocked,
    /// An EXEC that writes several keys leaves the last one out of its records.
    ExecWriteSetMissesKey,
    /// COPY with a cold source takes the destination as absent (overwrites it without REPLACE).
    CopyIgnoresDestinationWhenCold,
    /// A read-modify-write gives up its key lock once its value is read, before its record is
    /// appended (it then waits for batch room with the key open to others).
    ReadModifyWriteReleasedEarly,
    /// An EXEC that waits for room in a full batch forgets its WATCH before it runs again.
    StalledExecForgetsWatch,
    /// An EXEC whose view took a value of a batch that failed while its reads were out replies
    /// with it (seed 2574 heavy).
    ExecViewRevealsFailedBatch,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 16] = [
        PlantedBug::AcknowledgeBeforeSync,
        PlantedBug::OverwriteTailBlock,
        PlantedBug::SkipReadChecksum,
        PlantedBug::TruncateAtFirstBadBatch,
        PlantedBug::SkipCheckpointData,
        PlantedBug::RetrySyncAfterFailure,
        PlantedBug::ReadOnlyKeepsPendingWrites,
        PlantedBug::CompactionIgnoresLowSpace,
        PlantedBug::IgnoreStaleEpoch,
        PlantedBug::ReleaseOutOfOrder,
        PlantedBug::ExecViewUnlocked,
        PlantedBug::ExecWriteSetMissesKey,
        PlantedBug::CopyIgnoresDestinationWhenCold,
        PlantedBug::ReadModifyWriteReleasedEarly,
        PlantedBug::StalledExecForgetsWatch,
        PlantedBug::ExecViewRevealsFailedBatch,
    ];

    /// The bug's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AcknowledgeBeforeSync => "ack-before-sync",
            PlantedBug::OverwriteTailBlock => "overwrite-tail-block",
            PlantedBug::SkipReadChecksum => "skip-read-checksum",
            PlantedBug::TruncateAtFirstBadBatch => "truncate-at-first-bad-batch",
            PlantedBug::SkipCheckpointData => "skip-checkpoint-data",
            PlantedBug::RetrySyncAfterFailure => "retry-sync-after-failure",
            PlantedBug::ReadOnlyKeepsPendingWrites => "read-only-keeps-pending-writes",
            PlantedBug::CompactionIgnoresLowSpace => "compaction-ignores-low-space",
            PlantedBug::IgnoreStaleEpoch => "ignore-stale-epoch",
            PlantedBug::ReleaseOutOfOrder => "release-out-of-order",
            PlantedBug::ExecViewUnlocked => "exec-view-unlocked",
            PlantedBug::ExecWriteSetMissesKey => "exec-write-set-misses-key",
            PlantedBug::CopyIgnoresDestinationWhenCold => "copy-ignores-destination-when-cold",
            PlantedBug::ReadModifyWriteReleasedEarly => "read-modify-write-released-early",
            PlantedBug::StalledExecForgetsWatch => "stalled-exec-forgets-watch",
            PlantedBug::ExecViewRevealsFailedBatch => "exec-view-reveals-failed-batch",
        }
    }
}

impl std::str::FromStr for PlantedBug {
    type Err = String;
    fn from_str(text: &str) -> Result<PlantedBug, String> {
        PlantedBug::ALL.into_iter().find(|bug| bug.name() == text).ok_or_else(|| {
            let names: Vec<&str> = PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
            format!("unknown planted bug '{text}' (one of: {})", names.join(", "))
        })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The volume's size in blocks of [`BLOCK_BYTES`].
    pub volume_blocks: u64,
    /// Value reads in flight at most; more wait in a queue.
    pub queue_depth_max: usize,
    /// The largest value accepted, in bytes.
    pub value_bytes_max: usize,
    /// The index's room for durable keys: bytes of entries (18 bytes plus the key each). A
    /// write that would add a key beyond it is refused (`OOM index full`), since the index's
    /// arena addresses entries with 32-bit offsets. At most [`INDEX_BYTES_LIMIT`]; keys pending
    /// in the batches in flight may pass it by up to two batches.
    pub index_bytes_max: u64,
    /// The value cache's budget (keys plus values), in bytes; 0 sends every GET to disk.
    pub cache_bytes_max: usize,
    /// Report every change of the value cache through [`crate::Engine::poll_cache_change`], so a
    /// driver can keep a copy that other threads read (`quill_io_real::Db`'s caller-thread
    /// GETs). The cache holds durable values only, and a change is reported before the replies
    /// it precedes: a copy kept in drain order is linearizable. A driver that sets this must
    /// drain the changes after every input.
    pub publish_cache: bool,
    /// The largest batch (group commit) in blocks. Fixed at format time; `open` reads it back.
    pub batch_blocks_max: u32,
    /// Commands one client may have queued before further ones are refused.
    pub client_pipeline_max: usize,
    /// Seeds the index's and cache's hashing. A real driver draws it at random (so clients
    /// cannot aim keys at one bucket); the simulator derives it from its seed.
    pub hash_seed: u64,
    /// Commit each batch with one durable write (`IoKind::WriteDurable`) instead of a write
    /// and then a sync. For drivers that can write with O_DSYNC/FUA.
    pub write_through: bool,
    /// Open without writing anything (no epoch bump): recovery runs, reads are served, writes are
    /// refused. For `quill check`, which must not change the volume it verifies.
    pub open_read_only: bool,
    /// Each of the two index checkpoint slots at the end of the volume, in blocks; 0: no
    /// checkpoints. Fixed at format time; `open` reads it back.
    pub checkpoint_slot_blocks: u32,
    /// Write a new checkpoint once the log after the last one's replay point (or the whole log,
    /// without one) is this many blocks long; 0: never.
    pub checkpoint_interval_blocks: u64,
    /// Write every batch a second time, to one of four mirror slots, so that damage to the
    /// newest batches in the log (bit rot, a misdirected write) is repaired at recovery instead
    /// of being taken for a torn tail. Fixed at format time (format 7); `open` reads it back.
    pub mirror_batches: bool,
    /// On a format-7 volume, start a record of at most one block on a fresh block rather than
    /// let it cross a block boundary, so that a GET reads one block: padding costs log space,
    /// at most one record's length per block. The writer's choice; readers skip padding either
    /// way.
    pub small_records_whole: bool,
    /// The index is split by key hash into this many partitions (1 ..= 64), which a restart
    /// can fill in parallel (see `hand_out_index_work`).
    pub index_partitions: u32,
    /// During recovery, hand index partitions out with the records read for them
    /// (`Engine::poll_index_work`), for the driver to apply on other threads and give back
    /// (`Engine::complete_index_work`); otherwise the engine applies them itself. A driver that
    /// sets this must drain and give back every piece of work, or the open never completes.
    pub hand_out_index_work: bool,
    /// Records a partition collects during recovery before it is handed out (default 8,192:
    /// enough that a thread's hand-off costs little beside the inserts).
    pub index_work_records_min: usize,
    /// Records that may wait for handed-out partitions, per partition, before the scan stops
    /// reading the log until one comes back (default 32,768): the queue stays bounded however
    /// slow the workers are.
    pub index_backlog_records_max: usize,
    /// Batches in flight at once (pipelined group commit): the next batch is written while the
    /// one before is still being made durable. Replies are still released in batch order. The
    /// volume bounds it (`format::superblock::pipeline_depth_max`: 2 with four mirror slots, 1
    /// with two or none). At least 1.
    pub commit_pipeline_depth: u32,
    /// Open from the checkpoint if there is one; false scans the whole log from its tail (to
    /// measure the difference, or to distrust a checkpoint).
    pub use_checkpoint: bool,
    /// Compaction reads the log's tail in chunks of this many blocks (at least one batch).
    pub compaction_chunk_blocks: u32,
    /// It reads a chunk in pieces of this many blocks, two at a time, so that commits reach the
    /// device between them (one 4 MiB read made client writes wait behind it).
    pub compaction_read_piece_blocks: u32,
    /// Compaction's moved records fill at most this share of a batch (percent), so client
    /// writes always find room beside them.
    pub compaction_batch_percent: u32,
    /// Compaction cleans up to this many chunks before it moves the tail (each tail advance
    /// rewrites and syncs both superblock copies), while free space allows.
    pub compaction_chunks_per_advance: u32,
    /// Compaction runs while the log holds more than this share (percent) of the live records'
    /// bytes, plus a fixed slack (see `space.rs`), or when free space runs low.
    pub space_amplification_percent: u32,
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// The largest `Config::index_bytes_max`. Entries are addressed by 32-bit arena offsets; the
/// arena holds garbage up to the live entries' size (then it is rebuilt) and wastes under 1/16
/// at chunk ends, so live entries of 1.5 GiB stay below 3.4 GiB of offsets, under the 4 GiB
/// bound with room for two batches of pending keys.
pub const INDEX_BYTES_LIMIT: u64 = 3 << 29;

impl Config {
    /// Defaults for a volume of `volume_bytes` (rounded down to whole blocks).
    pub fn for_volume_bytes(volume_bytes: u64) -> Config {
        let volume_blocks = volume_bytes / BLOCK_BYTES as u64;
        let checkpoint_slot_blocks = (volume_blocks / 16).min(u64::from(u32::MAX)) as u32;
        // A small volume gets smaller batches: the log must hold several beyond its reserves.
        let log_blocks = volume_blocks.saturating_sub(3 + 2 * u64::from(checkpoint_slot_blocks));
        // Ten batches in the log, and four more for the mirror slots.
        let batch_blocks_max = (log_blocks / 14).clamp(1, 1024) as u32;
        // A record (header, key, value) must fit in one batch: leave room for a 4 KiB key.
        let value_bytes_max =
            (1024 * 1024).min(Config::batch_payload_bytes_max(batch_blocks_max).saturating_sub(4096 + 24));
        Config {
            volume_blocks,
            queue_depth_max: 64,
            value_bytes_max,
            index_bytes_max: INDEX_BYTES_LIMIT,
            cache_bytes_max: 64 * 1024 * 1024,
            publish_cache: false,
            batch_blocks_max,
            client_pipeline_max: 4096,
            hash_seed: 0,
            write_through: false,
            open_read_only: false,
            checkpoint_slot_blocks,
            checkpoint_interval_blocks: volume_bytes / BLOCK_BYTES as u64 / 8,
            use_checkpoint: true,
            mirror_batches: true,
            small_records_whole: true,
            index_partitions: 1,
            hand_out_index_work: false,
            index_work_records_min: 8192,
            index_backlog_records_max: 32768,
            commit_pipeline_depth: 2,
            compaction_chunk_blocks: 1024,
            compaction_read_piece_blocks: 16,
            compaction_batch_percent: 50,
            compaction_chunks_per_advance: 4,
            space_amplification_percent: 150,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// The payload bytes a batch can hold.
    pub fn batch_payload_bytes_max(batch_blocks_max: u32) -> usize {
        batch_blocks_max as usize * BLOCK_BYTES - crate::format::BATCH_HEADER_BYTES
    }

    #[cfg(feature = "planted-bugs")]
    pub(crate) fn has_bug(&self, bug: PlantedBug) -> bool {
        self.planted_bug == Some(bug)
    }

    #[cfg(not(feature = "planted-bugs"))]
    pub(crate) fn has_bug(&self, _bug: PlantedBug) -> bool {
        false
    }
}

pub(crate) use PlantedBug as Bug;
