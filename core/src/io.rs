//! The storage-token contract between the engine and a driver.

/// An opaque handle naming one I/O in flight. The engine allocates it from a slab; the driver
/// hands it back exactly once in an [`IoCompletion`]. A token is not reused until its completion
/// has been consumed, so a stale or forged completion is detected (and rejected with a panic in
/// every build: it is a driver bug, not bad input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoToken {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl IoToken {
    /// A stable number for traces and driver bookkeeping.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }
}

/// What the driver must do. Offsets and lengths are multiples of [`crate::BLOCK_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Read `length_bytes` at `offset_bytes`; the completion carries the bytes.
    Read { offset_bytes: u64, length_bytes: u32 },
    /// Write `data` at `offset_bytes`. Not durable until a later `Sync` completes.
    Write { offset_bytes: u64, data: Vec<u8> },
    /// Make every write that completed before this sync was issued durable.
    Sync,
    /// Write `data` at `offset_bytes` and make it durable before completing (O_DSYNC, or a
    /// write followed by a data sync): the engine's group commit in one I/O when
    /// `Config::write_through` is set.
    WriteDurable { offset_bytes: u64, data: Vec<u8> },
}

/// One request for the driver, carrying its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRequest {
    pub token: IoToken,
    pub kind: IoKind,
}

/// How an I/O failed. The engine only distinguishes "it failed"; the text is for humans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    #[error("I/O error (EIO)")]
    Eio,
    #[error("no space left on device (ENOSPC)")]
    NoSpace,
    #[error("I/O failed: {0}")]
    Other(String),
}

/// The driver's answer to one [`IoRequest`]. A read's `Ok` carries exactly the bytes asked for;
/// a write's and a sync's `Ok` carries an empty vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoCompletion {
    pub token: IoToken,
    pub result: Result<Vec<u8>, IoError>,
}
