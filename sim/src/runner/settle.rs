//! A recovery decides every write the crash left undecided. Once an open completes, each
//! register key's durable value is a fact: a write that was in flight at the crash (or answered
//! with an error that left its fate unknown) and whose value is not that value did not take
//! effect last, so no later read may return it. Without this, such a write stayed possible
//! forever, and a recovery that replayed a stale batch of writes from an earlier crash (the
//! planted `ignore-stale-epoch`) passed unless the same key was written again.

use quill_core::format::RecordHeader;
use quill_core::BLOCK_BYTES;

use crate::checker::{family, Family, ValueId};
use crate::runner::Sim;

impl Sim {
    /// After an open completed: settles the undecided writes of every register key from the
    /// recovered index (read from the disk image, verified like a value read).
    pub(crate) fn settle_undecided_writes(&mut self) {
        let crash_time = self.crash_time;
        let undecided: Vec<Vec<u8>> = self
            .checker
            .keys
            .iter()
            .filter(|(key, history)| family(key) == Some(Family::Register) && history.has_undecided(crash_time))
            .map(|(key, _)| key.clone())
            .collect();
        for key in undecided {
            if let Some(durable) = self.durable_value(&key) {
                self.checker.settle(&key, crash_time, durable);
            }
        }
    }

    /// The key's value in the recovered index: `Some(None)` if absent, `None` if its record
    /// cannot be read back whole (damage: then nothing is settled).
    fn durable_value(&self, key: &[u8]) -> Option<Option<ValueId>> {
        let engine = self.engine();
        let Some(location) = engine.durable_location(key) else { return Some(None) };
        let first_block = location.offset_bytes / BLOCK_BYTES as u64;
        let end_bytes = location.offset_bytes + u64::from(location.record_bytes);
        let blocks = end_bytes.div_ceil(BLOCK_BYTES as u64) - first_block;
        let image = self.disk.read(first_block * BLOCK_BYTES as u64, blocks as usize * BLOCK_BYTES);
        let start = (location.offset_bytes - first_block * BLOCK_BYTES as u64) as usize;
        let bytes = &image[start..start + location.record_bytes as usize];
        let header = RecordHeader::decode_verified(bytes, engine.volume_id(), location.offset_bytes).ok()?;
        (bytes.get(header.key_offset()..header.value_offset())? == key).then_some(())?;
        Some(Some(ValueId::of(bytes.get(header.value_offset()..header.total_bytes())?)))
    }
}
