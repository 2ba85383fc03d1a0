//! One error enum per operation: opening a volume, running a driver, using a [`crate::Db`].

use std::io;
use std::path::PathBuf;

use quill_core::OpenError;

use crate::lock::{LockHolder, VolumeAccess};

/// Why a volume (data file or block device) could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: io::Error },
    #[error("{path} does not exist{}", missing_advice(*.access))]
    Missing { path: PathBuf, access: VolumeAccess },
    #[error("{path} is not a QuillKV volume (no QUILLKV1 superblock at byte 0 or 4096){}", foreign_advice(*.access))]
    NotAVolume { path: PathBuf, access: VolumeAccess },
    #[error(
        "{path} is a block device without a QuillKV superblock; refusing to format it unless told to \
         (--reformat, or DbOptions::reformat)"
    )]
    BlankDevice { path: PathBuf },
    /// A block device to format holds someone else's data, found by its signature.
    #[error("{path} holds {what}; refusing to format it over that (add --force to erase it, or DbOptions::force)")]
    ForeignSignature { path: PathBuf, what: &'static str },
    /// A block device another process holds: mounted, or opened exclusively (EBUSY).
    #[error(
        "{path} is held by another process (EBUSY: a mounted filesystem, or another exclusive open); stop it first"
    )]
    Busy { path: PathBuf },
    #[error("{path} is neither a regular file nor a block device")]
    UnsupportedKind { path: PathBuf },
    #[error("{path}: {size_bytes} bytes is too small for a volume (at least {minimum_bytes} bytes)")]
    TooSmall { path: PathBuf, size_bytes: u64, minimum_bytes: u64 },
    /// Another open of the same data file holds its lock (see `lock.rs`); nothing was changed.
    #[error("{path} is in use: {holder}; {}", locked_advice(*.access))]
    Locked { path: PathBuf, access: VolumeAccess, holder: LockHolder },
}

fn missing_advice(access: VolumeAccess) -> &'static str {
    match access {
        VolumeAccess::Exclusive => "; give a size to create it (--size BYTES, or DbOptions::create_size_bytes)",
        VolumeAccess::Shared => "",
    }
}

fn foreign_advice(access: VolumeAccess) -> &'static str {
    match access {
        VolumeAccess::Exclusive => " and is not empty; refusing to overwrite it: remove it or choose another path",
        VolumeAccess::Shared => "; nothing to check",
    }
}

fn locked_advice(access: VolumeAccess) -> &'static str {
    match access {
        VolumeAccess::Exclusive => {
            "only one process may use a volume at a time (two writers would lose acknowledged writes); stop the other one first"
        }
        VolumeAccess::Shared => "reading a volume needs its writer stopped first",
    }
}

/// Why a driver could not be set up or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("io_uring setup failed: {0}")]
    UringSetup(io::Error),
    #[error("io_uring lacks the {0} operation on this kernel")]
    UringUnsupported(&'static str),
    #[error("io_uring submit/wait failed: {0}")]
    UringSubmit(io::Error),
}

/// Why a [`crate::Db`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("could not open the volume: {0}")]
    Open(#[from] OpenError),
    #[error("could not start the engine thread: {0}")]
    Spawn(io::Error),
    #[error("the database is closed{0}")]
    Closed(String),
    /// The engine answered with an error reply (`ERR …`, `READONLY …`, `OOM …`).
    #[error("{0}")]
    Command(String),
    #[error("unexpected reply to {command}: {reply}")]
    UnexpectedReply { command: &'static str, reply: String },
}
