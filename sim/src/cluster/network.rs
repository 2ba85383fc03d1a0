//! The simulated network between replicas: each Raft message is delayed, and may be dropped,
//! duplicated or overtaken by a later one; partitions cut links, in both directions or one,
//! and heal. Clients reach replicas over links of their own (see clients.rs).

use std::collections::{BTreeMap, BTreeSet};

use quill_replica::Message;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How the replicas are cut apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum PartitionKind {
    /// Two groups that cannot reach each other.
    Symmetric,
    /// One replica hears nobody, or nobody hears it (one direction only).
    Asymmetric,
    /// Two groups joined only through one replica that reaches both.
    Bridge,
}

impl PartitionKind {
    pub fn name(self) -> &'static str {
        match self {
            PartitionKind::Symmetric => "partition_symmetric",
            PartitionKind::Asymmetric => "partition_asymmetric",
            PartitionKind::Bridge => "partition_bridge",
        }
    }
}

/// What the network did, by kind.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NetworkCounts {
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Delivered after a message sent later on the same link.
    pub reordered: u64,
    /// Lost to a partition or to a replica that was down.
    pub cut: u64,
    pub partitions: BTreeMap<PartitionKind, u64>,
    pub heals: u64,
}

pub struct NetworkKnobs {
    pub latency_ticks_max: u64,
    pub drop_ppm: u32,
    pub duplicate_ppm: u32,
}

pub struct Network {
    /// Messages in flight, by (due tick, sequence).
    in_flight: BTreeMap<(u64, u64), Message>,
    sequence_next: u64,
    /// Per link (from, to): the highest send sequence delivered, to count reordering.
    delivered_highest: BTreeMap<(u64, u64), u64>,
    /// Links cut now: (from, to).
    cut: BTreeSet<(u64, u64)>,
    pub knobs: NetworkKnobs,
    pub counts: NetworkCounts,
    pub rng: ChaCha8Rng,
}

/// Messages in flight at most (a limit on the queue; beyond it the network drops).
const IN_FLIGHT_MAX: usize = 100_000;

impl Network {
    pub fn new(rng: ChaCha8Rng, knobs: NetworkKnobs) -> Network {
        Network {
            in_flight: BTreeMap::new(),
            sequence_next: 0,
            delivered_highest: BTreeMap::new(),
            cut: BTreeSet::new(),
            knobs,
            counts: NetworkCounts::default(),
            rng,
        }
    }

    pub fn send(&mut self, tick: u64, message: Message, faults: bool) {
        if faults && self.rng.gen_range(0..1_000_000) < self.knobs.drop_ppm {
            self.counts.dropped += 1;
            return;
        }
        let copies = if faults && self.rng.gen_range(0..1_000_000) < self.knobs.duplicate_ppm { 2 } else { 1 };
        self.counts.duplicated += copies - 1;
        for _ in 0..copies {
            if self.in_flight.len() >= IN_FLIGHT_MAX {
                self.counts.dropped += 1;
                return;
            }
            let latency = self.rng.gen_range(1..=self.knobs.latency_ticks_max.max(1));
            let sequence = self.sequence_next;
            self.sequence_next += 1;
            self.in_flight.insert((tick + latency, sequence), message.clone());
        }
    }

    /// The next message due by `tick` whose link is up; those on cut links are lost.
    pub fn deliver(&mut self, tick: u64) -> Option<Message> {
        loop {
            let (&(due, sequence), _) = self.in_flight.first_key_value()?;
            if due > tick {
                return None;
            }
            let message = self.in_flight.remove(&(due, sequence)).expect("first");
            let link = (message.from, message.to);
            if self.cut.contains(&link) {
                self.counts.cut += 1;
                continue;
            }
            let highest = self.delivered_highest.entry(link).or_insert(0);
            if sequence < *highest {
                self.counts.reordered += 1;
            }
            *highest = (*highest).max(sequence);
            self.counts.delivered += 1;
            return Some(message);
        }
    }

    pub fn next_due(&self) -> Option<u64> {
        self.in_flight.keys().next().map(|(due, _)| *due)
    }

    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    pub fn reaches(&self, from: u64, to: u64) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Cuts the replicas `ids` apart in a way drawn from the seed.
    pub fn partition(&mut self, ids: &[u64]) -> PartitionKind {
        let mut shuffled = ids.to_vec();
        for index in (1..shuffled.len()).rev() {
            shuffled.swap(index, self.rng.gen_range(0..=index));
        }
        let kind = match self.rng.gen_range(0..3) {
            0 => PartitionKind::Symmetric,
            1 => PartitionKind::Asymmetric,
            _ => PartitionKind::Bridge,
        };
        match kind {
            PartitionKind::Symmetric => {
                let split = self.rng.gen_range(1..shuffled.len());
                let (left, right) = shuffled.split_at(split);
                self.cut_between(left, right);
            }
            PartitionKind::Asymmetric => {
                let (lone, others) = shuffled.split_at(1);
                for other in others {
                    let link = if self.rng.gen_bool(0.5) { (lone[0], *other) } else { (*other, lone[0]) };
                    self.cut.insert(link);
                }
            }
            PartitionKind::Bridge => {
                // The bridge is `shuffled[0]`; the rest split in two that only it joins.
                let rest = &shuffled[1..];
                let split = self.rng.gen_range(1..rest.len().max(2)).min(rest.len());
                let (left, right) = rest.split_at(split);
                self.cut_between(left, right);
            }
        }
        *self.counts.partitions.entry(kind).or_insert(0) += 1;
        kind
    }

    fn cut_between(&mut self, left: &[u64], right: &[u64]) {
        for a in left {
            for b in right {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
    }

    pub fn heal(&mut self) {
        if !self.cut.is_empty() {
            self.cut.clear();
            self.counts.heals += 1;
        }
    }
}
