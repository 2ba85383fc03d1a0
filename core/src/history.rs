//! A recorded I/O history: what a real driver did for the engine (every write and sync, in
//! order, and when each completed), interleaved with what the application wrote and saw
//! acknowledged. `quill-io-real` records it around a real driver; `quill-sim` rebuilds every
//! legal crash image from it and checks recovery on each. Reads are not recorded: they change
//! nothing on disk.

use crate::Config;

/// One event, in the order the recorder saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryEvent {
    /// A write handed to the driver. `durable`: it is durable once complete (O_DSYNC).
    Write { id: u64, offset_bytes: u64, data: Vec<u8>, durable: bool },
    /// A sync handed to the driver: it covers the writes completed before it.
    Sync { id: u64 },
    /// The driver reported request `id` finished.
    Completed { id: u64, ok: bool },
    /// Format or recovery finished: the volume is open. Before it, a crash may leave a volume
    /// that does not open (a format never finished); nothing was acknowledged yet.
    Opened,
    /// The application asked for `value` to be written to `key`.
    Invoked { key: Vec<u8>, value: Vec<u8> },
    /// That write was acknowledged: it must survive any crash from here on.
    Acknowledged { key: Vec<u8>, value: Vec<u8> },
}

/// A run's history, from a blank (all-zero) volume on.
#[derive(Clone, Debug, Default)]
pub struct IoHistory {
    /// The engine's configuration (recovery of each image opens with it).
    pub config: Option<Config>,
    pub events: Vec<HistoryEvent>,
}
