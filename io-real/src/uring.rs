//! The io_uring driver: one ring per engine, used from one thread.
//!
//! Each loop turn submits every request that may start in one `io_uring_enter`, then reaps all
//! completions. Short reads and writes are continued from where they stopped, EINTR/EAGAIN are
//! resubmitted (bounded), and other failures become error completions. A buffer stays owned by
//! its operation until the kernel's completion for it arrives (the kernel may still write into it until then), and at most
//! `entries` operations are in the kernel, so the completion queue (twice as large) cannot
//! overflow.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, register::Probe, types, IoUring};
use quill_core::{IoCompletion, IoError, IoKind, IoRequest, IoToken};
use slab::Slab;

use crate::aligned::{AlignedBuffer, BufferPool};
use crate::driver::{io_error_from_errno, is_transient, Driver, TRANSIENT_RETRIES_MAX};
use crate::spare::SpareBuffers;
use crate::DriverError;

/// One request being carried out, possibly in several kernel operations (short transfers).
struct Operation {
    token: IoToken,
    kind: OperationKind,
    buffer: Option<Buffer>,
    offset_bytes: u64,
    length_bytes: usize,
    done_bytes: usize,
    transient_failures: u32,
    /// For a write: its number in push order, so syncs can wait for earlier writes.
    write_number: u64,
    in_kernel: bool,
    /// A write that must be durable when it completes (RWF_DSYNC).
    durable: bool,
}

/// Where an operation's bytes are while the kernel works on them.
enum Buffer {
    /// A registered slot (its index): ReadFixed/WriteFixed, no page pinning per operation.
    Slot(u16),
    /// From the pool: for requests larger than a slot, or when every slot is taken.
    Pooled(AlignedBuffer),
}

/// Registered buffers: pinned once at setup, so an operation on one skips the kernel's per-I/O
/// page pinning (`gup_fast_fallback`, 1.9 % of the GET profile). Empty if registration failed.
struct Slots {
    buffers: Vec<AlignedBuffer>,
    free: Vec<u16>,
}

/// A slot holds the common small transfer: a GET's value or a small group commit.
const SLOT_BYTES: usize = 16 * 1024;

