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
    /// The engine refused the command (its error reply, classified).
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("unexpected reply to {command}: {reply}")]
    UnexpectedReply { command: &'static str, reply: String },
}

/// What kind of refusal an engine error reply is: match on this, not on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandErrorKind {
    /// The engine is read-only (`READONLY`): a failed write or sync, or a read-only open.
    ReadOnly,
    /// The log has no room for the write (`OOM disk full`).
    DiskFull,
    /// The write's batch failed: it may or may not be on disk, and is not acknowledged.
    NotDurable,
    /// A stored record failed verification: corrupt data, never returned as a value.
    DataCorrupt,
    /// Reading the value failed.
    Io,
    /// A key, value or command over the engine's limits.
    TooLarge,
    /// Bad input for the command (not an integer, an overflow, wrong arguments).
    Invalid,
}

/// An error reply from the engine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub kind: CommandErrorKind,
    /// The reply's text, as a Redis client would see it.
    pub message: String,
}

impl CommandError {
    /// Classifies an error reply. The engine's replies are Redis wire errors; this is the one
    /// place that reads their prefixes, and `classifies_every_engine_error` keeps it in step.
    pub fn from_reply(message: String) -> CommandError {
        const KINDS: [(&str, CommandErrorKind); 9] = [
            ("READONLY ", CommandErrorKind::ReadOnly),
            ("OOM disk full", CommandErrorKind::DiskFull),
            ("ERR not durable", CommandErrorKind::NotDurable),
            ("ERR data corrupt", CommandErrorKind::DataCorrupt),
            ("ERR I/O error", CommandErrorKind::Io),
            ("ERR short read", CommandErrorKind::Io),
            ("ERR value too large", CommandErrorKind::TooLarge),
            ("ERR key too long", CommandErrorKind::TooLarge),
            ("ERR command too large", CommandErrorKind::TooLarge),
        ];
        let kind = KINDS
            .iter()
            .find(|(prefix, _)| message.starts_with(prefix))
            .map_or(CommandErrorKind::Invalid, |(_, kind)| *kind);
        CommandError { kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::{CommandError, CommandErrorKind};

    #[test]
    fn classifies_every_engine_error() {
        let cases = [
            ("READONLY a log sync failed (I/O error (EIO))", CommandErrorKind::ReadOnly),
            ("OOM disk full: no room left in the log for this write (x)", CommandErrorKind::DiskFull),
            ("ERR not durable: a write failed", CommandErrorKind::NotDurable),
            ("ERR data corrupt: the record at byte offset 4096 failed verification", CommandErrorKind::DataCorrupt),
            ("ERR I/O error reading key: I/O error (EIO)", CommandErrorKind::Io),
            ("ERR short read from the volume", CommandErrorKind::Io),
            ("ERR value too large (the limit is 8 bytes)", CommandErrorKind::TooLarge),
            ("ERR key too long (the limit is 1024 bytes)", CommandErrorKind::TooLarge),
            ("ERR command too large: its records exceed one batch", CommandErrorKind::TooLarge),
            ("ERR value is not an integer or out of range", CommandErrorKind::Invalid),
            ("ERR increment or decrement would overflow", CommandErrorKind::Invalid),
        ];
        for (text, kind) in cases {
            let error = CommandError::from_reply(text.to_string());
            assert_eq!(error.kind, kind, "{text}");
            assert_eq!(error.to_string(), text);
        }
    }
}
