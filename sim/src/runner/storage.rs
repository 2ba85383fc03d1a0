//! The simulated storage path: I/O requests from the engine get a latency and maybe a fault,
//! wait in a queue ordered by due tick, and complete against the simulated disk.

use crate::trace::TraceEvent;
use std::collections::BTreeMap;

use quill_core::{IoCompletion, IoError, IoKind, IoRequest, BLOCK_BYTES};
use rand::Rng;

use rand_chacha::ChaCha8Rng;

use super::budget::BudgetView;
use crate::disk::SimDisk;
use crate::faults::{FaultKind, FaultLedger, Injector, Outcome};
use crate::knobs::Knobs;
use crate::runner::Sim;
use crate::trace::Trace;

/// An I/O in flight in the simulator.
pub struct PendingIo {
    request: IoRequest,
    /// For a sync: the writes it covers (those completed when it was issued).
    sync_covers: Vec<u64>,
    fail: bool,
    /// For a write: where its bytes really go, and how many (the bytes moved to the disk).
    target_offset_bytes: u64,
    length_bytes: usize,
}

/// The simulated storage path: I/Os in flight, ordered by due tick, with their latency drawn
/// from its own stream. It completes them against the disk it is handed; what a completion
/// means for the engine and the checker is the runner's.
pub struct Storage {
    queue: BTreeMap<(u64, u64), PendingIo>,
    issued_next: u64,
    completed_highest: u64,
    latency_rng: ChaCha8Rng,
}

/// What the storage path uses besides its own state: the disk, fault injection and its budget
/// inputs, the trace, the time and the knobs.
pub struct StorageContext<'a> {
    pub disk: &'a mut SimDisk,
    pub faults: &'a mut Injector,
    pub trace: &'a mut Trace,
    pub knobs: &'a Knobs,
    pub tick: u64,
    /// The engine is recovering (its writes then are repairs).
    pub recovering: bool,
    /// The engine is recovering or serves a read-only open (see budget.rs).
    pub cannot_repair: bool,
}

impl StorageContext<'_> {
    fn within_budget(&self, first: u64, end: u64, new_log_write: bool) -> bool {
        let budget = BudgetView {
            disk: self.disk,
            ledger: &self.faults.ledger,
            mirrored: self.knobs.mirrored,
            batch_blocks_max: self.knobs.batch_blocks_max,
            cannot_repair: self.cannot_repair,
        };
        budget.within(first, end, new_log_write)
    }
}

impl PendingIo {
    pub fn token(&self) -> quill_core::IoToken {
        self.request.token
    }
}

impl Storage {
    pub fn new(latency_rng: ChaCha8Rng) -> Storage {
        Storage { queue: BTreeMap::new(), issued_next: 0, completed_highest: 0, latency_rng }
    }

