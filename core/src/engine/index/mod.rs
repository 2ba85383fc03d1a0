//! The in-memory index: key → location of its durable record, and the keys' expiry times.
//!
//! It is split by key hash into `Config::index_partitions` tables (`table.rs`), so that a
//! restart can fill them in parallel: recovery queues each partition's records in log order
//! and hands a partition out, with its records, as an [`IndexWork`] for the driver to apply on
//! another thread (`Config::hand_out_index_work`), or applies it itself. A key always lives in
//! one partition and its records apply there in log order, so the result does not depend on
//! which partition finishes first. Expiry times stay here, outside the partitions, and follow
//! the log order as recovery reads it.

mod table;
mod work;

use super::expiries::Expiries;
use table::Table;
pub use table::{Location, SCAN_END};
pub use work::IndexWork;
use work::PendingRecords;

/// The most partitions an index may have (a configuration asking for more gets this many).
pub const INDEX_PARTITIONS_MAX: u32 = 64;

pub struct CompactIndex {
    /// `None` while the partition is handed out as an `IndexWork`.
    partitions: Vec<Option<Table>>,
    /// Records recovery read for each partition and has not applied or handed out yet.
    pending: Vec<PendingRecords>,
    /// Hashes keys the way the tables do, to pick a key's partition.
    hasher: Table,
    /// The expiry times of the keys that have one (their records carry it too).
    pub expiries: Expiries,
}

impl CompactIndex {
    pub fn new(hash_seed: u64, partitions: u32) -> CompactIndex {
        let count = partitions.clamp(1, INDEX_PARTITIONS_MAX) as usize;
        CompactIndex {
            partitions: (0..count).map(|_| Some(Table::new(hash_seed))).collect(),
            pending: (0..count).map(|_| PendingRecords::default()).collect(),
            hasher: Table::new(hash_seed),
            expiries: Expiries::default(),
        }
    }

    /// The partition a key lives in: the hash's high bits (its low bits place it in the table
    /// and in SCAN's order, so every partition spans every scan position).
    fn partition_of(&self, key: &[u8]) -> usize {
        if self.partitions.len() == 1 {
            return 0; // no second hash on every lookup of an index in one piece
        }
        let tag = self.hasher.hash(key) >> 32;
        ((tag * self.partitions.len() as u64) >> 32) as usize
    }

    fn table(&self, partition: usize) -> &Table {
        self.partitions[partition].as_ref().expect("the index is used only while every partition is home")
    }

    fn table_mut(&mut self, partition: usize) -> &mut Table {
        self.partitions[partition].as_mut().expect("the index is used only while every partition is home")
    }

    /// The partitions at home. Only recovery hands partitions out, and the engine reads whole
    /// views (length, iteration, byte counts) only once they are all back; a driver's view
    /// during recovery (`Engine::durable_index`, debug state) leaves out the ones away.
    fn tables(&self) -> impl Iterator<Item = &Table> + '_ {
        self.partitions.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.tables().map(Table::len).sum()
    }

    /// Sizes the partitions once for `keys` entries in all (see `Table::reserve`).
    pub fn reserve(&mut self, keys: usize) {
        let per_partition = keys / self.partitions.len() + keys / self.partitions.len() / 16 + 16;
        for partition in 0..self.partitions.len() {
            self.table_mut(partition).reserve(per_partition);
        }
    }

    /// The bytes an entry for a key of `key_bytes` takes in the arena.
    pub fn entry_bytes(key_bytes: usize) -> u64 {
        Table::entry_bytes(key_bytes)
    }

    /// The bytes the live entries take (garbage excluded): what `Config::index_bytes_max` limits.
    pub fn live_entry_bytes(&self) -> u64 {
        self.tables().map(Table::live_entry_bytes).sum()
    }

    /// The bytes on disk that live records occupy (headers, keys and values).
    pub fn live_record_bytes(&self) -> u64 {
        self.tables().map(Table::live_record_bytes).sum()
    }

    pub fn get(&self, key: &[u8]) -> Option<Location> {
        self.table(self.partition_of(key)).get(key)
    }

    /// Loads the slot where probing for `key` starts (see `Table::touch`).
    pub fn touch(&self, key: &[u8]) -> u64 {
        self.table(self.partition_of(key)).touch(key)
    }

    /// Points `key` at its new durable record, which expires at `expires_at_ms` (or never).
    pub fn insert(&mut self, key: &[u8], location: Location, expires_at_ms: Option<u64>) {
        self.expiries.set(key, expires_at_ms);
        let partition = self.partition_of(key);
        self.table_mut(partition).insert(key, location);
    }

    /// The key's expiry time, if it has one.
    pub fn expiry(&self, key: &[u8]) -> Option<u64> {
        self.expiries.get(key)
    }

    /// Points `key` at `to` only if it still points at `from` (see `Table::replace_if`).
    pub fn replace_if(&mut self, key: &[u8], from: Location, to: Location) -> bool {
        let partition = self.partition_of(key);
        self.table_mut(partition).replace_if(key, from, to)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Location> {
        let partition = self.partition_of(key);
        let removed = self.table_mut(partition).remove(key);
        if removed.is_some() {
            self.expiries.set(key, None);
        }
        removed
    }

    pub fn clear(&mut self) {
        for partition in 0..self.partitions.len() {
            self.table_mut(partition).clear();
        }
        self.expiries = Expiries::default();
    }

    /// Where a key stands in SCAN's order: the low 32 bits of its hash.
    pub fn scan_position(&self, key: &[u8]) -> u64 {
        u64::from(self.hasher.hash(key) as u32)
    }

    /// SCAN's step over every partition: hands `visit` every live key whose scan position lies
    /// in `from..to` and returns `to` (see `Table::scan`); about `slots_wanted` slots are read.
    pub fn scan(&self, from: u64, slots_wanted: usize, mut visit: impl FnMut(&[u8])) -> u64 {
        let per_partition = (slots_wanted / self.partitions.len()).max(1);
        let to = self.table(0).scan_end(from, per_partition);
        debug_assert!(self.settled(), "SCAN runs only once the index is whole");
        for table in self.tables() {
            table.scan_range(from, to, &mut visit);
        }
        to
    }

    /// Every key and location, partition by partition in table order (deterministic for a
    /// given seed, partition count and history).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Location)> + '_ {
        self.tables().flat_map(Table::iter)
    }
}

