//! One partition of the in-memory index (`super::CompactIndex`): key → location of its
//! durable record, compact enough for flash-sized key counts.
//!
//! An open-addressing table of 8-byte slots (a 32-bit hash tag and a 32-bit arena offset) over
//! a byte arena holding, per key, `[record offset: 8][record length: 4][batch sequence, low 32
//! bits: 4][key length: 2][key]`. That is 18 bytes plus the key in the arena and 8 / load bytes
//! of table per key: no allocation per key and no pointer to chase before comparing keys.
//! The arena grows in 1 MiB chunks (an entry never spans two), so growth wastes at most one
//! chunk; the table grows by half when slots (live plus tombstones) pass 7/8 and maps hashes to
//! slots by multiplication, so its load stays between 58 % and 87 %. Removed entries leave
//! garbage in the arena, reclaimed by a rebuild once it outweighs the live entries.

use std::hash::BuildHasher;

use super::super::hashing::SeededState;

/// Where a durable record lives (16 bytes in the index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The record's absolute byte offset on the volume.
    pub offset_bytes: u64,
    /// The whole record's length: header, key and value.
    pub record_bytes: u32,
    /// The low 32 bits of the batch sequence number stamped in the record, checked on read (a
    /// stale record at the same offset is from another batch; the CRC binds the offset).
    pub sequence_low: u32,
}

impl Location {
    /// The value's length, for a record of this key length, with or without an expiry time.
    pub fn value_bytes(&self, key_bytes: usize, expires: bool) -> usize {
        let expiry_bytes = if expires { crate::format::EXPIRY_BYTES } else { 0 };
        // Saturating: a checkpoint entry is only checked for a plausible length.
        (self.record_bytes as usize).saturating_sub(crate::format::RECORD_HEADER_BYTES + expiry_bytes + key_bytes)
    }
}

const EMPTY: u64 = 0;

/// The arena offset a used slot holds: its low 32 bits, less 2 (0 and 1 mark empty and
/// tombstone slots).
fn slot_offset(slot: u64) -> usize {
    debug_assert!(slot > TOMBSTONE, "only a used slot holds an offset");
    (slot & u64::from(u32::MAX)) as usize - 2
}
const TOMBSTONE: u64 = 1;
/// One past the last scan position (positions are 32-bit hashes).
pub const SCAN_END: u64 = 1 << 32;
const ENTRY_HEADER_BYTES: usize = 18;
const CHUNK_BYTES: usize = 1 << 20;

pub struct Table {
    /// `tag << 32 | (arena offset + 2)`, or EMPTY / TOMBSTONE.
    slots: Vec<u64>,
    /// Chunks of CHUNK_BYTES; an arena offset is `chunk * CHUNK_BYTES + offset in chunk`.
    arena: Vec<Vec<u8>>,
    arena_bytes: usize,
    hasher: SeededState,
    live: usize,
    tombstones: usize,
    garbage_bytes: usize,
    /// The sum of the live records' lengths on disk: what compaction must keep.
    live_record_bytes: u64,
}