    pub fn next_due(&self) -> Option<u64> {
        self.queue.keys().next().map(|(due, _)| *due)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// A crash: nothing in flight completes.
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Queues an I/O: draws its fault, where a write lands, and its latency. `Err`: the I/O
    /// reaches outside the volume (what it touched, and the volume's size), a bug.
    pub fn issue(&mut self, request: IoRequest, cx: &mut StorageContext) -> Result<(), (String, String)> {
        if let Some((offset_bytes, length_bytes)) = io_range(&request.kind) {
            let volume_bytes = cx.knobs.volume_blocks * BLOCK_BYTES as u64;
            if offset_bytes + length_bytes > volume_bytes {
                let got = format!(
                    "{} over bytes {offset_bytes}..{}",
                    describe_io(&request.kind),
                    offset_bytes + length_bytes
                );
                return Err((format!("within the volume's {volume_bytes} bytes"), got));
            }
        }
        let token = request.token.as_u64();
        let [kind, offset, detail] = kind_word(&request.kind);
        cx.trace.record(cx.tick, &[TraceEvent::IoIssued.word(), token, kind, offset, detail], |line| {
            line.push_str(&format!("io issue {token:#x} {}", describe_io(&request.kind)))
        });
        let (latency_max, fail) = match &request.kind {
            IoKind::Read { .. } => (cx.knobs.read_latency_ticks_max, cx.faults.fault(cx.knobs.read_error_ppm)),
            IoKind::Write { .. } | IoKind::WriteDurable { .. } => {
                (cx.knobs.write_latency_ticks_max, cx.faults.fault(cx.knobs.write_error_ppm))
            }
            IoKind::Sync => (cx.knobs.write_latency_ticks_max, cx.faults.fault(cx.knobs.sync_error_ppm)),
        };
        let mut pending = PendingIo { sync_covers: Vec::new(), fail, target_offset_bytes: 0, length_bytes: 0, request };
        let issued = self.issued_next;
        self.issued_next += 1;
        match &mut pending.request.kind {
            IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                pending.target_offset_bytes = write_target(cx, *offset_bytes, data.len());
                pending.length_bytes = data.len();
                // The disk keeps the bytes; the pending I/O needs only their length.
                cx.disk.begin_write(issued, pending.target_offset_bytes, *offset_bytes, std::mem::take(data));
            }
            IoKind::Sync => pending.sync_covers = cx.disk.sync_snapshot(),
            IoKind::Read { .. } => {}
        }
        let due = cx.tick + 1 + self.latency_rng.gen_range(0..=latency_max);
        self.queue.insert((due, issued), pending);
        Ok(())
    }

    /// The next I/O due by `tick`, in due order (a completion before one issued earlier is a
    /// reorder, counted).
    pub fn pop_due(&mut self, tick: u64, ledger: &mut FaultLedger) -> Option<(u64, PendingIo)> {
        let (&(due, issued), _) = self.queue.first_key_value()?;
        if due > tick {
            return None;
        }
        let pending = self.queue.remove(&(due, issued)).expect("first entry exists");
        if issued < self.completed_highest {
            ledger.inject_resolved(FaultKind::Reorder, Outcome::Harmless);
        }
        self.completed_highest = self.completed_highest.max(issued);
        Some((issued, pending))
    }

    /// Completes an I/O against the disk: its result, as the engine will get it.
    pub fn complete(&mut self, issued: u64, pending: &PendingIo, cx: &mut StorageContext) -> Result<Vec<u8>, IoError> {
        let result = match &pending.request.kind {
            IoKind::Read { .. } if pending.fail => {
                cx.faults.ledger.inject_resolved(FaultKind::ReadError, Outcome::Detected);
                Err(IoError::Eio)
            }
            IoKind::Read { offset_bytes, length_bytes } => Ok(cx.disk.read(*offset_bytes, *length_bytes as usize)),
            IoKind::Write { .. } | IoKind::WriteDurable { .. } if pending.fail => {
                let landed = cx.faults.rng.gen_bool(0.5);
                if landed {
                    SimDisk::note_overwrite(&mut cx.faults.ledger, pending.target_offset_bytes, pending.length_bytes);
                }
                cx.disk.fail_write(issued, landed);
                let first = pending.target_offset_bytes / BLOCK_BYTES as u64;
                cx.faults.ledger.note_failed_write(first, first + (pending.length_bytes / BLOCK_BYTES) as u64);
                cx.faults.ledger.inject_resolved(FaultKind::WriteError, Outcome::Detected);
                Err(IoError::Eio)
            }
            IoKind::Write { offset_bytes, .. } | IoKind::WriteDurable { offset_bytes, .. } => {
                if pending.target_offset_bytes == *offset_bytes {
                    // While recovering, the engine writes only to repair (a batch from its mirror
                    // copy, the superblock copy it could not use).
                    let outcome = if cx.recovering { Outcome::Repaired } else { Outcome::Overwritten };
                    SimDisk::note_resolved(&mut cx.faults.ledger, *offset_bytes, pending.length_bytes, outcome);
                }
                cx.disk.complete_write(issued);
                if matches!(pending.request.kind, IoKind::WriteDurable { .. }) {
                    cx.disk.recovering = cx.recovering;
                    cx.disk.complete_sync(&[issued]); // O_DSYNC: durable on completion
                }
                Ok(Vec::new())
            }
            IoKind::Sync if pending.fail => {
                cx.faults.ledger.inject_resolved(FaultKind::SyncError, Outcome::Detected);
                let (survive, tear) = (cx.knobs.crash_survive_ppm, cx.knobs.crash_tear_ppm);
                let faults = &mut *cx.faults;
                cx.disk.fail_sync(&pending.sync_covers, &mut faults.rng, survive, tear, &mut faults.ledger);
                Err(IoError::Eio)
            }
            IoKind::Sync => {
                cx.disk.recovering = cx.recovering;
                cx.disk.complete_sync(&pending.sync_covers);
                Ok(Vec::new())
            }
        };
        let ok = result.is_ok();
        let token_word = pending.request.token.as_u64();
        cx.trace.record(cx.tick, &[TraceEvent::IoDone.word(), token_word, u64::from(ok)], |line| {
            line.push_str(&format!("io done {token_word:#x} {}", if ok { "ok" } else { "EIO (injected)" }))
        });
        result
    }
}

