//! The simulated disk: a durable image and a volatile view, both sparse (only written blocks are
//! stored; the rest read as zeros, like a preallocated file).
//!
//! A write lands in the volatile view when it completes. A sync makes durable the writes that
//! completed before it was issued. A crash drops the volatile view: each write that was not yet
//! durable (completed or still in flight) independently survives whole, vanishes, or tears at
//! 512-byte sectors (each sector new, old, or garbage).

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::faults::{FaultKind, FaultLedger, Outcome};
use quill_core::BLOCK_BYTES;

pub const SECTOR_BYTES: usize = 512;

type Block = Box<[u8]>;

/// A write that is not durable yet.
#[derive(Clone, Debug)]
pub struct UnsyncedWrite {
    pub id: u64,
    /// Where the bytes actually went (differs from the request for a misdirected write).
    pub offset_bytes: u64,
    /// Where the engine asked the bytes to go.
    pub intended_offset_bytes: u64,
    pub data: Vec<u8>,
    pub completed: bool,
}

#[derive(Clone, Default)]
pub struct SimDisk {
    durable: BTreeMap<u64, Block>,
    /// Blocks whose volatile content differs from (or is newer than) the durable image.
    volatile: BTreeMap<u64, Block>,
    unsynced: Vec<UnsyncedWrite>,
    pub volume_blocks: u64,
    /// The blocks the most recent durable log writes were meant for, newest last: the last
    /// acknowledged batches a torn tail could be mistaken for (as many as batches may be in
    /// flight at once, `DURABLE_WRITES_KEPT`).
    pub recent_durable_log_writes: VecDeque<(u64, u64)>,
    /// The log region ends here (the mirror slots, then the checkpoint slots, follow).
    pub log_end_block: u64,
    /// The mirror slots end here (equal to `log_end_block` without them).
    pub mirror_end_block: u64,
    /// The batches in flight at the last crash, which the next open takes if their log copies
    /// (or mirror copies, written back) survived: until a newer batch is durable they may be
    /// the newest ones, and their mirror copies may be torn (see budget.rs).
    pub adopted_tails: Vec<AdoptedTail>,
    /// Set by the simulator while the engine recovers: its durable writes then are repairs.
    pub recovering: bool,
    /// The latest mirror-slot write failed, or a crash lost or tore it, and no durable mirror
    /// write came since: the newest batch may have its log copy only (seed 407: its mirror
    /// write failed, a read-only open served it, then bit rot hit its log copy). Cleared by the
    /// next durable mirror write.
    pub mirror_write_failed: bool,
}

/// See [`SimDisk::adopted_tails`].
#[derive(Clone, Copy, Debug)]
pub struct AdoptedTail {
    /// The blocks its log copy was meant for.
    pub first: u64,
    pub end: u64,
    /// Its mirror copy landed whole at the crash, or a durable write of it has come since.
    pub mirror_whole: bool,
    /// CRC32C of its bytes: its mirror copy is the same bytes.
    pub digest: u32,
}

/// Durable log writes the disk remembers (the deepest commit pipeline).
const DURABLE_WRITES_KEPT: usize = 2;

impl SimDisk {
    pub fn new(volume_blocks: u64, log_end_block: u64) -> SimDisk {
        SimDisk { volume_blocks, log_end_block, ..SimDisk::default() }
    }

    fn block(&self, block: u64) -> Option<&Block> {
        self.volatile.get(&block).or_else(|| self.durable.get(&block))
    }

    pub fn read(&self, offset_bytes: u64, length_bytes: usize) -> Vec<u8> {
        // Filled block by block (unwritten blocks read as zeros), not zeroed first: recovery
        // reads megabytes at a time.
        let mut out = Vec::with_capacity(length_bytes);
        let first = offset_bytes / BLOCK_BYTES as u64;
        for index in 0..length_bytes.div_ceil(BLOCK_BYTES) {
            let want = (length_bytes - index * BLOCK_BYTES).min(BLOCK_BYTES);
            match self.block(first + index as u64) {
                Some(content) => out.extend_from_slice(&content[..want]),
                None => out.resize(out.len() + want, 0),
            }
        }
        out
    }

    /// Registers a write as issued (not yet complete): a crash now may still land it.
    pub fn begin_write(&mut self, id: u64, offset_bytes: u64, intended_offset_bytes: u64, data: Vec<u8>) {
        self.unsynced.push(UnsyncedWrite { id, offset_bytes, intended_offset_bytes, data, completed: false });
    }

