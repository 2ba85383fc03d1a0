//! Records recovery read for one index partition, and a partition handed out with them.

use super::table::{Location, Table};

/// One record's effect on the index, its key in `PendingRecords::keys` up to `key_end`.
#[derive(Clone, Copy)]
enum Change {
    Put { key_end: u32, location: Location },
    Remove { key_end: u32 },
    Clear,
}

/// A partition's records in log order; keys back to back in one buffer (no allocation per
/// record).
#[derive(Default)]
pub struct PendingRecords {
    keys: Vec<u8>,
    changes: Vec<Change>,
}

impl PendingRecords {
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    fn push_key(&mut self, key: &[u8]) -> u32 {
        self.keys.extend_from_slice(key);
        u32::try_from(self.keys.len()).expect("a partition's queued keys fit 4 GiB (a few chunks of log)")
    }

    pub fn put(&mut self, key: &[u8], location: Location) {
        let key_end = self.push_key(key);
        self.changes.push(Change::Put { key_end, location });
    }

    pub fn remove(&mut self, key: &[u8]) {
        let key_end = self.push_key(key);
        self.changes.push(Change::Remove { key_end });
    }

    pub fn clear(&mut self) {
        self.changes.push(Change::Clear);
    }

    /// Applies the records to `table` in order and forgets them: a window at a time, each
    /// window's table slots loaded first, independently of one another, so that their cache
    /// misses overlap before the inserts need them (a restart is bound by index misses).
    pub fn apply_to(&mut self, table: &mut Table) {
        const WINDOW_RECORDS: usize = 1024;
        let mut key_start = 0;
        for window in self.changes.chunks(WINDOW_RECORDS) {
            touch_slots(table, &self.keys, key_start, window);
            for change in window {
                match *change {
                    Change::Put { key_end, location } => {
                        table.insert(&self.keys[key_start..key_end as usize], location);
                        key_start = key_end as usize;
                    }
                    Change::Remove { key_end } => {
                        _ = table.remove(&self.keys[key_start..key_end as usize]);
                        key_start = key_end as usize;
                    }
                    Change::Clear => table.clear(),
                }
            }
        }
        debug_assert_eq!(key_start, self.keys.len(), "every key was applied");
        self.keys.clear();
        self.changes.clear();
    }
}

/// Loads the slots where probing for the window's keys starts.
fn touch_slots(table: &Table, keys: &[u8], mut key_start: usize, window: &[Change]) {
    let mut touched = 0u64;
    for change in window {
        if let Change::Put { key_end, .. } | Change::Remove { key_end } = *change {
            touched ^= table.touch(&keys[key_start..key_end as usize]);
            key_start = key_end as usize;
        }
    }
    std::hint::black_box(touched);
}

/// A partition of the index handed out during recovery with the records it must apply: the
/// driver may run it on any thread ([`IndexWork::run`]) and gives it back with
/// `Engine::complete_index_work`. Nothing else reads or changes the partition meanwhile.
pub struct IndexWork {
    partition: usize,
    table: Table,
    records: PendingRecords,
}

impl IndexWork {
    pub(super) fn new(partition: usize, table: Table, records: PendingRecords) -> IndexWork {
        IndexWork { partition, table, records }
    }

    /// Applies the records (idempotent: a second call has nothing left to apply).
    pub fn run(&mut self) {
        self.records.apply_to(&mut self.table);
    }

    pub(super) fn into_parts(mut self) -> (usize, Table) {
        // Given back without running (a driver that drops the work on the floor must not lose
        // records): apply them now.
        self.run();
        (self.partition, self.table)
    }
}

impl std::fmt::Debug for IndexWork {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "IndexWork {{ partition: {}, records: {} }}", self.partition, self.records.len())
    }
}
