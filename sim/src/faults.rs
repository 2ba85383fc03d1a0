//! Fault accounting: every injected fault is counted by kind, and each one's end is recorded:
//! detected (the engine reported or discarded it), repaired (the engine used a redundant copy),
//! overwritten (new data replaced it before anything read it), harmless (read back with no
//! effect) or latent (never touched again before the run ended).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    TornWrite,
    LostWrite,
    Reorder,
    ReadError,
    WriteError,
    SyncError,
    BitFlip,
    MisdirectedWrite,
    /// A client's connection cut, possibly mid-command.
    Disconnect,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::TornWrite,
        FaultKind::LostWrite,
        FaultKind::Reorder,
        FaultKind::ReadError,
        FaultKind::WriteError,
        FaultKind::SyncError,
        FaultKind::BitFlip,
        FaultKind::MisdirectedWrite,
        FaultKind::Disconnect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TornWrite => "torn_write",
            FaultKind::LostWrite => "lost_write",
            FaultKind::Reorder => "reorder",
            FaultKind::ReadError => "read_error",
            FaultKind::WriteError => "write_error",
            FaultKind::SyncError => "sync_error",
            FaultKind::BitFlip => "bit_flip",
            FaultKind::MisdirectedWrite => "misdirected_write",
            FaultKind::Disconnect => "disconnect",
        }
    }

    /// Whether this fault can damage data at rest beyond what the design survives without
    /// redundancy (an acknowledged record destroyed): then the oracle demands only detection.
    pub fn may_corrupt_acknowledged_data(self) -> bool {
        matches!(self, FaultKind::BitFlip | FaultKind::MisdirectedWrite)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Detected,
    Repaired,
    Overwritten,
    Harmless,
    Latent,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Detected, Outcome::Repaired, Outcome::Overwritten, Outcome::Harmless, Outcome::Latent];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Detected => "detected",
            Outcome::Repaired => "repaired",
            Outcome::Overwritten => "overwritten",
            Outcome::Harmless => "harmless",
            Outcome::Latent => "latent",
        }
    }
}

/// Fault injection's state: its random stream, the ledger of what it injected, and whether it
/// is on. Every draw of a fault goes through [`Injector::fault`], so a fault can be masked by
/// its ordinal (`quill shrink`).
pub struct Injector {
    pub rng: rand_chacha::ChaCha8Rng,
    pub ledger: FaultLedger,
    /// Faults drawn so far (their ordinals count from 1).
    pub ordinal: u64,
    pub enabled: bool,
    /// Ordinals of faults to drop (shrinking finds the few a failure needs).
    mask: std::collections::BTreeSet<u64>,
}

impl Injector {
    pub fn new(rng: rand_chacha::ChaCha8Rng, enabled: bool, mask: std::collections::BTreeSet<u64>) -> Injector {
        Injector { rng, ledger: FaultLedger::default(), ordinal: 0, enabled, mask }
    }

    /// Draws whether a fault of probability `ppm` (per million) happens now.
    pub fn fault(&mut self, ppm: u32) -> bool {
        use rand::Rng;
        if !self.enabled || ppm == 0 || self.rng.gen_range(0..1_000_000) >= ppm {
            return false;
        }
        self.ordinal += 1;
        !self.mask.contains(&self.ordinal)
    }
}

/// Counts by kind and by outcome, plus the damage still on disk, by block.
#[derive(Clone, Debug, Default)]
pub struct FaultLedger {
    pub injected: BTreeMap<FaultKind, u64>,
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Blocks damaged by a fault whose outcome is not known yet: block → fault ids.
    pub damaged: BTreeMap<u64, Vec<(u64, FaultKind)>>,
    pub fault_id_next: u64,
    /// Set once a fault that can destroy acknowledged data was injected.
    pub beyond_budget: bool,
    /// Faults whose outcome is recorded (a fault may have damaged several blocks).
    resolved: std::collections::BTreeSet<u64>,
    /// Every block any fault ever damaged, resolved or not: what explains a degraded path later
    /// (a checkpoint or superblock copy that cannot be used).
    ever_damaged: std::collections::BTreeSet<u64>,
    /// I/O errors injected since the engine last started: what explains a switch to read-only
    /// or an open that failed on I/O.
    pub io_errors_since_start: u64,
}

impl FaultLedger {
    /// Counts a fault and returns its id.
    pub fn inject(&mut self, kind: FaultKind) -> u64 {
        *self.injected.entry(kind).or_default() += 1;
        if kind.may_corrupt_acknowledged_data() {
            self.beyond_budget = true;
        }
        self.fault_id_next += 1;
        self.fault_id_next
    }

    /// A fault whose outcome is known at once (an I/O error the engine received, a reorder).
    pub fn inject_resolved(&mut self, kind: FaultKind, outcome: Outcome) {
        self.inject(kind);
        if matches!(kind, FaultKind::ReadError | FaultKind::WriteError | FaultKind::SyncError) {
            self.io_errors_since_start += 1;
        }
        self.resolve(outcome, 1);
    }

    /// A fault that left damage on `blocks`, to be resolved when they are next read or written.
    pub fn inject_damage(&mut self, kind: FaultKind, blocks: impl Iterator<Item = u64>) {
        let id = self.inject(kind);
        for block in blocks {
            self.damaged.entry(block).or_default().push((id, kind));
            self.ever_damaged.insert(block);
        }
    }

    pub fn resolve(&mut self, outcome: Outcome, count: u64) {
        *self.outcomes.entry(outcome).or_default() += count;
    }

    /// Removes the damage records in `first..end` and resolves each distinct fault once.
    pub fn resolve_blocks(&mut self, first: u64, end: u64, outcome: Outcome) {
        let blocks: Vec<u64> = self.damaged.range(first..end).map(|(block, _)| *block).collect();
        let mut ids = std::collections::BTreeSet::new();
        for block in blocks {
            for (id, _) in self.damaged.remove(&block).unwrap_or_default() {
                if self.resolved.insert(id) {
                    ids.insert(id);
                }
            }
        }
        self.resolve(outcome, ids.len() as u64);
    }

    /// Whether damage beyond the budget (bit rot, a misdirected write) lies in `first..end`.
    pub fn has_corruption_in(&self, first: u64, end: u64) -> bool {
        self.damaged
            .range(first..end)
            .any(|(_, faults)| faults.iter().any(|(_, kind)| kind.may_corrupt_acknowledged_data()))
    }

    /// A write failed: its blocks may hold old bytes, new ones or neither (a later open may find
    /// them damaged).
    pub fn note_failed_write(&mut self, first: u64, end: u64) {
        self.ever_damaged.extend(first..end);
    }

    /// Whether any fault ever damaged a block in `first..end`.
    pub fn ever_damaged_in(&self, first: u64, end: u64) -> bool {
        self.ever_damaged.range(first..end).next().is_some()
    }

    pub fn has_damage_in(&self, first: u64, end: u64) -> bool {
        self.damaged.range(first..end).next().is_some()
    }

    /// At the end of a run, damage nobody touched again is latent.
    pub fn finish(&mut self) {
        let end = u64::MAX;
        self.resolve_blocks(0, end, Outcome::Latent);
    }

    pub fn count(&self, kind: FaultKind) -> u64 {
        self.injected.get(&kind).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.injected.values().sum()
    }

    pub fn merge(&mut self, other: &FaultLedger) {
        for (kind, count) in &other.injected {
            *self.injected.entry(*kind).or_default() += count;
        }
        for (outcome, count) in &other.outcomes {
            *self.outcomes.entry(*outcome).or_default() += count;
        }
    }
}