/// Where a write's bytes land: usually where asked, sometimes (misdirected) elsewhere in the
/// log region.
fn write_target(cx: &mut StorageContext, offset_bytes: u64, length_bytes: usize) -> u64 {
    if !cx.faults.fault(cx.knobs.misdirect_ppm) {
        return offset_bytes;
    }
    let blocks = (length_bytes / BLOCK_BYTES) as u64;
    let first = quill_core::format::LOG_START_BLOCK;
    let last = cx.knobs.volume_blocks.saturating_sub(blocks).max(first + 1);
    let target = cx.faults.rng.gen_range(first..last) * BLOCK_BYTES as u64;
    let intended = offset_bytes / BLOCK_BYTES as u64;
    let landed = target / BLOCK_BYTES as u64;
    let log_write = (quill_core::format::LOG_START_BLOCK..cx.disk.log_end_block).contains(&intended);
    if !cx.within_budget(intended, intended + blocks, log_write) || !cx.within_budget(landed, landed + blocks, false) {
        return offset_bytes;
    }
    let damaged = (intended..intended + blocks).chain(landed..landed + blocks);
    cx.faults.ledger.inject_damage(FaultKind::MisdirectedWrite, damaged);
    cx.trace.record(cx.tick, &[TraceEvent::Fault.word(), 8, offset_bytes, target], |line| {
        line.push_str(&format!("fault misdirected_write: {offset_bytes} lands at {target}"))
    });
    target
}

fn kind_word(kind: &IoKind) -> [u64; 3] {
    match kind {
        IoKind::Read { offset_bytes, length_bytes } => [1, *offset_bytes, u64::from(*length_bytes)],
        IoKind::Write { offset_bytes, data } => [2, *offset_bytes, crate::trace::digest_write(data)],
        IoKind::WriteDurable { offset_bytes, data } => [8, *offset_bytes, crate::trace::digest_write(data)],
        IoKind::Sync => [3, 0, 0],
    }
}

impl Sim {
    /// The storage path's borrow of the world for one call.
    fn storage_parts(&mut self) -> (&mut Storage, StorageContext<'_>) {
        let cx = StorageContext {
            disk: &mut self.disk,
            faults: &mut self.faults,
            trace: &mut self.trace,
            knobs: &self.knobs,
            tick: self.tick,
            recovering: self.recovering,
            cannot_repair: self.recovering || self.opened_read_only,
        };
        (&mut self.storage, cx)
    }