    /// The write completes: its bytes appear in the volatile view.
    pub fn complete_write(&mut self, id: u64) {
        let Some(write) = self.unsynced.iter_mut().find(|write| write.id == id) else { return };
        write.completed = true;
        let first = write.offset_bytes / BLOCK_BYTES as u64;
        for (index, chunk) in write.data.chunks(BLOCK_BYTES).enumerate() {
            self.volatile.insert(first + index as u64, chunk.into());
        }
    }

    /// A write that failed with EIO: whether its bytes landed is unknown; model both.
    pub fn fail_write(&mut self, id: u64, landed: bool) {
        if landed {
            self.complete_write(id);
            return;
        }
        if let Some(write) = self.unsynced.iter().find(|write| write.id == id) {
            self.mirror_write_failed |= self.in_mirror_region(write);
        }
        self.unsynced.retain(|write| write.id != id);
    }

    /// The ids of completed, not yet durable writes: what a sync issued now covers.
    pub fn sync_snapshot(&self) -> Vec<u64> {
        self.unsynced.iter().filter(|write| write.completed).map(|write| write.id).collect()
    }

    /// A sync completed: the writes it covered are durable.
    pub fn complete_sync(&mut self, covered: &[u64]) {
        let (durable, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.unsynced).into_iter().partition(|write| covered.contains(&write.id));
        self.unsynced = rest;
        for write in durable {
            let intended = write.intended_offset_bytes / BLOCK_BYTES as u64;
            if (quill_core::format::LOG_START_BLOCK..self.log_end_block).contains(&intended) {
                if self.recent_durable_log_writes.len() == DURABLE_WRITES_KEPT {
                    self.recent_durable_log_writes.pop_front();
                }
                self.recent_durable_log_writes
                    .push_back((intended, intended + (write.data.len() / BLOCK_BYTES) as u64));
                if !self.recovering {
                    self.adopted_tails.clear(); // a newer batch is durable
                }
            }
            if (self.log_end_block..self.mirror_end_block).contains(&intended) {
                self.mirror_write_failed = false;
                if !self.adopted_tails.is_empty() {
                    let digest = crc32c::crc32c(&write.data);
                    for tail in self.adopted_tails.iter_mut().filter(|tail| tail.digest == digest) {
                        tail.mirror_whole = true;
                    }
                }
            }
            let first = write.offset_bytes / BLOCK_BYTES as u64;
            for (index, chunk) in write.data.chunks(BLOCK_BYTES).enumerate() {
                let block = first + index as u64;
                self.durable.insert(block, chunk.into());
                if self.volatile.get(&block).is_some_and(|newer| **newer == *chunk) {
                    self.volatile.remove(&block);
                }
            }
        }
    }

    /// A sync failed (EIO). As Linux has it, the kernel may already have dropped the dirty pages
    /// it was flushing, and a later sync would succeed without them ("fsyncgate"): each write the
    /// sync covered is resolved now as a crash resolves it (survives, vanishes or tears), and
    /// what reads see of its blocks is what the disk then holds.
    pub fn fail_sync(
        &mut self,
        covered: &[u64],
        rng: &mut ChaCha8Rng,
        survive_ppm: u32,
        tear_ppm: u32,
        ledger: &mut FaultLedger,
    ) {
        let (resolved, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.unsynced).into_iter().partition(|write| covered.contains(&write.id));
        self.unsynced = rest;
        for write in &resolved {
            _ = self.resolve_unsynced(write, rng, survive_ppm, tear_ppm, ledger);
        }
        // The volatile view: what the writes still pending put there, over the disk.
        self.volatile.clear();
        for write in self.unsynced.iter().filter(|write| write.completed) {
            let first = write.offset_bytes / BLOCK_BYTES as u64;
            for (index, chunk) in write.data.chunks(BLOCK_BYTES).enumerate() {
                self.volatile.insert(first + index as u64, chunk.into());
            }
        }
    }