impl Slots {
    /// One slot per operation that may be in the kernel: `count * SLOT_BYTES` of locked memory.
    fn register(ring: &IoUring, count: usize) -> Slots {
        let count = count.min(usize::from(u16::MAX));
        let mut buffers: Vec<AlignedBuffer> = (0..count).map(|_| AlignedBuffer::new(SLOT_BYTES)).collect();
        let iovecs: Vec<libc::iovec> = buffers
            .iter_mut()
            .map(|buffer| libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() })
            .collect();
        // SAFETY: the buffers live as long as the driver, which outlives the ring's use of them:
        // `Drop` waits for operations in flight, or leaks the slots if it cannot.
        match unsafe { ring.submitter().register_buffers(&iovecs) } {
            // Without the locked-memory allowance (RLIMIT_MEMLOCK) every transfer uses the pool.
            Err(_) => Slots { buffers: Vec::new(), free: Vec::new() },
            Ok(()) => Slots { free: (0..count as u16).rev().collect(), buffers },
        }
    }

    /// A free slot for a transfer of `length_bytes`, if it fits one.
    fn take(&mut self, length_bytes: usize) -> Option<u16> {
        if length_bytes > SLOT_BYTES {
            return None;
        }
        self.free.pop()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OperationKind {
    Read,
    Write,
    Sync,
}

pub struct UringDriver {
    ring: IoUring,
    file: Arc<File>,
    operations: Slab<Operation>,
    /// Operations ready for the kernel (new, or a continuation), in order.
    ready: VecDeque<usize>,
    /// Syncs waiting for the writes pushed before them; each with the first write number after it.
    held_syncs: VecDeque<(usize, u64)>,
    /// Writes pushed and not yet complete, by write number.
    writes_pending: BTreeSet<u64>,
    write_number_next: u64,
    in_kernel: usize,
    in_kernel_max: usize,
    pool: BufferPool,
    spares: SpareBuffers,
    slots: Slots,
}

impl UringDriver {
    /// Sets up a ring of `entries` and checks that the kernel has the operations we use.
    pub fn new(file: Arc<File>, entries: u32) -> Result<UringDriver, DriverError> {
        let ring = IoUring::new(entries).map_err(DriverError::UringSetup)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(DriverError::UringSetup)?;
        for (code, name) in
            [(opcode::Read::CODE, "read"), (opcode::Write::CODE, "write"), (opcode::Fsync::CODE, "fsync")]
        {
            if !probe.is_supported(code) {
                return Err(DriverError::UringUnsupported(name));
            }
        }
        let slots = Slots::register(&ring, ring.params().sq_entries() as usize);
        Ok(UringDriver {
            in_kernel_max: ring.params().sq_entries() as usize,
            ring,
            file,
            operations: Slab::new(),
            ready: VecDeque::new(),
            held_syncs: VecDeque::new(),
            writes_pending: BTreeSet::new(),
            write_number_next: 0,
            in_kernel: 0,
            pool: BufferPool::new(64 << 20),
            spares: SpareBuffers::default(),
            slots,
        })
    }

    /// Moves held syncs whose earlier writes have all completed to the ready queue.
    fn release_syncs(&mut self) {
        while let Some(&(key, first_later_write)) = self.held_syncs.front() {
            let earlier_write_pending = self.writes_pending.first().is_some_and(|&number| number < first_later_write);
            if earlier_write_pending {
                break;
            }
            self.held_syncs.pop_front();
            self.ready.push_back(key);
        }
    }

    /// Puts ready operations into the submission queue, up to the in-kernel limit.
    fn fill_submission_queue(&mut self) {
        let fd = types::Fd(self.file.as_raw_fd());
        while self.in_kernel < self.in_kernel_max {
            let Some(&key) = self.ready.front() else { break };
            let operation = &mut self.operations[key];
            let entry = match operation.kind {
                OperationKind::Sync => opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build(),
                OperationKind::Read | OperationKind::Write => {
                    let (base, slot) = match operation.buffer.as_mut().expect("reads and writes own a buffer") {
                        Buffer::Slot(slot) => (self.slots.buffers[usize::from(*slot)].as_mut_ptr(), Some(*slot)),
                        Buffer::Pooled(buffer) => (buffer.as_mut_ptr(), None),
                    };
                    // SAFETY: `done_bytes < length_bytes <=` the buffer's length, so the pointer stays inside.
                    let pointer = unsafe { base.add(operation.done_bytes) };
                    let remaining = u32::try_from(operation.length_bytes - operation.done_bytes).unwrap_or(u32::MAX);
                    let offset = operation.offset_bytes + operation.done_bytes as u64;
                    let flags = if operation.durable { libc::RWF_DSYNC } else { 0 };
                    match (operation.kind, slot) {
                        (OperationKind::Read, Some(slot)) => {
                            opcode::ReadFixed::new(fd, pointer, remaining, slot).offset(offset).build()
                        }
                        (OperationKind::Read, None) => opcode::Read::new(fd, pointer, remaining).offset(offset).build(),
                        (_, Some(slot)) => {
                            opcode::WriteFixed::new(fd, pointer, remaining, slot).offset(offset).rw_flags(flags).build()
                        }
                        (_, None) => opcode::Write::new(fd, pointer, remaining).offset(offset).rw_flags(flags).build(),
                    }
                }
            };
            let entry = entry.user_data(key as u64);
            // SAFETY: the buffer behind the entry is owned by `operations[key]`, which is kept
            // (buffer included) until the kernel's completion for it has been reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                break;
            }
            operation.in_kernel = true;
            self.in_kernel += 1;
            self.ready.pop_front();
        }
    }

    /// Submits the queue; with `wait`, blocks for one completion.
    fn enter(&mut self, wait: bool) -> Result<(), DriverError> {
        let want = usize::from(wait && self.in_kernel > 0);
        // Nothing to submit and nothing to wait for: completions are read from the ring
        // without the kernel (a loop turn that only served sockets costs no io_uring_enter).
        if want == 0 && self.ring.submission().is_empty() {
            return Ok(());
        }
        for _ in 0..TRANSIENT_RETRIES_MAX {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(error) => match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The kernel is short of completion room or memory: reap first, retry next turn.
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => return Ok(()),
                    _ => return Err(DriverError::UringSubmit(error)),
                },
            }
        }
        Ok(())
    }

    fn reap(&mut self, completions: &mut Vec<IoCompletion>) {
        let finished: Vec<(usize, i32)> =
            self.ring.completion().map(|entry| (entry.user_data() as usize, entry.result())).collect();
        for (key, result) in finished {
            self.in_kernel -= 1;
            self.operations[key].in_kernel = false;
            if let Some(outcome) = self.advance(key, result) {
                let operation = self.operations.remove(key);
                completions.push(self.finish(operation, outcome));
            }
        }
    }

    /// Applies one kernel result; returns the outcome when the operation is over.
    fn advance(&mut self, key: usize, result: i32) -> Option<Result<(), IoError>> {
        let operation = &mut self.operations[key];
        if result < 0 {
            let errno = -result;
            if is_transient(errno) && operation.transient_failures < TRANSIENT_RETRIES_MAX {
                operation.transient_failures += 1;
                self.ready.push_back(key);
                return None;
            }
            return Some(Err(io_error_from_errno(errno)));
        }
        if operation.kind == OperationKind::Sync {
            return Some(Ok(()));
        }
        let moved = result as usize;
        if moved == 0 {
            let reason = if operation.kind == OperationKind::Read {
                "read past the end of the volume"
            } else {
                "write made no progress"
            };
            return Some(Err(IoError::Other(reason.to_string())));
        }
        operation.done_bytes += moved;
        if operation.done_bytes < operation.length_bytes {
            // A short transfer: continue from where it stopped.
            self.ready.push_back(key);
            return None;
        }
        Some(Ok(()))
    }

    fn finish(&mut self, mut operation: Operation, outcome: Result<(), IoError>) -> IoCompletion {
        if operation.kind == OperationKind::Write {
            self.writes_pending.remove(&operation.write_number);
        }
        let result = outcome.map(|()| match (operation.kind, &operation.buffer) {
            (OperationKind::Read, Some(buffer)) => {
                self.spares.copy_of(&bytes_of(&self.slots, buffer)[..operation.length_bytes])
            }
            _ => Vec::new(),
        });
        match operation.buffer.take() {
            Some(Buffer::Slot(slot)) => self.slots.free.push(slot),
            Some(Buffer::Pooled(buffer)) => self.pool.give(buffer),
            None => {}
        }
        IoCompletion { token: operation.token, result }
    }
}