/// Recovery's side: records queued per partition, applied in place or handed out.
impl CompactIndex {
    /// Queues a put read from the log; its expiry time takes effect at once.
    pub fn queue_put(&mut self, key: &[u8], location: Location, expires_at_ms: Option<u64>) {
        self.expiries.set(key, expires_at_ms);
        let partition = self.partition_of(key);
        self.pending[partition].put(key, location);
    }

    pub fn queue_remove(&mut self, key: &[u8]) {
        self.expiries.set(key, None);
        let partition = self.partition_of(key);
        self.pending[partition].remove(key);
    }

    /// Queues a clear in every partition, after the records queued before it.
    pub fn queue_clear(&mut self) {
        self.expiries = Expiries::default();
        for pending in &mut self.pending {
            pending.clear();
        }
    }

    /// Applies the queued records of every partition that is home.
    pub fn apply_queued(&mut self) {
        for partition in 0..self.partitions.len() {
            if let Some(table) = self.partitions[partition].as_mut() {
                self.pending[partition].apply_to(table);
            }
        }
    }

    /// Hands out a partition that is home with at least `records_min` records queued (1: any),
    /// with those records, to be applied elsewhere and given back with `take_back`.
    pub fn hand_out(&mut self, records_min: usize) -> Option<IndexWork> {
        let partition = (0..self.partitions.len()).find(|&partition| {
            self.partitions[partition].is_some() && self.pending[partition].len() >= records_min.max(1)
        })?;
        let table = self.partitions[partition].take().expect("checked: home");
        let records = std::mem::take(&mut self.pending[partition]);
        Some(IndexWork::new(partition, table, records))
    }

    /// A handed-out partition comes back with its records applied.
    pub fn take_back(&mut self, work: IndexWork) {
        let (partition, table) = work.into_parts();
        assert!(self.partitions[partition].is_none(), "a partition comes back once, to where it was handed out from");
        self.partitions[partition] = Some(table);
    }

    /// No partition is out and no record waits: the index is whole.
    pub fn settled(&self) -> bool {
        self.partitions.iter().all(Option::is_some) && self.pending.iter().all(|pending| pending.len() == 0)
    }

    /// Records queued and not applied or handed out yet, in all partitions.
    pub fn queued_records(&self) -> usize {
        self.pending.iter().map(PendingRecords::len).sum()
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// Partitions handed out and not back yet.
    pub fn partitions_out(&self) -> usize {
        self.partitions.iter().filter(|partition| partition.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(value: u64) -> Location {
        Location { offset_bytes: value * 4096, record_bytes: 100, sequence_low: value as u32 }
    }

    /// Records queued, handed out and taken back in any order give the index that inserting
    /// them in log order gives.
    #[test]
    fn handed_out_partitions_give_the_same_index_as_inserting_in_order() {
        let mut direct = CompactIndex::new(9, 1);
        let mut parted = CompactIndex::new(9, 4);
        for round in 0..3u64 {
            for number in 0..2_000u64 {
                let key = format!("key{}", number % 700).into_bytes();
                let value = round * 10_000 + number;
                if number % 11 == 0 {
                    direct.remove(&key);
                    parted.queue_remove(&key);
                } else {
                    direct.insert(&key, location(value), (number % 7 == 0).then_some(value));
                    parted.queue_put(&key, location(value), (number % 7 == 0).then_some(value));
                }
                if number == 1_500 && round == 1 {
                    direct.clear();
                    parted.queue_clear();
                }
            }
            let mut out = Vec::new();
            while let Some(work) = parted.hand_out(1) {
                out.push(work);
            }
            assert_eq!(parted.partitions_out(), 4);
            // Back in reverse order: partitions are independent.
            for mut work in out.into_iter().rev() {
                work.run();
                parted.take_back(work);
            }
            assert!(parted.settled());
        }
        let mut expected: Vec<(Vec<u8>, Location)> = direct.iter().map(|(key, at)| (key.to_vec(), at)).collect();
        let mut actual: Vec<(Vec<u8>, Location)> = parted.iter().map(|(key, at)| (key.to_vec(), at)).collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        actual.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(actual, expected);
        assert_eq!(parted.len(), direct.len());
        assert_eq!(parted.live_record_bytes(), direct.live_record_bytes());
        let times: Vec<_> = parted.expiries.iter().collect();
        assert_eq!(times, direct.expiries.iter().collect::<Vec<_>>());
    }

    /// A scan over several partitions visits every key once.
    #[test]
    fn a_scan_over_partitions_visits_every_key_once() {
        let mut index = CompactIndex::new(3, 3);
        for number in 0..1_000u64 {
            index.insert(format!("k{number}").as_bytes(), location(number), None);
        }
        let (mut seen, mut from) = (Vec::new(), 0);
        while from < SCAN_END {
            from = index.scan(from, 10, |key| seen.push(key.to_vec()));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1_000);
    }
}
