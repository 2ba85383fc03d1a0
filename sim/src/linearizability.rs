//! A linearizability checker for one object's history: the Wing–Gong search with Lowe's
//! memoization, as Porcupine and Knossos run it.
//!
//! An operation has a call time and a return time on one logical clock. The search builds a
//! sequential order one operation at a time: the next one may be any not yet placed whose call
//! came before every unplaced operation's return (nothing that finished earlier is skipped).
//! The model says which states the operation may leave given the reply it got; the search
//! backtracks when none. A pair (operations placed, state) seen once is never explored again:
//! that cache is what makes the search practical.
//!
//! Crashes and lost connections leave operations whose outcome nobody saw. Such an operation is
//! *optional*: it may have taken effect (any reply) or never; its return time is the moment it
//! could last have run (the next crash), so it cannot be placed after what followed the crash.
//!
//! Partitioning is the caller's (P-compositionality): one history per independent object.

use std::collections::BTreeSet;

/// What the search may explore before it gives up undecided (a limit on every loop).
pub const SEARCH_NODES_MAX: u64 = 400_000;

/// The sequential specification of an object.
pub trait Model {
    type State: Clone + std::hash::Hash;
    type Operation;
    /// The states `operation` may leave from `state`: with `reply` known, only those that give
    /// exactly that reply; with `None` (an optional operation that took effect), any.
    fn step(&self, state: &Self::State, operation: &Self::Operation, observed: bool) -> Vec<Self::State>;
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Entry<O> {
    pub call: u64,
    /// `u64::MAX`: it may have run at any later time.
    pub ret: u64,
    pub operation: O,
    /// Its outcome was never seen: it may also never have happened.
    pub optional: bool,
}

/// How a check ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history. `stuck` is the operation (by index) that no placement
    /// of the longest explained prefix could take next, `prefix` that prefix's length.
    Violation {
        stuck: usize,
        prefix: usize,
    },
    /// The search met its node limit first: neither proven nor refuted.
    Undecided,
}

struct Frame<S> {
    placed: Vec<u64>,
    state: S,
    /// Operations that may go next from here, not tried yet (computed once, stepped lazily:
    /// most histories are nearly sequential, and the first candidate usually fits).
    candidates: Vec<usize>,
    /// The states the candidate being tried may leave, not tried yet.
    pending: Vec<(usize, S)>,
}

impl<S: Clone> Frame<S> {
    fn new<O>(history: &[Entry<O>], placed: Vec<u64>, state: S) -> Frame<S> {
        let candidates = candidates(history, &placed);
        Frame { placed, state, candidates, pending: Vec::new() }
    }

    /// The next (operation, state) to try from this frame.
    fn next<M: Model<State = S>>(&mut self, model: &M, history: &[Entry<M::Operation>]) -> Option<(usize, S)> {
        loop {
            if let Some(choice) = self.pending.pop() {
                return Some(choice);
            }
            let index = self.candidates.pop()?;
            let entry = &history[index];
            if entry.optional {
                self.pending.push((index, self.state.clone())); // it never happened: tried last
            }
            for next in model.step(&self.state, &entry.operation, !entry.optional) {
                self.pending.push((index, next));
            }
        }
    }
}

/// Checks `history` against `model` from `initial`.
pub fn check<M: Model>(model: &M, initial: M::State, history: &[Entry<M::Operation>]) -> Verdict {
    for entry in history {
        assert!(entry.call < entry.ret, "an operation returns after its call");
    }
    if history.is_empty() {
        return Verdict::Linearizable;
    }
    let words = history.len().div_ceil(64);
    let mut seen: BTreeSet<u128> = BTreeSet::new();
    let mut stack = vec![Frame::new(history, vec![0u64; words], initial)];
    let (mut deepest, mut stuck) = (0usize, first_unplaced(history, &vec![0u64; words]));
    let mut nodes = 0u64;
    while let Some(frame) = stack.last_mut() {
        let Some((index, next_state)) = frame.next(model, history) else {
            stack.pop();
            continue;
        };
        nodes += 1;
        if nodes > SEARCH_NODES_MAX {
            return Verdict::Undecided;
        }
        let mut placed = frame.placed.clone();
        placed[index / 64] |= 1 << (index % 64);
        let count = placed.iter().map(|word| word.count_ones() as usize).sum::<usize>();
        if count == history.len() {
            return Verdict::Linearizable;
        }
        if !seen.insert(fingerprint(&placed, &next_state)) {
            continue;
        }
        if count > deepest {
            deepest = count;
            stuck = first_unplaced(history, &placed);
        }
        stack.push(Frame::new(history, placed, next_state));
    }
    Verdict::Violation { stuck, prefix: deepest }
}

