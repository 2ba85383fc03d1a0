//! The simulated storage path: I/O requests from the engine get a latency and maybe a fault,
//! wait in a queue ordered by due tick, and complete against the simulated disk.

use crate::trace::TraceEvent;
use std::collections::BTreeMap;

use quill_core::{IoCompletion, IoError, IoKind, IoRequest, BLOCK_BYTES};
use rand::Rng;

use crate::faults::{FaultKind, Outcome};
use crate::runner::Sim;

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

#[derive(Default)]
pub struct InFlight {
    queue: BTreeMap<(u64, u64), PendingIo>,
    issued_next: u64,
    completed_highest: u64,
}

impl InFlight {
    pub fn next_due(&self) -> Option<u64> {
        self.queue.keys().next().map(|(due, _)| *due)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }
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
    pub(crate) fn issue_io(&mut self, request: IoRequest) {
        self.watch.count(&request.kind);
        if let Some((offset_bytes, length_bytes)) = io_range(&request.kind) {
            let volume_bytes = self.knobs.volume_blocks * BLOCK_BYTES as u64;
            if offset_bytes + length_bytes > volume_bytes {
                let got = format!(
                    "{} over bytes {offset_bytes}..{}",
                    describe_io(&request.kind),
                    offset_bytes + length_bytes
                );
                let expected = format!("within the volume's {volume_bytes} bytes");
                return self.checker.fail("an I/O outside the volume", b"", expected, got);
            }
        }
        let token = request.token.as_u64();
        let [kind, offset, detail] = kind_word(&request.kind);
        self.trace.record(self.tick, &[TraceEvent::IoIssued.word(), token, kind, offset, detail], |line| {
            line.push_str(&format!("io issue {token:#x} {}", describe_io(&request.kind)))
        });
        let (latency_max, fail) = match &request.kind {
            IoKind::Read { .. } => (self.knobs.read_latency_ticks_max, self.fault(self.knobs.read_error_ppm)),
            IoKind::Write { .. } | IoKind::WriteDurable { .. } => {
                (self.knobs.write_latency_ticks_max, self.fault(self.knobs.write_error_ppm))
            }
            IoKind::Sync => (self.knobs.write_latency_ticks_max, self.fault(self.knobs.sync_error_ppm)),
        };
        let mut pending = PendingIo { sync_covers: Vec::new(), fail, target_offset_bytes: 0, length_bytes: 0, request };
        let issued = self.storage.issued_next;
        self.storage.issued_next += 1;
        match &mut pending.request.kind {
            IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                pending.target_offset_bytes = self.write_target(*offset_bytes, data.len());
                pending.length_bytes = data.len();
                // The disk keeps the bytes; the pending I/O needs only their length.
                self.disk.begin_write(issued, pending.target_offset_bytes, *offset_bytes, std::mem::take(data));
            }
            IoKind::Sync => pending.sync_covers = self.disk.sync_snapshot(),
            IoKind::Read { .. } => {}
        }
        let due = self.tick + 1 + self.latency_rng.gen_range(0..=latency_max);
        self.storage.queue.insert((due, issued), pending);
    }

    /// Where a write's bytes land: usually where asked, sometimes (misdirected) elsewhere in
    /// the log region.
    fn write_target(&mut self, offset_bytes: u64, length_bytes: usize) -> u64 {
        if !self.fault(self.knobs.misdirect_ppm) {
            return offset_bytes;
        }
        let blocks = (length_bytes / BLOCK_BYTES) as u64;
        let first = quill_core::format::LOG_START_BLOCK;
        let last = self.knobs.volume_blocks.saturating_sub(blocks).max(first + 1);
        let target = self.faults.rng.gen_range(first..last) * BLOCK_BYTES as u64;
        let intended = offset_bytes / BLOCK_BYTES as u64;
        let landed = target / BLOCK_BYTES as u64;
        let log_write = (quill_core::format::LOG_START_BLOCK..self.disk.log_end_block).contains(&intended);
        if !self.corruption_within_budget(intended, intended + blocks, log_write)
            || !self.corruption_within_budget(landed, landed + blocks, false)
        {
            return offset_bytes;
        }
        let damaged = (intended..intended + blocks).chain(landed..landed + blocks);
        self.faults.ledger.inject_damage(FaultKind::MisdirectedWrite, damaged);
        self.trace.record(self.tick, &[TraceEvent::Fault.word(), 8, offset_bytes, target], |line| {
            line.push_str(&format!("fault misdirected_write: {offset_bytes} lands at {target}"))
        });
        target
    }

    pub(crate) fn deliver_due_completions(&mut self) {
        let limit = self.storage.queue.len();
        for _ in 0..limit {
            let Some((&(due, issued), _)) = self.storage.queue.first_key_value() else { break };
            if due > self.tick {
                break;
            }
            let pending = self.storage.queue.remove(&(due, issued)).expect("first entry exists");
            if issued < self.storage.completed_highest {
                self.faults.ledger.inject_resolved(FaultKind::Reorder, Outcome::Harmless);
            }
            self.storage.completed_highest = self.storage.completed_highest.max(issued);
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

    fn complete_io(&mut self, issued: u64, pending: PendingIo) {
        let token = pending.request.token;
        let result = match &pending.request.kind {
            IoKind::Read { offset_bytes, length_bytes } if pending.fail => {
                self.faults.ledger.inject_resolved(FaultKind::ReadError, Outcome::Detected);
                let _ = (offset_bytes, length_bytes);
                Err(IoError::Eio)
            }
            IoKind::Read { offset_bytes, length_bytes } => Ok(self.disk.read(*offset_bytes, *length_bytes as usize)),
            IoKind::Write { .. } | IoKind::WriteDurable { .. } if pending.fail => {
                let landed = self.faults.rng.gen_bool(0.5);
                if landed {
                    let length_bytes = pending.length_bytes;
                    crate::disk::SimDisk::note_overwrite(
                        &mut self.faults.ledger,
                        pending.target_offset_bytes,
                        length_bytes,
                    );
                }
                self.disk.fail_write(issued, landed);
                let first = pending.target_offset_bytes / BLOCK_BYTES as u64;
                self.faults.ledger.note_failed_write(first, first + (pending.length_bytes / BLOCK_BYTES) as u64);
                self.faults.ledger.inject_resolved(FaultKind::WriteError, Outcome::Detected);
                Err(IoError::Eio)
            }
            IoKind::Write { offset_bytes, .. } | IoKind::WriteDurable { offset_bytes, .. } => {
                if pending.target_offset_bytes == *offset_bytes {
                    // While recovering, the engine writes only to repair (a batch from its mirror
                    // copy, the superblock copy it could not use).
                    let outcome = if self.recovering { Outcome::Repaired } else { Outcome::Overwritten };
                    crate::disk::SimDisk::note_resolved(
                        &mut self.faults.ledger,
                        *offset_bytes,
                        pending.length_bytes,
                        outcome,
                    );
                }
                self.disk.complete_write(issued);
                if matches!(pending.request.kind, IoKind::WriteDurable { .. }) {
                    self.disk.recovering = self.recovering;
                    self.disk.complete_sync(&[issued]); // O_DSYNC: durable on completion
                }
                Ok(Vec::new())
            }
            IoKind::Sync if pending.fail => {
                self.faults.ledger.inject_resolved(FaultKind::SyncError, Outcome::Detected);
                let (survive, tear) = (self.knobs.crash_survive_ppm, self.knobs.crash_tear_ppm);
                self.disk.fail_sync(&pending.sync_covers, &mut self.faults.rng, survive, tear, &mut self.faults.ledger);
                Err(IoError::Eio)
            }
            IoKind::Sync => {
                self.disk.recovering = self.recovering;
                self.disk.complete_sync(&pending.sync_covers);
                Ok(Vec::new())
            }
        };
        let ok = result.is_ok();
        let token_word = token.as_u64();
        self.trace.record(self.tick, &[TraceEvent::IoDone.word(), token_word, u64::from(ok)], |line| {
            line.push_str(&format!("io done {token_word:#x} {}", if ok { "ok" } else { "EIO (injected)" }))
        });
        let read_range = match &pending.request.kind {
            IoKind::Read { offset_bytes, length_bytes } if ok && !self.recovering => Some((
                *offset_bytes / BLOCK_BYTES as u64,
                (*offset_bytes + u64::from(*length_bytes)) / BLOCK_BYTES as u64,
            )),
            _ => None,
        };
        let failures_before = self.engine().stats().checksum_failures;
        self.server.complete(IoCompletion { token, result });
        if let Some((first, end)) = read_range {
            if self.faults.ledger.has_damage_in(first, end) {
                let detected = self.engine().stats().checksum_failures > failures_before;
                self.faults.ledger.resolve_blocks(
                    first,
                    end,
                    if detected { Outcome::Detected } else { Outcome::Harmless },
                );
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