impl Table {
    pub fn new(hash_seed: u64) -> Table {
        Table {
            slots: vec![EMPTY; 16],
            arena: Vec::new(),
            arena_bytes: 0,
            hasher: SeededState { seed: hash_seed },
            live: 0,
            tombstones: 0,
            garbage_bytes: 0,
            live_record_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    /// Grows the table once for `keys` entries, so that loading them does not rebuild it again
    /// and again (each rebuild re-inserts every entry, chasing the arena in table order).
    pub fn reserve(&mut self, keys: usize) {
        let capacity = keys.saturating_add(keys / 2); // a load of two thirds after the reserve
        if (self.live + self.tombstones + keys) * 8 > self.slots.len() * 7 {
            self.rebuild(capacity.max(self.slots.len()));
        }
    }

    /// The bytes an entry for a key of `key_bytes` takes in the arena.
    pub fn entry_bytes(key_bytes: usize) -> u64 {
        (ENTRY_HEADER_BYTES + key_bytes) as u64
    }

    /// The bytes the live entries take in the arena (garbage excluded): what
    /// `Config::index_bytes_max` limits.
    pub fn live_entry_bytes(&self) -> u64 {
        (self.arena_bytes - self.garbage_bytes) as u64
    }

    /// The bytes on disk that live records occupy (headers, keys and values).
    pub fn live_record_bytes(&self) -> u64 {
        self.live_record_bytes
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn entry(&self, at: usize) -> &[u8] {
        &self.arena[at / CHUNK_BYTES][at % CHUNK_BYTES..]
    }

    fn entry_mut(&mut self, at: usize) -> &mut [u8] {
        &mut self.arena[at / CHUNK_BYTES][at % CHUNK_BYTES..]
    }

    fn entry_key(&self, at: usize) -> &[u8] {
        let entry = self.entry(at);
        let length = u16::from_le_bytes([entry[16], entry[17]]) as usize;
        &entry[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + length]
    }

    fn entry_location(&self, at: usize) -> Location {
        let entry = self.entry(at);
        let field = |start: usize, width: usize| {
            let mut raw = [0u8; 8];
            raw[..width].copy_from_slice(&entry[start..start + width]);
            u64::from_le_bytes(raw)
        };
        Location { offset_bytes: field(0, 8), record_bytes: field(8, 4) as u32, sequence_low: field(12, 4) as u32 }
    }

    fn write_location(&mut self, at: usize, location: &Location) {
        let entry = self.entry_mut(at);
        entry[0..8].copy_from_slice(&location.offset_bytes.to_le_bytes());
        entry[8..12].copy_from_slice(&location.record_bytes.to_le_bytes());
        entry[12..16].copy_from_slice(&location.sequence_low.to_le_bytes());
    }

    /// Appends an entry for `key`; returns its arena offset.
    fn append_entry(&mut self, key: &[u8], location: &Location) -> usize {
        let size = ENTRY_HEADER_BYTES + key.len();
        let fits = self.arena.last().is_some_and(|chunk| chunk.capacity() - chunk.len() >= size);
        if !fits {
            // Keys are under 64 KiB, so an entry always fits in a fresh chunk.
            self.arena.push(Vec::with_capacity(CHUNK_BYTES));
        }
        let chunk_index = self.arena.len() - 1;
        let chunk = &mut self.arena[chunk_index];
        let at = chunk_index * CHUNK_BYTES + chunk.len();
        chunk.extend_from_slice(&[0; ENTRY_HEADER_BYTES]);
        chunk[at % CHUNK_BYTES + 16..at % CHUNK_BYTES + 18].copy_from_slice(&(key.len() as u16).to_le_bytes());
        chunk.extend_from_slice(key);
        self.arena_bytes += size;
        self.write_location(at, location);
        at
    }

    /// Where probing for `hash` starts: multiplication maps hashes onto any table size.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash as u32) * self.slots.len() as u128) >> 32) as usize
    }

    /// The slot holding `key`, or `Err(first free slot)` where it would go.
    fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        let tag = hash >> 32;
        let mut free = None;
        let mut index = self.home(hash);
        for _ in 0..self.slots.len() {
            match self.slots[index] {
                EMPTY => return Err(free.unwrap_or(index)),
                TOMBSTONE => free = free.or(Some(index)),
                slot if slot >> 32 == tag && self.entry_key(slot_offset(slot)) == key => return Ok(index),
                _ => {}
            }
            index = if index + 1 == self.slots.len() { 0 } else { index + 1 };
        }
        Err(free.expect("the table always keeps free slots"))
    }

    pub fn get(&self, key: &[u8]) -> Option<Location> {
        let index = self.find(key, self.hash(key)).ok()?;
        Some(self.entry_location(slot_offset(self.slots[index])))
    }

    /// Loads the slot where probing for `key` starts, and returns it. Touching the slots of a
    /// batch of keys before inserting them lets their cache misses overlap (recovery does).
    pub fn touch(&self, key: &[u8]) -> u64 {
        self.slots[self.home(self.hash(key))]
    }

    /// Points `key` at its new durable record.
    pub fn insert(&mut self, key: &[u8], location: Location) {
        assert!(key.len() <= u16::MAX as usize, "keys are at most 65535 bytes");
        let hash = self.hash(key);
        match self.find(key, hash) {
            Ok(index) => {
                let at = slot_offset(self.slots[index]);
                self.live_record_bytes -= u64::from(self.entry_location(at).record_bytes);
                self.live_record_bytes += u64::from(location.record_bytes);
                self.write_location(at, &location);
            }
            Err(index) => {
                let at = self.append_entry(key, &location);
                assert!(at < u32::MAX as usize - 2, "index arena offsets fit in 32 bits");
                if self.slots[index] == TOMBSTONE {
                    self.tombstones -= 1;
                }
                self.slots[index] = (hash >> 32) << 32 | (at as u64 + 2);
                self.live += 1;
                // Before a rebuild, which recounts from the entries.
                self.live_record_bytes += u64::from(location.record_bytes);
                self.grow_if_needed();
            }
        }
    }

    /// Points `key` at `to` only if it still points at `from` (compaction moved its record and
    /// no newer write replaced it meanwhile). Says whether it did.
    pub fn replace_if(&mut self, key: &[u8], from: Location, to: Location) -> bool {
        let Ok(index) = self.find(key, self.hash(key)) else { return false };
        let at = slot_offset(self.slots[index]);
        if self.entry_location(at) != from {
            return false;
        }
        self.live_record_bytes -= u64::from(from.record_bytes);
        self.live_record_bytes += u64::from(to.record_bytes);
        self.write_location(at, &to);
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Location> {
        let index = self.find(key, self.hash(key)).ok()?;
        let at = slot_offset(self.slots[index]);
        let location = self.entry_location(at);
        self.garbage_bytes += ENTRY_HEADER_BYTES + key.len();
        self.live_record_bytes -= u64::from(location.record_bytes);
        self.slots[index] = TOMBSTONE;
        self.live -= 1;
        self.tombstones += 1;
        if self.garbage_bytes > 4096 && self.garbage_bytes > self.arena_bytes / 2 {
            self.rebuild(self.slots.len());
        }
        Some(location)
    }

    pub fn clear(&mut self) {
        let seed = self.hasher.seed;
        *self = Table::new(seed);
    }

    fn grow_if_needed(&mut self) {
        if (self.live + self.tombstones) * 8 > self.slots.len() * 7 {
            let grown = self.slots.len() + self.slots.len() / 2;
            let capacity = if self.live * 2 > self.slots.len() { grown } else { self.slots.len() };
            self.rebuild(capacity);
        }
    }

    /// Re-inserts every live entry into a fresh table of `capacity` slots and a compact arena.
    fn rebuild(&mut self, capacity: usize) {
        let seed = self.hasher.seed;
        let old = std::mem::replace(self, Table::new(seed));
        self.slots = vec![EMPTY; capacity.max(16)];
        for (key, location) in old.iter() {
            self.insert(key, location);
        }
        debug_assert_eq!(self.live, old.live);
    }

    /// Where a key stands in SCAN's order: the low 32 bits of its hash, which also place it in
    /// the table (`home`), whatever the table's size.
    pub fn scan_position(&self, key: &[u8]) -> u64 {
        u64::from(self.hash(key) as u32)
    }

    /// SCAN's step: hands `visit` every live key whose scan position lies in `from..to`, and
    /// returns `to`, chosen so that about `slots_wanted` slots are read (`SCAN_END` when the
    /// range reaches the end). The range is in hash positions, not slots, so a cursor (`to`)
    /// stays meaningful while the table grows, shrinks or rebuilds: a key present throughout
    /// a scan is visited exactly once.
    #[cfg(test)]
    pub fn scan(&self, from: u64, slots_wanted: usize, visit: impl FnMut(&[u8])) -> u64 {
        let to = self.scan_end(from, slots_wanted);
        self.scan_range(from, to, visit);
        to
    }

    /// Where a scan step from `from` that reads about `slots_wanted` slots ends.
    pub fn scan_end(&self, from: u64, slots_wanted: usize) -> u64 {
        assert!(from < SCAN_END, "a scan position fits 32 bits");
        let slots = self.slots.len();
        let end_slot = self.home(from).saturating_add(slots_wanted.max(1)).min(slots);
        // The lowest position whose home is `end_slot` or later (the inverse of `home`).
        let to = if end_slot == slots { SCAN_END } else { (end_slot as u64 * SCAN_END).div_ceil(slots as u64) };
        debug_assert!(to > from, "every step moves on");
        to
    }

    /// Hands `visit` every live key whose scan position lies in `from..to`.
    pub fn scan_range(&self, from: u64, to: u64, mut visit: impl FnMut(&[u8])) {
        assert!(from < to && to <= SCAN_END, "a scan range is not empty and fits 32 bits");
        let slots = self.slots.len();
        let first = self.home(from);
        // Keys with positions below `to` have their home at `home(to)` or before.
        let end_slot = if to == SCAN_END { slots } else { self.home(to) };
        // Keys with positions in range sit at their home or after it, up to the next empty slot
        // (linear probing), wrapping around past the last slot.
        for step in 0..slots {
            let slot = self.slots[(first + step) % slots];
            if slot == EMPTY && first + step >= end_slot {
                break;
            }
            if slot > TOMBSTONE {
                let key = self.entry_key(slot_offset(slot));
                let position = self.scan_position(key);
                if (from..to).contains(&position) {
                    visit(key);
                }
            }
        }
    }

    /// Every key and location, in table order (deterministic for a given seed and history).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Location)> + '_ {
        self.slots.iter().filter(|slot| **slot > TOMBSTONE).map(|slot| {
            let at = slot_offset(*slot);
            (self.entry_key(at), self.entry_location(at))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Location;
    use super::Table;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn location(value: u64) -> Location {
        Location {
            offset_bytes: value.wrapping_mul(7),
            record_bytes: value as u32,
            sequence_low: value.wrapping_mul(3) as u32,
        }
    }

    /// A full scan, a step at a time, with the table changed between steps by `between`.
    fn full_scan(index: &mut Table, step_slots: usize, mut between: impl FnMut(&mut Table, usize)) -> Vec<Vec<u8>> {
        let (mut seen, mut from, mut steps) = (Vec::new(), 0, 0);
        while from < super::SCAN_END {
            from = index.scan(from, step_slots, |key| seen.push(key.to_vec()));
            between(index, steps);
            steps += 1;
            assert!(steps < 100_000, "a scan ends");
        }
        seen
    }

    #[test]
    fn a_scan_visits_every_key_present_throughout_once_while_the_table_resizes() {
        let mut index = Table::new(7);
        for number in 0..500u64 {
            index.insert(format!("stable{number}").as_bytes(), location(number + 1));
        }
        let mut added = 0u64;
        let seen = full_scan(&mut index, 5, |index, step| {
            // Growth (rebuilds to larger tables) and churn (tombstones, then a shrinking rebuild).
            for _ in 0..20 {
                index.insert(format!("new{added}").as_bytes(), location(added + 1));
                added += 1;
            }
            if step % 3 == 0 {
                for gone in added.saturating_sub(40)..added.saturating_sub(20) {
                    index.remove(format!("new{gone}").as_bytes());
                }
            }
        });
        for number in 0..500u64 {
            let key = format!("stable{number}").into_bytes();
            assert_eq!(seen.iter().filter(|seen| **seen == key).count(), 1, "stable{number}");
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no key is visited twice");
    }

    #[test]
    fn spans_many_arena_chunks_and_reclaims_garbage() {
        let mut index = Table::new(7);
        let key = |number: u64| format!("a-longer-key-to-fill-chunks-{number:08}").into_bytes();
        for number in 0..200_000u64 {
            index.insert(&key(number), location(number));
        }
        assert!(index.arena.len() >= 9, "several chunks: {}", index.arena.len());
        for number in (0..200_000u64).filter(|number| number % 3 != 0) {
            assert_eq!(index.remove(&key(number)), Some(location(number)));
        }
        assert_eq!(index.len(), 66_667);
        for number in 0..200_000u64 {
            let expected = (number % 3 == 0).then(|| location(number));
            assert_eq!(index.get(&key(number)), expected, "key {number}");
        }
        let live_bytes = 66_667 * (18 + 36);
        assert!(index.arena_bytes <= 2 * live_bytes, "garbage was reclaimed: {} bytes", index.arena_bytes);
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(operations in proptest::collection::vec((0u8..3, 0u16..300, any::<u64>()), 0..3000)) {
            let mut index = Table::new(42);
            let mut model = BTreeMap::new();
            for (kind, key, value) in operations {
                let key = format!("key-{key}").into_bytes();
                match kind {
                    0 | 1 => {
                        index.insert(&key, location(value));
                        model.insert(key, location(value));
                    }
                    _ => prop_assert_eq!(index.remove(&key), model.remove(&key)),
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for (key, expected) in &model {
                prop_assert_eq!(index.get(key), Some(*expected));
            }
            let mut listed: Vec<(Vec<u8>, Location)> = index.iter().map(|(key, location)| (key.to_vec(), location)).collect();
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            let expected: Vec<(Vec<u8>, Location)> = model.into_iter().collect();
            prop_assert_eq!(listed, expected);
        }
    }
}
