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
    type State: Clone + Ord;
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
    /// The (candidate, next state) pairs still to try from here.
    choices: Vec<(usize, S)>,
}

/// Checks `history` against `model` from `initial`.
pub fn check<M: Model>(model: &M, initial: M::State, history: &[Entry<M::Operation>]) -> Verdict {
    for entry in history {
        assert!(entry.call < entry.ret, "an operation returns after its call");
    }
    let words = history.len().div_ceil(64);
    let mut seen: BTreeSet<(Vec<u64>, M::State)> = BTreeSet::new();
    let placed = vec![0u64; words];
    let choices = expand(model, history, &placed, &initial);
    let mut stack = vec![Frame { placed, choices }];
    let (mut deepest, mut stuck) = (0usize, 0usize);
    let mut nodes = 0u64;
    while let Some(frame) = stack.last_mut() {
        let Some((index, next_state)) = frame.choices.pop() else {
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
        if !seen.insert((placed.clone(), next_state.clone())) {
            continue;
        }
        let choices = expand(model, history, &placed, &next_state);
        if choices.is_empty() && count >= deepest {
            deepest = count;
            stuck = first_unplaced(history, &placed);
        }
        stack.push(Frame { placed, choices });
    }
    if history.is_empty() {
        return Verdict::Linearizable;
    }
    Verdict::Violation { stuck, prefix: deepest }
}

fn is_placed(placed: &[u64], index: usize) -> bool {
    placed[index / 64] & (1 << (index % 64)) != 0
}

/// The unplaced operation that returns first (the one the search could not get past).
fn first_unplaced<O>(history: &[Entry<O>], placed: &[u64]) -> usize {
    (0..history.len()).filter(|&index| !is_placed(placed, index)).min_by_key(|&index| history[index].ret).unwrap_or(0)
}

/// Every (operation, state) the search may take next from `state`: operations called before
/// the earliest return among the unplaced ones.
fn expand<M: Model>(
    model: &M,
    history: &[Entry<M::Operation>],
    placed: &[u64],
    state: &M::State,
) -> Vec<(usize, M::State)> {
    let horizon = (0..history.len()).filter(|&index| !is_placed(placed, index)).map(|index| history[index].ret).min();
    let Some(horizon) = horizon else { return Vec::new() };
    let mut choices = Vec::new();
    for (index, entry) in history.iter().enumerate() {
        if is_placed(placed, index) || entry.call >= horizon {
            continue;
        }
        for next in model.step(state, &entry.operation, !entry.optional) {
            choices.push((index, next));
        }
        if entry.optional {
            choices.push((index, state.clone())); // it never happened
        }
    }
    // Tried last-first: the earliest call is tried first.
    choices.reverse();
    choices
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
