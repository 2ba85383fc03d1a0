//! The lock that keeps a data file to one writer: two engines appending to one log overwrite each
//! other's batches, and both go on acknowledging writes that neither can recover.
//!
//! The lock is `flock(2)` on the volume's own descriptor, held as long as that descriptor is open
//! (the `Volume`, then the driver that shares its `File`). The kernel drops it when the process
//! dies, so a crash leaves no stale lock (a killed holder's lock may outlive it by milliseconds:
//! see `EXITED_HOLDER_WAIT`); a live holder refuses a second open at once. `flock` rather
//! than an OFD lock (`F_OFD_SETLK`): both belong to the open file description, so a second
//! `open()` of the same path conflicts even within one process, but only `flock` records the
//! locking process: `/proc/locks` shows its pid, while OFD locks show -1 there and in `F_OFD_GETLK`.
//! The refusal can thus name the process to stop.
//!
//! Block devices are not locked here: they are opened with O_EXCL, which the kernel enforces.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::errors::VolumeError;

/// How a volume is opened, and so which lock it takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VolumeAccess {
    /// Read-write, by this opener alone: an engine that serves or benchmarks the volume.
    #[default]
    Exclusive,
    /// Read-only, beside other readers but never beside a writer: `quill check`. A shared open
    /// never creates, sizes or reformats the volume.
    Shared,
}

/// Who holds the lock that refused an open, as far as `/proc/locks` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockHolder {
    /// This process: another `Db` or `Volume` on the same path is still open.
    ThisProcess,
    Process(u32),
    /// No pid to show (no `/proc`, another pid namespace, or the holder just exited).
    Unknown,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockHolder::ThisProcess => {
                formatter.write_str("this process already has it open (another Db or volume on the same path)")
            }
            LockHolder::Process(pid) => write!(formatter, "another process (pid {pid}) has it open"),
            LockHolder::Unknown => formatter.write_str("another process has it open"),
        }
    }
}

/// How long an open waits for a lock whose holder has exited. The kernel drops the lock with the
/// last reference to the holder's open file, and io_uring requests in flight when a process is
/// killed keep one for some milliseconds after it is gone: a restart right after a crash must
/// not be refused. A live holder fails the open at once.
const EXITED_HOLDER_WAIT: Duration = Duration::from_secs(2);

