//! The portable driver: blocking pread/pwrite/fdatasync on the caller's thread, one request at a
//! time, in push order (so a sync trivially follows the writes pushed before it).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;

use quill_core::{IoCompletion, IoError, IoKind, IoRequest};

use crate::aligned::BufferPool;
use crate::driver::{io_error_from_errno, is_transient, Driver, TRANSIENT_RETRIES_MAX};
use crate::spare::SpareBuffers;

pub struct SyncDriver {
    file: Arc<File>,
    queue: VecDeque<IoRequest>,
    pool: BufferPool,
    spares: SpareBuffers,
}

impl SyncDriver {
    pub fn new(file: Arc<File>) -> SyncDriver {
        SyncDriver { file, queue: VecDeque::new(), pool: BufferPool::new(16 << 20), spares: SpareBuffers::default() }
    }

    fn perform(&mut self, kind: IoKind) -> Result<Vec<u8>, IoError> {
        let fd = self.file.as_raw_fd();
        let result = match kind {
            IoKind::Read { offset_bytes, length_bytes } => {
                let mut buffer = self.pool.take(length_bytes as usize);
                let slice = &mut buffer.as_mut_slice()[..length_bytes as usize];
                let result = read_exact_at(fd, slice, offset_bytes).map(|()| self.spares.copy_of(slice));
                self.pool.give(buffer);
                result
            }
            IoKind::Write { offset_bytes, data } => {
                let buffer = self.pool.take_copy_of(&data);
                let result = write_all_at(fd, &buffer.as_slice()[..data.len()], offset_bytes).map(|()| Vec::new());
                self.pool.give(buffer);
                result
            }
            IoKind::WriteDurable { offset_bytes, data } => {
                // The portable way to a durable write: write, then fdatasync.
                let buffer = self.pool.take_copy_of(&data);
                let result =
                    write_all_at(fd, &buffer.as_slice()[..data.len()], offset_bytes).and_then(|()| data_sync(fd));
                self.pool.give(buffer);
                result.map(|()| Vec::new())
            }
            IoKind::Sync => data_sync(fd).map(|()| Vec::new()),
        };
        result.map_err(|error| match error.raw_os_error() {
            Some(errno) => io_error_from_errno(errno),
            None => IoError::Other(error.to_string()),
        })
    }
}

impl Driver for SyncDriver {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn push(&mut self, request: IoRequest) {
        self.queue.push_back(request);
    }

    fn run(&mut self, _wait: bool, completions: &mut Vec<IoCompletion>) -> Result<(), crate::DriverError> {
        while let Some(request) = self.queue.pop_front() {
            let result = self.perform(request.kind);
            completions.push(IoCompletion { token: request.token, result });
        }
        Ok(())
    }

    fn pending(&self) -> usize {
        self.queue.len()
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.spares.give(buffer);
    }

    fn forget_spare_buffers(&mut self) {
        self.spares.clear();
    }
}

/// Repeats a syscall returning a byte count on EINTR/EAGAIN, a bounded number of times.
fn retry_transient(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    for _ in 0..TRANSIENT_RETRIES_MAX {
        let result = call();
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = io::Error::last_os_error();
        if !error.raw_os_error().is_some_and(is_transient) {
            return Err(error);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// pread until `buffer` is full; a read that ends early (past the end of the volume) is an error.
pub fn read_exact_at(fd: RawFd, buffer: &mut [u8], offset_bytes: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buffer.len() {
        let remaining = &mut buffer[done..];
        let offset = (offset_bytes + done as u64) as libc::off_t;
        // SAFETY: reads into the live `remaining` slice only.
        let count =
            retry_transient(|| unsafe { libc::pread(fd, remaining.as_mut_ptr().cast(), remaining.len(), offset) })?;
        if count == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the volume"));
        }
        done += count;
    }
    Ok(())
}

/// pwrite until all of `data` is written, continuing short writes.
pub fn write_all_at(fd: RawFd, data: &[u8], offset_bytes: u64) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let remaining = &data[done..];
        let offset = (offset_bytes + done as u64) as libc::off_t;
        // SAFETY: writes from the live `remaining` slice only.
        let count =
            retry_transient(|| unsafe { libc::pwrite(fd, remaining.as_ptr().cast(), remaining.len(), offset) })?;
        if count == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write made no progress"));
        }
        done += count;
    }
    Ok(())
}

/// fdatasync; never retried after a real failure (the kernel may have dropped the dirty pages, so
/// a later success would not mean the data is durable). EINTR is retried: nothing was attempted.
pub fn data_sync(fd: RawFd) -> io::Result<()> {
    // SAFETY: a plain syscall on a descriptor the caller keeps open.
    retry_transient(|| unsafe { libc::fdatasync(fd) } as isize).map(|_| ())
}