/// The bytes of an operation's buffer: its registered slot's, or its own.
fn bytes_of<'a>(slots: &'a Slots, buffer: &'a Buffer) -> &'a [u8] {
    match buffer {
        Buffer::Slot(slot) => slots.buffers[usize::from(*slot)].as_slice(),
        Buffer::Pooled(buffer) => buffer.as_slice(),
    }
}

impl UringDriver {
    /// A buffer for a read of `length_bytes`: a registered slot if one fits and is free.
    fn buffer_for_read(&mut self, length_bytes: usize) -> Buffer {
        match self.slots.take(length_bytes) {
            Some(slot) => Buffer::Slot(slot),
            None => Buffer::Pooled(self.pool.take(length_bytes)),
        }
    }

    /// A buffer holding a copy of `data`, zero-padded to whole blocks.
    fn buffer_for_write(&mut self, data: &[u8]) -> Buffer {
        let Some(slot) = self.slots.take(data.len()) else {
            return Buffer::Pooled(self.pool.take_copy_of(data));
        };
        let padded = data.len().div_ceil(crate::aligned::ALIGNMENT_BYTES) * crate::aligned::ALIGNMENT_BYTES;
        let bytes = self.slots.buffers[usize::from(slot)].as_mut_slice();
        bytes[..data.len()].copy_from_slice(data);
        bytes[data.len()..padded].fill(0);
        Buffer::Slot(slot)
    }
}

impl Driver for UringDriver {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn push(&mut self, request: IoRequest) {
        let durable = matches!(request.kind, IoKind::WriteDurable { .. });
        let (kind, buffer, offset_bytes, length_bytes) = match request.kind {
            IoKind::Read { offset_bytes, length_bytes } => (
                OperationKind::Read,
                Some(self.buffer_for_read(length_bytes as usize)),
                offset_bytes,
                length_bytes as usize,
            ),
            IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                (OperationKind::Write, Some(self.buffer_for_write(&data)), offset_bytes, data.len())
            }
            IoKind::Sync => (OperationKind::Sync, None, 0, 0),
        };
        let write_number = self.write_number_next;
        let operation = Operation {
            token: request.token,
            kind,
            buffer,
            offset_bytes,
            length_bytes,
            done_bytes: 0,
            transient_failures: 0,
            write_number,
            in_kernel: false,
            durable,
        };
        let key = self.operations.insert(operation);
        match kind {
            OperationKind::Write => {
                self.writes_pending.insert(write_number);
                self.write_number_next += 1;
                self.ready.push_back(key);
            }
            OperationKind::Sync => self.held_syncs.push_back((key, self.write_number_next)),
            OperationKind::Read => self.ready.push_back(key),
        }
    }

    fn run(&mut self, wait: bool, completions: &mut Vec<IoCompletion>) -> Result<(), DriverError> {
        self.release_syncs();
        self.fill_submission_queue();
        self.enter(wait)?;
        self.reap(completions);
        Ok(())
    }

    fn pending(&self) -> usize {
        self.operations.len()
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.spares.give(buffer);
    }

    fn forget_spare_buffers(&mut self) {
        self.spares.clear();
    }
}

impl Drop for UringDriver {
    /// The kernel may still write into buffers of operations in flight: wait for them before the
    /// buffers are freed. If waiting fails, leak the buffers rather than risk a use after free.
    fn drop(&mut self) {
        for _ in 0..TRANSIENT_RETRIES_MAX {
            if self.in_kernel == 0 {
                return;
            }
            if self.ring.submit_and_wait(1).is_err_and(|error| error.raw_os_error() != Some(libc::EINTR)) {
                break;
            }
            let finished = self.ring.completion().count();
            self.in_kernel -= finished;
        }
        if self.in_kernel > 0 {
            std::mem::forget(std::mem::take(&mut self.slots.buffers));
            for (_, operation) in self.operations.iter_mut() {
                if operation.in_kernel {
                    std::mem::forget(operation.buffer.take());
                }
            }
        }
    }
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "UringDriver {{ pending: {}, in_kernel: {} }}", self.operations.len(), self.in_kernel)
    }
}

/// Whether an io_uring ring can be set up here (for tests that must fall back otherwise).
pub fn uring_available() -> io::Result<()> {
    IoUring::new(8).map(|_| ())
}