/// Locks the open data file for `access`, or fails with [`VolumeError::Locked`].
pub(crate) fn lock(file: &File, path: &Path, access: VolumeAccess) -> Result<(), VolumeError> {
    let deadline = Instant::now() + EXITED_HOLDER_WAIT;
    loop {
        match try_lock(file, access) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            // Refusing is safer than running unlocked (a filesystem without flock, say).
            Err(source) => return Err(VolumeError::Io { path: path.into(), action: "lock (flock)", source }),
        }
        let holder = holder(file);
        if holder.is_alive() || Instant::now() >= deadline {
            return Err(VolumeError::Locked { path: path.into(), access, holder });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One `flock` attempt without waiting: `Ok(false)` if another open holds a conflicting lock.
fn try_lock(file: &File, access: VolumeAccess) -> io::Result<bool> {
    let operation = match access {
        VolumeAccess::Exclusive => libc::LOCK_EX,
        VolumeAccess::Shared => libc::LOCK_SH,
    };
    loop {
        // SAFETY: a plain syscall on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(error),
        }
    }
}

impl LockHolder {
    /// Whether the holder is a running process. `Unknown` is not: `/proc/locks` shows pid 0
    /// for a holder that has exited (and for one in another pid namespace).
    fn is_alive(self) -> bool {
        match self {
            LockHolder::ThisProcess => true,
            LockHolder::Process(pid) => {
                let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
                // SAFETY: signal 0 only checks that the process exists.
                unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
            }
            LockHolder::Unknown => false,
        }
    }
}

/// The holder of a conflicting lock on `file`'s inode, from `/proc/locks`.
fn holder(file: &File) -> LockHolder {
    let Ok(metadata) = file.metadata() else { return LockHolder::Unknown };
    let Ok(table) = std::fs::read_to_string("/proc/locks") else { return LockHolder::Unknown };
    match flock_holder(&table, metadata.dev(), metadata.ino()) {
        Some(pid) if pid == std::process::id() => LockHolder::ThisProcess,
        Some(pid) => LockHolder::Process(pid),
        None => LockHolder::Unknown,
    }
}

/// The pid of a `flock` holder of inode `ino` on device `dev`, from `/proc/locks` lines like
/// `1: FLOCK  ADVISORY  WRITE 8004 fe:00:10010786 0 EOF` (waiters read `1: -> FLOCK …` and hold
/// nothing). Where no line names `dev` exactly, one line with the inode alone is accepted:
/// btrfs reports one device to `stat` and another to `/proc/locks`.
fn flock_holder(table: &str, dev: u64, ino: u64) -> Option<u32> {
    let exact = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let inode_suffix = format!(":{ino}");
    let candidates: Vec<(u32, bool)> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (kind, pid, id) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
            let pid = pid.parse::<u32>().ok().filter(|&pid| pid > 0)?;
            (*kind == "FLOCK" && id.ends_with(&inode_suffix)).then_some((pid, *id == exact))
        })
        .collect();
    if let Some(&(pid, _)) = candidates.iter().find(|(_, exact)| *exact) {
        return Some(pid);
    }
    match candidates.as_slice() {
        [(pid, _)] => Some(*pid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "1: POSIX  ADVISORY  WRITE 77 fe:00:42 0 EOF\n\
                         2: FLOCK  ADVISORY  WRITE 8004 fe:00:10010786 0 EOF\n\
                         2: -> FLOCK  ADVISORY  WRITE 9000 fe:00:10010786 0 EOF\n\
                         3: OFDLCK ADVISORY  WRITE -1 fe:00:555 0 EOF\n\
                         4: FLOCK  ADVISORY  READ 31 08:01:10010786 0 EOF\n";

    fn dev(major: u32, minor: u32) -> u64 {
        libc::makedev(major, minor)
    }

    #[test]
    fn the_holder_is_the_flock_line_of_the_same_device_and_inode() {
        assert_eq!(flock_holder(TABLE, dev(0xfe, 0), 10010786), Some(8004));
        assert_eq!(flock_holder(TABLE, dev(8, 1), 10010786), Some(31));
    }

    #[test]
    fn other_lock_kinds_and_waiters_hold_nothing() {
        assert_eq!(flock_holder(TABLE, dev(0xfe, 0), 42), None, "POSIX lock");
        assert_eq!(flock_holder(TABLE, dev(0xfe, 0), 555), None, "OFD lock, pid -1");
        assert_eq!(flock_holder(TABLE, dev(0xfe, 0), 1001078), None, "a different inode");
    }

    #[test]
    fn an_inode_on_another_device_counts_only_when_it_is_the_only_one() {
        assert_eq!(flock_holder(TABLE, dev(0, 40), 10010786), None, "two candidates: ambiguous");
        let one = "1: FLOCK  ADVISORY  WRITE 8004 00:1f:99 0 EOF\n";
        assert_eq!(flock_holder(one, dev(0, 40), 99), Some(8004));
    }

    /// Creates and formats a volume at `path`.
    fn formatted(path: &Path) {
        let options = crate::DbOptions {
            create_size_bytes: Some(16 << 20),
            io: crate::IoChoice::Sync,
            ..crate::DbOptions::default()
        };
        crate::Db::open(path, options).expect("create").close().expect("close");
    }

    fn open(path: &Path, access: VolumeAccess) -> Result<crate::Volume, VolumeError> {
        crate::open_volume(path, &crate::VolumeOptions { access, ..crate::VolumeOptions::default() })
    }

    fn refused(result: Result<crate::Volume, VolumeError>) -> Option<(VolumeAccess, LockHolder)> {
        match result {
            Err(VolumeError::Locked { access, holder, .. }) => Some((access, holder)),
            _ => None,
        }
    }

    #[test]
    fn readers_share_a_volume_and_keep_a_writer_out() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("readers.qkv");
        formatted(&path);
        let first = open(&path, VolumeAccess::Shared).expect("a reader");
        let second = open(&path, VolumeAccess::Shared).expect("a second reader");
        let writer = refused(open(&path, VolumeAccess::Exclusive));
        assert_eq!(writer, Some((VolumeAccess::Exclusive, LockHolder::ThisProcess)));
        drop((first, second));
        open(&path, VolumeAccess::Exclusive).expect("the readers are gone");
    }

    #[test]
    fn a_writer_keeps_readers_and_writers_out_until_dropped() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("writer.qkv");
        formatted(&path);
        let writer = open(&path, VolumeAccess::Exclusive).expect("a writer");
        assert_eq!(refused(open(&path, VolumeAccess::Shared)), Some((VolumeAccess::Shared, LockHolder::ThisProcess)));
        let second = refused(open(&path, VolumeAccess::Exclusive));
        assert_eq!(second, Some((VolumeAccess::Exclusive, LockHolder::ThisProcess)));
        drop(writer);
        open(&path, VolumeAccess::Shared).expect("the writer is gone");
    }

    #[test]
    fn a_shared_open_never_creates() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("missing.qkv");
        let options = crate::VolumeOptions {
            create_size_bytes: Some(16 << 20),
            access: VolumeAccess::Shared,
            ..Default::default()
        };
        assert!(matches!(crate::open_volume(&path, &options), Err(VolumeError::Missing { .. })));
        assert!(!path.exists());
    }
}