    pub(crate) fn issue_io(&mut self, request: IoRequest) {
        self.watch.count(&request.kind);
        let (storage, mut cx) = self.storage_parts();
        if let Err((expected, got)) = storage.issue(request, &mut cx) {
            self.checker.fail("an I/O outside the volume", b"", expected, got);
        }
    }

    pub(crate) fn deliver_due_completions(&mut self) {
        let limit = self.storage.len();
        for _ in 0..limit {
            let Some((issued, pending)) = self.storage.pop_due(self.tick, &mut self.faults.ledger) else { break };
            if self.at_crash_point(&pending) {
                return; // crashed just before this completion: nothing in flight completes
            }
            self.complete_io(issued, pending);
            if !self.is_running() {
                return;
            }
        }
    }

    /// A crash point: a sync, or a durable write, about to complete successfully. Counts it,
    /// notes its writes with `census`, and crashes there if the options chose it.
    fn at_crash_point(&mut self, pending: &PendingIo) -> bool {
        if self.crash_plan.closed
            || pending.fail
            || !matches!(pending.request.kind, IoKind::Sync | IoKind::WriteDurable { .. })
        {
            return false;
        }
        self.crash_plan.points_seen += 1;
        if self.options.census {
            self.crash_plan.points.push(crate::images::CrashPoint { write_sectors: self.disk.unsynced_sectors() });
        }
        let Some(image) = self.options.crash_image.as_ref().filter(|image| image.point == self.crash_plan.points_seen)
        else {
            return false;
        };
        self.crash_plan.forced_image = Some(image.masks.clone());
        self.crash_plan.image_taken = true;
        let point = image.point;
        self.trace.record(self.tick, &[TraceEvent::CrashImage.word(), point], |line| {
            line.push_str(&format!("crash image at crash point {point}"))
        });
        self.crash();
        // The workload ends here: what follows settles, restarts cleanly and reads every key.
        self.options.ops = self.ops_submitted;
        true
    }

    /// Completes an I/O, hands the result to the engine, and resolves damage a read met.
    fn complete_io(&mut self, issued: u64, pending: PendingIo) {
        let (storage, mut cx) = self.storage_parts();
        let result = storage.complete(issued, &pending, &mut cx);
        let read_range = match &pending.request.kind {
            IoKind::Read { offset_bytes, length_bytes } if result.is_ok() && !self.recovering => Some((
                *offset_bytes / BLOCK_BYTES as u64,
                (*offset_bytes + u64::from(*length_bytes)) / BLOCK_BYTES as u64,
            )),
            _ => None,
        };
        let failures_before = self.engine().stats().checksum_failures;
        self.server.complete(IoCompletion { token: pending.request.token, result });
        if let Some((first, end)) = read_range {
            if self.faults.ledger.has_damage_in(first, end) {
                let detected = self.engine().stats().checksum_failures > failures_before;
                let outcome = if detected { Outcome::Detected } else { Outcome::Harmless };
                self.faults.ledger.resolve_blocks(first, end, outcome);
            }
        }
        self.drain_engine();
    }
}

/// The bytes an I/O touches, if any.
fn io_range(kind: &IoKind) -> Option<(u64, u64)> {
    match kind {
        IoKind::Read { offset_bytes, length_bytes } => Some((*offset_bytes, u64::from(*length_bytes))),
        IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
            Some((*offset_bytes, data.len() as u64))
        }
        IoKind::Sync => None,
    }
}

pub fn describe_io(kind: &IoKind) -> String {
    match kind {
        IoKind::Read { offset_bytes, length_bytes } => format!("read {length_bytes} bytes at {offset_bytes}"),
        IoKind::Write { offset_bytes, data } => format!("write {} bytes at {offset_bytes}", data.len()),
        IoKind::WriteDurable { offset_bytes, data } => format!("durable write {} bytes at {offset_bytes}", data.len()),
        IoKind::Sync => "sync".to_string(),
    }
}
