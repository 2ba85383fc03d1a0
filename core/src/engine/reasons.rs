//! Why the engine degraded: the read-only switch and compaction's halt, as values a driver can
//! match on. Their texts are what replies, INFO and logs show.

use crate::format::FormatError;
use crate::io::IoError;

/// Why the engine refuses writes. Never cleared until restart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadOnlyReason {
    #[error("the volume was opened read-only")]
    OpenedReadOnly,
    #[error("a log write failed ({0}); the engine is read-only until restart")]
    LogWriteFailed(IoError),
    #[error("a log sync failed ({0}); the engine is read-only until restart")]
    LogSyncFailed(IoError),
    /// A superblock copy's write or sync.
    #[error("a superblock write failed ({0}); the engine is read-only until restart")]
    SuperblockWriteFailed(IoError),
    #[error("a checkpoint write failed ({0}); the engine is read-only until restart")]
    CheckpointWriteFailed(IoError),
    #[error("a checkpoint sync failed ({0}); the engine is read-only until restart")]
    CheckpointSyncFailed(IoError),
}

/// Why compaction stopped for good (until restart). It never drops data it cannot read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HaltReason {
    #[error("reading the log's tail failed {attempts} times ({error})")]
    TailReadsFailed { attempts: u32, error: IoError },
    #[error("batch {sequence} at block {block} runs past the log region")]
    BatchPastRegion { sequence: u64, block: u64 },
    #[error("batch {sequence} at block {block} is corrupt ({error}); its records cannot be moved")]
    BatchCorrupt { sequence: u64, block: u64, error: FormatError },
    #[error("a record in batch {sequence} does not decode ({error})")]
    RecordUndecodable { sequence: u64, error: FormatError },
    #[error("batch {sequence} is neither at block {block} nor at the log region's start")]
    BatchMissing { sequence: u64, block: u64 },
}
