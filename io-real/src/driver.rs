//! What both drivers do: take the engine's I/O requests, perform them, hand back completions.

use std::fs::File;
use std::io;
use std::sync::Arc;

use quill_core::{IoCompletion, IoError, IoRequest};

use crate::sync_driver::SyncDriver;
use crate::uring::UringDriver;

/// A driver performs the engine's I/O requests.
///
/// Contract: every pushed request completes exactly once, failures included; a `Sync` starts only
/// after every write pushed before it has completed (the engine relies on it: a sync covers the
/// writes that completed before it was issued).
pub trait Driver: Send {
    /// `"io_uring"` or `"sync"`, for notices and reports.
    fn name(&self) -> &'static str;
    /// Accepts a request; it starts at the next [`Driver::run`].
    fn push(&mut self, request: IoRequest);
    /// Starts everything pushed that may start (one batch), then moves finished requests to
    /// `completions`. With `wait`, blocks until at least one has finished, if any is pending.
    fn run(&mut self, wait: bool, completions: &mut Vec<IoCompletion>) -> Result<(), crate::DriverError>;
    /// Requests pushed and not completed yet.
    fn pending(&self) -> usize;
    /// A large buffer the engine is done with, to return a later read's bytes in (see
    /// `Engine::poll_spare_buffer`). By default it is freed.
    fn recycle(&mut self, buffer: Vec<u8>) {
        drop(buffer);
    }
    /// The open is complete: frees the spare buffers kept for recovery's large reads (up to
    /// 16 MiB that later, small reads would never use).
    fn forget_spare_buffers(&mut self) {}
}

/// Which driver to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoChoice {
    /// io_uring, falling back to `Sync` with a notice where it cannot be set up.
    #[default]
    Uring,
    /// Blocking pread/pwrite/fdatasync: works everywhere.
    Sync,
}

/// io_uring operations in flight at most, per engine.
pub const RING_ENTRIES: u32 = 256;

/// Builds the chosen driver over `file`. If io_uring cannot be set up (an old kernel, a
/// container's seccomp profile) it says so once on stderr and returns the portable driver.
pub fn open_driver(choice: IoChoice, file: Arc<File>) -> Box<dyn Driver> {
    if choice == IoChoice::Sync {
        return Box::new(SyncDriver::new(file));
    }
    match UringDriver::new(Arc::clone(&file), RING_ENTRIES) {
        Ok(driver) => Box::new(driver),
        Err(error) => {
            uring_unavailable_notice(&error);
            Box::new(SyncDriver::new(file))
        }
    }
}

fn uring_unavailable_notice(error: &crate::DriverError) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("quill: io_uring is unavailable ({error}); using the portable pread/pwrite driver (--io sync)");
    }
}

/// The engine's view of an OS error.
pub fn io_error_from_errno(errno: i32) -> IoError {
    match errno {
        libc::EIO => IoError::Eio,
        libc::ENOSPC => IoError::NoSpace,
        _ => IoError::Other(io::Error::from_raw_os_error(errno).to_string()),
    }
}

/// Whether an errno means "try the same operation again".
pub fn is_transient(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}

/// Attempts at one operation that keeps failing transiently (EINTR/EAGAIN) before giving up.
pub const TRANSIENT_RETRIES_MAX: u32 = 1000;
