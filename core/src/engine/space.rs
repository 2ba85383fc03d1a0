//! The log is a ring over the log region: batches are written at the head and compaction frees
//! them at the tail. A batch is one contiguous run of blocks, so one that does not fit before
//! the end of the region starts over at its first block (the wrap), leaving a gap that is freed
//! with the batch before it.
//!
//! The head never catches up with the tail: one block always stays free between them, so head
//! equal to tail means an empty log, never a full one.

use crate::BLOCK_BYTES;

/// The log region's geometry: blocks `start..end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    pub start: u64,
    pub end: u64,
}

/// Who wants to write: each kind may use the free space down to its own reserve, so that a full
/// disk still takes deletes, and compaction can always finish what it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    Put,
    Delete,
    Compaction,
}

impl Ring {
    pub fn capacity_blocks(&self) -> u64 {
        self.end - self.start
    }

    /// Blocks from the tail up to the head, gaps at the wrap included.
    pub fn used_blocks(&self, tail: u64, head: u64) -> u64 {
        debug_assert!(self.holds(tail) && (self.holds(head) || head == self.end));
        if head >= tail {
            head - tail
        } else {
            (self.end - tail) + (head - self.start)
        }
    }

    /// Blocks a new batch could still take, one block of separation kept.
    pub fn free_blocks(&self, tail: u64, head: u64) -> u64 {
        (self.capacity_blocks() - self.used_blocks(tail, head)).saturating_sub(1)
    }

    fn holds(&self, block: u64) -> bool {
        (self.start..self.end).contains(&block)
    }

    /// Where a batch of `blocks` goes with the head at `head`: there, at the region's start
    /// (wrapping), or nowhere yet.
    pub fn place(&self, tail: u64, head: u64, blocks: u64) -> Option<u64> {
        if head >= tail {
            // Ending at the region's end is ending next to its start: not when the tail is there.
            if head + blocks < self.end || head + blocks == self.end && tail != self.start {
                return Some(head);
            }
            return (self.start + blocks < tail || (tail == head && self.start + blocks <= self.end))
                .then_some(self.start);
        }
        (head + blocks < tail).then_some(head)
    }

    /// The head after a batch that ends at `end_block`: the region's end is its start.
    pub fn next_head(&self, end_block: u64) -> u64 {
        if end_block >= self.end {
            self.start
        } else {
            end_block
        }
    }

    /// The block a batch placed at `start` must end at or before.
    pub fn limit(&self, tail: u64, start: u64) -> u64 {
        if start >= tail {
            if tail == self.start {
                self.end - 1
            } else {
                self.end
            }
        } else {
            tail - 1
        }
    }

    /// Whether `block` lies in the ring interval `from..to` (which may wrap).
    pub fn interval_contains(&self, from: u64, to: u64, block: u64) -> bool {
        if from <= to {
            (from..to).contains(&block)
        } else {
            block >= from || block < to
        }
    }

    /// Free blocks each writer must leave: compaction may use everything; deletes leave what
    /// compaction needs to finish a chunk; puts leave that and room for deletes.
    pub fn reserve_blocks(writer: Writer, chunk_blocks: u32, batch_blocks_max: u32) -> u64 {
        let for_compaction = u64::from(chunk_blocks) + 2 * u64::from(batch_blocks_max);
        match writer {
            Writer::Compaction => 0,
            Writer::Delete => for_compaction,
            Writer::Put => for_compaction + u64::from(batch_blocks_max),
        }
    }

    /// Whether the log holds more garbage than the target allows: compaction is wanted.
    pub fn over_target(used_blocks: u64, live_bytes: u64, percent: u32, slack_blocks: u64) -> bool {
        let used_bytes = u128::from(used_blocks) * BLOCK_BYTES as u128;
        let allowed =
            u128::from(live_bytes) * u128::from(percent) / 100 + u128::from(slack_blocks) * BLOCK_BYTES as u128;
        used_bytes > allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: Ring = Ring { start: 2, end: 102 };

    #[test]
    fn an_empty_ring_places_at_the_head_and_wraps_when_the_end_is_near() {
        assert_eq!(RING.place(50, 50, 10), Some(50));
        assert_eq!(RING.place(50, 95, 10), Some(2), "wraps: the tail is far enough");
        assert_eq!(RING.place(10, 95, 10), None, "wrapping would reach the tail");
        assert_eq!(RING.place(95, 95, 10), Some(2), "empty: the whole region is free");
    }

    #[test]
    fn a_wrapped_head_keeps_one_block_from_the_tail() {
        assert_eq!(RING.place(40, 20, 19), Some(20));
        assert_eq!(RING.place(40, 20, 20), None);
        assert_eq!(RING.limit(40, 20), 39);
        assert_eq!(RING.limit(40, 60), 102);
    }

    #[test]
    fn the_head_at_the_regions_end_is_its_start() {
        assert_eq!(RING.next_head(102), 2);
        assert_eq!(RING.next_head(50), 50);
        // With the tail at the start, ending at the end would leave no block between them.
        assert_eq!(RING.place(2, 92, 10), None);
        assert_eq!(RING.place(3, 92, 10), Some(92));
        assert_eq!(RING.limit(2, 92), 101);
    }

    #[test]
    fn used_and_free_blocks_add_up() {
        for (tail, head) in [(2, 2), (10, 50), (50, 10), (101, 3), (3, 101)] {
            let used = RING.used_blocks(tail, head);
            assert_eq!(used + RING.free_blocks(tail, head) + 1, RING.capacity_blocks(), "{tail} {head}");
        }
        assert_eq!(RING.used_blocks(50, 10), 52 + 8);
    }

    #[test]
    fn intervals_wrap() {
        assert!(RING.interval_contains(10, 20, 10) && !RING.interval_contains(10, 20, 20));
        assert!(RING.interval_contains(90, 5, 95) && RING.interval_contains(90, 5, 3));
        assert!(!RING.interval_contains(90, 5, 50));
    }

    #[test]
    fn the_target_allows_slack_and_a_share_of_live_bytes() {
        assert!(!Ring::over_target(10, 4096 * 10, 150, 0));
        assert!(Ring::over_target(16, 4096 * 10, 150, 0));
        assert!(!Ring::over_target(16, 4096 * 10, 150, 1));
    }
}