    /// One write that is not durable meets a crash (or a failed sync): it lands whole, tears at
    /// sectors, or vanishes.
    fn resolve_unsynced(
        &mut self,
        write: &UnsyncedWrite,
        rng: &mut ChaCha8Rng,
        survive_ppm: u32,
        tear_ppm: u32,
        ledger: &mut FaultLedger,
    ) -> bool {
        let first = write.offset_bytes / BLOCK_BYTES as u64;
        let blocks = first..first + (write.data.len() / BLOCK_BYTES) as u64;
        let draw = rng.gen_range(0..1_000_000);
        if draw < survive_ppm {
            self.land(write);
            return true;
        } else if draw < survive_ppm.saturating_add(tear_ppm) {
            self.tear(write, rng);
            ledger.inject_damage(FaultKind::TornWrite, blocks);
        } else {
            ledger.inject_damage(FaultKind::LostWrite, blocks);
        }
        false
    }

    /// A crash: every write that is not durable survives, vanishes or tears; the volatile view
    /// is gone.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng, survive_ppm: u32, tear_ppm: u32, ledger: &mut FaultLedger) {
        let writes = std::mem::take(&mut self.unsynced);
        let landed: Vec<bool> =
            writes.iter().map(|write| self.resolve_unsynced(write, rng, survive_ppm, tear_ppm, ledger)).collect();
        let mirror_whole = writes.iter().zip(&landed).all(|(write, landed)| *landed || !self.in_mirror_region(write));
        // A mirror write lost or torn: the newest batch may have one copy, even if its log
        // write was durable before the crash (seed 407).
        self.mirror_write_failed |= !mirror_whole;
        self.note_adopted_tails(&writes, &landed);
        self.volatile.clear();
    }

    fn in_mirror_region(&self, write: &UnsyncedWrite) -> bool {
        let intended = write.intended_offset_bytes / BLOCK_BYTES as u64;
        (self.log_end_block..self.mirror_end_block).contains(&intended)
    }

    /// After a crash: the log writes that were not durable are the batches the next open may
    /// take (see `adopted_tails`); `landed[i]` says whether write i landed whole. A batch's
    /// mirror copy is the write of the same bytes to the mirror region (none: it was durable).
    fn note_adopted_tails(&mut self, writes: &[UnsyncedWrite], landed: &[bool]) {
        let log = quill_core::format::LOG_START_BLOCK..self.log_end_block;
        let mut tails = Vec::new();
        for write in writes.iter().filter(|write| log.contains(&(write.intended_offset_bytes / BLOCK_BYTES as u64))) {
            let first = write.intended_offset_bytes / BLOCK_BYTES as u64;
            let end = first + (write.data.len() / BLOCK_BYTES) as u64;
            let mirror_whole = writes
                .iter()
                .zip(landed)
                .filter(|(mirror, _)| self.in_mirror_region(mirror) && mirror.data == write.data)
                .all(|(_, landed)| *landed);
            tails.push(AdoptedTail { first, end, mirror_whole, digest: crc32c::crc32c(&write.data) });
        }
        if !tails.is_empty() {
            self.adopted_tails = tails;
        }
    }

    /// The blocks each write not durable yet was meant for.
    pub fn unsynced_intended_ranges(&self) -> Vec<(u64, u64)> {
        self.unsynced
            .iter()
            .map(|write| {
                let first = write.intended_offset_bytes / BLOCK_BYTES as u64;
                (first, first + (write.data.len() / BLOCK_BYTES) as u64)
            })
            .collect()
    }

    /// The writes a crash now would resolve: their lengths in 512-byte sectors, in issue order.
    pub fn unsynced_sectors(&self) -> Vec<usize> {
        self.unsynced.iter().map(|write| write.data.len() / SECTOR_BYTES).collect()
    }

    /// A crash that leaves one chosen image (`quill sim --crash-images`): write `i` not durable
    /// yet puts its new bytes in the sectors `masks[i]` marks and leaves the others as they were.
    pub fn crash_with_masks(&mut self, masks: &[crate::images::SectorMask], ledger: &mut FaultLedger) {
        let writes = std::mem::take(&mut self.unsynced);
        assert_eq!(writes.len(), masks.len(), "one mask per write not durable");
        let landed: Vec<bool> = masks.iter().map(|mask| mask.iter().all(|new| *new)).collect();
        let mirror_whole = writes.iter().zip(&landed).all(|(write, landed)| *landed || !self.in_mirror_region(write));
        self.mirror_write_failed |= !mirror_whole;
        self.note_adopted_tails(&writes, &landed);
        for (write, mask) in writes.iter().zip(masks) {
            assert_eq!(mask.len(), write.data.len() / SECTOR_BYTES, "one mask bit per sector");
            let first = write.offset_bytes / BLOCK_BYTES as u64;
            let blocks = first..first + (write.data.len() / BLOCK_BYTES) as u64;
            if mask.iter().all(|new| *new) {
                self.land(write);
                continue;
            }
            let kind = if mask.iter().any(|new| *new) { FaultKind::TornWrite } else { FaultKind::LostWrite };
            ledger.inject_damage(kind, blocks);
            self.land_sectors(write, mask);
        }
        self.volatile.clear();
    }

    /// Puts the sectors of `write` that `mask` marks over the durable image.
    fn land_sectors(&mut self, write: &UnsyncedWrite, mask: &[bool]) {
        let first_sector = write.offset_bytes / SECTOR_BYTES as u64;
        for (index, (sector, new)) in write.data.chunks(SECTOR_BYTES).zip(mask).enumerate() {
            if !new {
                continue;
            }
            let sector_number = first_sector + index as u64;
            let block = sector_number / (BLOCK_BYTES / SECTOR_BYTES) as u64;
            let within = (sector_number % (BLOCK_BYTES / SECTOR_BYTES) as u64) as usize * SECTOR_BYTES;
            let content = self.durable.entry(block).or_insert_with(|| vec![0; BLOCK_BYTES].into());
            content[within..within + SECTOR_BYTES].copy_from_slice(sector);
        }
    }

    fn land(&mut self, write: &UnsyncedWrite) {
        let first = write.offset_bytes / BLOCK_BYTES as u64;
        for (index, chunk) in write.data.chunks(BLOCK_BYTES).enumerate() {
            self.durable.insert(first + index as u64, chunk.into());
        }
    }

    fn tear(&mut self, write: &UnsyncedWrite, rng: &mut ChaCha8Rng) {
        let first = write.offset_bytes / BLOCK_BYTES as u64;
        for (index, chunk) in write.data.chunks(BLOCK_BYTES).enumerate() {
            let block = first + index as u64;
            let mut content: Vec<u8> =
                self.durable.get(&block).map_or_else(|| vec![0; BLOCK_BYTES], |old| old.to_vec());
            for (sector, new) in content.chunks_mut(SECTOR_BYTES).zip(chunk.chunks(SECTOR_BYTES)) {
                match rng.gen_range(0..3) {
                    0 => sector.copy_from_slice(new),
                    1 => {}
                    _ => rng.fill(sector),
                }
            }
            self.durable.insert(block, content.into());
        }
    }

    /// Flips one bit of a durable block at rest (a latent sector error); returns the block.
    /// A bit of a durable block, drawn at random (counted from the volume's start).
    pub fn random_bit(&self, rng: &mut ChaCha8Rng) -> Option<u64> {
        if self.durable.is_empty() {
            return None;
        }
        let index = rng.gen_range(0..self.durable.len());
        let block = *self.durable.keys().nth(index)?;
        let bit = rng.gen_range(0..BLOCK_BYTES * 8);
        Some(block * BLOCK_BYTES as u64 * 8 + bit as u64)
    }

    /// Flips the bit at `bit_offset` (counted from the volume's start) if its block is durable.
    pub fn flip_bit_at(&mut self, bit_offset: u64) -> Option<u64> {
        let block = bit_offset / 8 / BLOCK_BYTES as u64;
        let byte = (bit_offset / 8 % BLOCK_BYTES as u64) as usize;
        let mask = 1u8 << (bit_offset % 8);
        self.durable.get_mut(&block)?[byte] ^= mask;
        if let Some(view) = self.volatile.get_mut(&block) {
            view[byte] ^= mask;
        }
        Some(block)
    }

    /// The durable image's blocks, for final checks and accounting.
    pub fn written_blocks(&self) -> usize {
        self.durable.len()
    }

    /// Resolves damage on blocks that a write is about to replace.
    pub fn note_overwrite(ledger: &mut FaultLedger, offset_bytes: u64, length_bytes: usize) {
        SimDisk::note_resolved(ledger, offset_bytes, length_bytes, Outcome::Overwritten);
    }

    /// Resolves damage on blocks a write replaced, with `outcome`.
    pub fn note_resolved(ledger: &mut FaultLedger, offset_bytes: u64, length_bytes: usize, outcome: Outcome) {
        let first = offset_bytes / BLOCK_BYTES as u64;
        let end = first + (length_bytes / BLOCK_BYTES) as u64;
        ledger.resolve_blocks(first, end, outcome);
    }
}