/// 128 bits of (operations placed, state): the cache holds these, not copies of the states.
/// The hasher is SipHash with fixed keys (`DefaultHasher::new`), so runs are reproducible; a
/// collision could only hide a linearization, at odds of about 2^-128 per pair.
fn fingerprint<S: std::hash::Hash>(placed: &[u64], state: &S) -> u128 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut low = DefaultHasher::new();
    let mut high = DefaultHasher::new();
    high.write_u8(0x5a); // a different stream for the high half
    for hasher in [&mut low, &mut high] {
        placed.hash(hasher);
        state.hash(hasher);
    }
    u128::from(high.finish()) << 64 | u128::from(low.finish())
}

fn is_placed(placed: &[u64], index: usize) -> bool {
    placed[index / 64] & (1 << (index % 64)) != 0
}

/// The unplaced operation that returns first (the one the search could not get past).
fn first_unplaced<O>(history: &[Entry<O>], placed: &[u64]) -> usize {
    (0..history.len()).filter(|&index| !is_placed(placed, index)).min_by_key(|&index| history[index].ret).unwrap_or(0)
}

/// The operations that may go next: unplaced, called before the earliest return among the
/// unplaced ones. Stored so the earliest call is tried first.
fn candidates<O>(history: &[Entry<O>], placed: &[u64]) -> Vec<usize> {
    let unplaced = (0..history.len()).filter(|&index| !is_placed(placed, index));
    let Some(horizon) = unplaced.clone().map(|index| history[index].ret).min() else { return Vec::new() };
    let mut candidates: Vec<usize> = unplaced.filter(|&index| history[index].call < horizon).collect();
    candidates.reverse();
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register: write(v) or read() returning v.
    struct Register;

    #[derive(Clone, Debug)]
    enum Op {
        Write(u8),
        Read(Option<u8>),
    }

    impl Model for Register {
        type State = Option<u8>;
        type Operation = Op;
        fn step(&self, state: &Option<u8>, operation: &Op, observed: bool) -> Vec<Option<u8>> {
            match operation {
                Op::Write(value) => vec![Some(*value)],
                Op::Read(_) if !observed => vec![*state],
                Op::Read(seen) => (seen == state).then_some(*state).into_iter().collect(),
            }
        }
    }

    fn entry(call: u64, ret: u64, operation: Op) -> Entry<Op> {
        Entry { call, ret, operation, optional: false }
    }

    #[test]
    fn concurrent_write_may_be_seen_or_not() {
        let history = [entry(1, 4, Op::Write(1)), entry(2, 3, Op::Read(Some(1))), entry(5, 6, Op::Read(Some(1)))];
        assert_eq!(check(&Register, None, &history), Verdict::Linearizable);
        let history = [entry(1, 4, Op::Write(1)), entry(2, 3, Op::Read(None)), entry(5, 6, Op::Read(Some(1)))];
        assert_eq!(check(&Register, None, &history), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_a_violation() {
        let history = [entry(1, 2, Op::Write(1)), entry(3, 4, Op::Write(2)), entry(5, 6, Op::Read(Some(1)))];
        assert!(matches!(check(&Register, None, &history), Verdict::Violation { stuck: 2, .. }));
    }

    #[test]
    fn a_read_cannot_flip_back() {
        // Two reads after the write began: once one sees the new value, a later one cannot see the old.
        let history = [entry(1, 10, Op::Write(1)), entry(2, 3, Op::Read(Some(1))), entry(4, 5, Op::Read(None))];
        assert!(matches!(check(&Register, None, &history), Verdict::Violation { .. }));
    }

    #[test]
    fn optional_operations_may_vanish_but_not_run_after_their_bound() {
        let lost = Entry { call: 1, ret: 3, operation: Op::Write(1), optional: true };
        let history = [lost.clone(), entry(4, 5, Op::Read(None))];
        assert_eq!(check(&Register, None, &history), Verdict::Linearizable);
        let history = [lost.clone(), entry(4, 5, Op::Read(Some(1)))];
        assert_eq!(check(&Register, None, &history), Verdict::Linearizable);
        // Seen absent, then present after the crash bound: it cannot have run in between.
        let history = [lost, entry(4, 5, Op::Read(None)), entry(6, 7, Op::Read(Some(1)))];
        assert!(matches!(check(&Register, None, &history), Verdict::Violation { .. }));
    }
}
