//! An isolation checker for transactions over lists, after Elle (Kingsbury and Alvaro, "Elle:
//! Inferring Isolation Anomalies from Experimental Observations", VLDB 2020).
//!
//! Every write appends a unique token to a key, so a read returns a list whose order is the
//! order of the appends that made it: the version order of each key can be read off the
//! longest list seen, and every other read must be a prefix of it. From the lists come the
//! dependencies between transactions:
//!
//! - write-write (`ww`): the append of one token, then the append of the next one on that key;
//! - write-read (`wr`): the append of a read's last token, then the read;
//! - read-write (`rw`): a read, then the append of the token that follows its last one;
//! - real time (`rt`): a transaction answered before another was sent.
//!
//! A cycle of `ww` alone is G0 (dirty write), with `wr` G1c, with one or more `rw` G2
//! (G-single with exactly one), and one that needs `rt` breaks strict serializability. Apart
//! from cycles: a read of a token whose transaction failed (G1a), of a transaction's first
//! append to a key without its later one (G1b), of a token never appended (garbage), a list
//! that no single order explains, a duplicate, and an acknowledged append missing from the
//! longest list (lost). A transaction whose reply was never seen counts once one of its appends
//! is seen; then all its appends must be there.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One micro-operation of a transaction.
#[derive(Clone, Debug)]
pub enum Micro {
    Append {
        key: Vec<u8>,
        token: u64,
    },
    /// `list: None`: the read's result was never seen.
    Read {
        key: Vec<u8>,
        list: Option<Vec<u64>>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    Committed,
    /// Refused whole: nothing of it was applied.
    Failed,
    /// Its reply never came (a crash, a cut connection, "not durable").
    Indeterminate,
}

#[derive(Clone, Debug)]
pub struct Txn {
    pub id: u64,
    pub call: u64,
    /// The latest moment it may have taken effect (`u64::MAX`: unbounded).
    pub ret: u64,
    pub status: TxnStatus,
    pub micros: Vec<Micro>,
    /// Appends the engine refused inside a committed transaction (an error reply of its own).
    pub refused_tokens: Vec<u64>,
    pub description: String,
}

const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;
const RT: u8 = 8;

/// What the check found, the first anomaly only.
#[derive(Debug)]
pub struct Anomaly {
    pub kind: &'static str,
    pub key: Vec<u8>,
    pub explanation: String,
}

struct Graph {
    /// Edges by source node: (target, kinds, the key that explains it).
    edges: Vec<BTreeMap<usize, (u8, Vec<u8>)>>,
}

impl Graph {
    fn add(&mut self, from: usize, to: usize, kind: u8, key: &[u8]) {
        if from == to {
            return;
        }
        let edge = self.edges[from].entry(to).or_insert((0, key.to_vec()));
        edge.0 |= kind;
    }
}

/// Checks a history of list-append transactions.
pub fn check(txns: &[Txn]) -> Result<(), Anomaly> {
    let writers = writers(txns);
    let observed = observed_tokens(txns);
    let orders = version_orders(txns, &writers)?;
    check_reads(txns, &writers)?;
    check_appends_present(txns, &orders, &observed)?;
    let included: Vec<bool> = txns
        .iter()
        .map(|txn| match txn.status {
            TxnStatus::Committed => true,
            TxnStatus::Failed => false,
            TxnStatus::Indeterminate => appends(txn).any(|(_, token)| observed.contains(&token)),
        })
        .collect();
    let graph = dependencies(txns, &writers, &orders, &included);
    find_cycle(txns, &graph)
}

fn appends(txn: &Txn) -> impl Iterator<Item = (&[u8], u64)> {
    txn.micros.iter().filter_map(|micro| match micro {
        Micro::Append { key, token } => Some((key.as_slice(), *token)),
        Micro::Read { .. } => None,
    })
}

fn reads(txn: &Txn) -> impl Iterator<Item = (&[u8], &Vec<u64>)> {
    txn.micros.iter().filter_map(|micro| match micro {
        Micro::Read { key, list: Some(list) } => Some((key.as_slice(), list)),
        _ => None,
    })
}

/// Each token's transaction (by index) and key, in arrays indexed by token: the workload's
/// tokens are dense from 1, and the checker looks every token of every read up.
struct Writers {
    by_token: Vec<Option<(usize, usize)>>,
    keys: Vec<Vec<u8>>,
}

impl Writers {
    fn get(&self, token: u64) -> Option<(usize, &[u8])> {
        let (txn, key) = (*self.by_token.get(usize::try_from(token).ok()?)?)?;
        Some((txn, &self.keys[key]))
    }

    /// The transaction of a token already checked to have been appended.
    fn txn(&self, token: u64) -> usize {
        self.get(token).expect("a token checked to have a writer").0
    }
}

fn writers(txns: &[Txn]) -> Writers {
    let highest = txns.iter().flat_map(|txn| appends(txn).map(|(_, token)| token)).max().unwrap_or(0);
    let mut writers = Writers { by_token: vec![None; highest as usize + 1], keys: Vec::new() };
    let mut key_ids: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (index, txn) in txns.iter().enumerate() {
        for (key, token) in appends(txn) {
            let next_id = key_ids.len();
            let id = *key_ids.entry(key).or_insert(next_id);
            if id == writers.keys.len() {
                writers.keys.push(key.to_vec());
            }
            let slot = &mut writers.by_token[token as usize];
            assert!(slot.is_none(), "the workload appends each token once");
            *slot = Some((index, id));
        }
    }
    writers
}

/// Whether each token (by index) was seen in some read.
struct Observed(Vec<bool>);

impl Observed {
    fn contains(&self, token: &u64) -> bool {
        usize::try_from(*token).ok().and_then(|index| self.0.get(index)).copied().unwrap_or(false)
    }
}

fn observed_tokens(txns: &[Txn]) -> Observed {
    let mut seen = Vec::new();
    for token in txns.iter().flat_map(|txn| reads(txn).flat_map(|(_, list)| list.iter().copied())) {
        let index = usize::try_from(token).unwrap_or(usize::MAX).min(1 << 32);
        if index >= seen.len() {
            seen.resize(index + 1, false);
        }
        seen[index] = true;
    }
    Observed(seen)
}

/// The longest list read of each key; every other read must be a prefix of it.
fn version_orders(txns: &[Txn], writers: &Writers) -> Result<BTreeMap<Vec<u8>, Vec<u64>>, Anomaly> {
    let mut orders: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    // The read (by number) that last met each token, to find a token twice in one list.
    let mut met_in: Vec<u32> = vec![0; writers.by_token.len()];
    let mut read_number = 0u32;
    for txn in txns {
        for (key, list) in reads(txn) {
            read_number += 1;
            for token in list {
                let index = usize::try_from(*token).unwrap_or(usize::MAX);
                let twice = index < met_in.len() && std::mem::replace(&mut met_in[index], read_number) == read_number;
                if twice {
                    let explanation = format!("token {token} twice in {list:?}, read by {}", txn.description);
                    return Err(Anomaly { kind: "duplicate append", key: key.to_vec(), explanation });
                }
                match writers.get(*token) {
                    None => {
                        let explanation =
                            format!("token {token} was never appended; {} read {list:?}", txn.description);
                        return Err(Anomaly { kind: "garbage read", key: key.to_vec(), explanation });
                    }
                    Some((_, written)) if written != key => {
                        let explanation = format!("token {token} was appended to another key; {}", txn.description);
                        return Err(Anomaly { kind: "misplaced append", key: key.to_vec(), explanation });
                    }
                    Some(_) => {}
                }
            }
            let longest = match orders.get_mut(key) {
                Some(longest) => longest,
                None => orders.entry(key.to_vec()).or_default(),
            };
            if list.len() > longest.len() {
                longest.clone_from(list);
            }
        }
    }
    for txn in txns {
        for (key, list) in reads(txn) {
            let longest = &orders[key];
            if !longest.starts_with(list) {
                let explanation = format!(
                    "{} read {list:?}, not a prefix of {longest:?}: no order of appends gives both",
                    txn.description
                );
                return Err(Anomaly { kind: "incompatible order", key: key.to_vec(), explanation });
            }
        }
    }
    Ok(orders)
}

/// Aborted (G1a) and intermediate (G1b) reads, and a transaction's reads of its own appends.
fn check_reads(txns: &[Txn], writers: &Writers) -> Result<(), Anomaly> {
    let refused: BTreeMap<u64, usize> = txns
        .iter()
        .enumerate()
        .flat_map(|(index, txn)| txn.refused_tokens.iter().map(move |token| (*token, index)))
        .collect();
    for txn in txns {
        let mut own: BTreeMap<&[u8], u64> = BTreeMap::new();
        for micro in &txn.micros {
            match micro {
                Micro::Append { key, token } => _ = own.insert(key, *token),
                Micro::Read { key, list: Some(list) } => {
                    if let Some(token) = own.get(key.as_slice()) {
                        if list.last() != Some(token) {
                            let explanation = format!("{} read {list:?} after appending {token}", txn.description);
                            return Err(Anomaly { kind: "internal inconsistency", key: key.clone(), explanation });
                        }
                        continue;
                    }
                    read_committed(txns, txn, key, list, writers, &refused)?;
                }
                Micro::Read { .. } => {}
            }
        }
    }
    Ok(())
}

/// A read by another transaction sees only finished, applied transactions' final appends.
fn read_committed(
    txns: &[Txn],
    reader: &Txn,
    key: &[u8],
    list: &[u64],
    writers: &Writers,
    refused: &BTreeMap<u64, usize>,
) -> Result<(), Anomaly> {
    for token in list {
        let writer = &txns[writers.txn(*token)];
        if writer.status == TxnStatus::Failed || refused.contains_key(token) {
            let explanation =
                format!("{} read token {token} of {}, which was refused", reader.description, writer.description);
            return Err(Anomaly { kind: "G1a (aborted read)", key: key.to_vec(), explanation });
        }
    }
    let Some(last) = list.last() else { return Ok(()) };
    let writer = &txns[writers.txn(*last)];
    let later_own = appends(writer).skip_while(|(_, token)| token != last).skip(1).find(|(other, _)| *other == key);
    if let Some((_, later)) = later_own {
        let explanation = format!(
            "{} read {list:?}, ending at {last} of {}, which appended {later} after it",
            reader.description, writer.description
        );
        return Err(Anomaly { kind: "G1b (intermediate read)", key: key.to_vec(), explanation });
    }
    Ok(())
}

/// Every acknowledged append, and every append of a transaction seen in part, is in the last
/// list read of its key, if that read began after the transaction could last take effect (the
/// final read comes last, with faults off; a key no read reached, damaged beyond the fault
/// budget, is not judged).
fn check_appends_present(
    txns: &[Txn],
    orders: &BTreeMap<Vec<u8>, Vec<u64>>,
    observed: &Observed,
) -> Result<(), Anomaly> {
    // Each key's last read: its call time and its tokens.
    let mut last_reads: BTreeMap<&[u8], (u64, BTreeSet<u64>)> = BTreeMap::new();
    for txn in txns.iter().filter(|txn| txn.status == TxnStatus::Committed) {
        for (key, list) in reads(txn) {
            if last_reads.get(key).is_none_or(|(call, _)| *call < txn.call) {
                last_reads.insert(key, (txn.call, list.iter().copied().collect()));
            }
        }
    }
    let missing = |txn: &Txn, key: &[u8], token: u64| {
        last_reads.get(key).is_some_and(|(call, tokens)| *call > txn.ret && !tokens.contains(&token))
    };
    for txn in txns {
        let partly_seen = appends(txn).any(|(_, token)| observed.contains(&token));
        let must = txn.status == TxnStatus::Committed || txn.status == TxnStatus::Indeterminate && partly_seen;
        if !must {
            continue;
        }
        if let Some((key, token)) = appends(txn).find(|(key, token)| missing(txn, key, *token)) {
            let (kind, why) = if txn.status == TxnStatus::Committed {
                ("lost append", "was acknowledged")
            } else {
                ("transaction partly applied", "is missing while another append of its transaction is there")
            };
            let longest = orders.get(key).map(Vec::len).unwrap_or(0);
            let explanation =
                format!("token {token} of {} {why}; the longest list of the key has {longest} tokens", txn.description);
            return Err(Anomaly { kind, key: key.to_vec(), explanation });
        }
    }
    Ok(())
}

fn dependencies(txns: &[Txn], writers: &Writers, orders: &BTreeMap<Vec<u8>, Vec<u64>>, included: &[bool]) -> Graph {
    let mut graph = Graph { edges: vec![BTreeMap::new(); txns.len()] };
    for (key, order) in orders {
        for pair in order.windows(2) {
            graph.add(writers.txn(pair[0]), writers.txn(pair[1]), WW, key);
        }
    }
    for (reader, txn) in txns.iter().enumerate().filter(|(index, _)| included[*index]) {
        for (key, list) in reads(txn) {
            if let Some(last) = list.last() {
                graph.add(writers.txn(*last), reader, WR, key);
            }
            if let Some(next) = orders[key].get(list.len()) {
                graph.add(reader, writers.txn(*next), RW, key);
            }
        }
    }
    real_time_edges(txns, included, &mut graph);
    graph
}

/// `a` before `b` when `a` returned before `b` was called: a frontier of the latest finished
/// transactions keeps the edges few while their transitive closure is the real-time order.
fn real_time_edges(txns: &[Txn], included: &[bool], graph: &mut Graph) {
    // Events: (time, 0 for a return before 1 for a call at the same time, index).
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (index, txn) in txns.iter().enumerate().filter(|(index, _)| included[*index]) {
        events.push((txn.call, 1, index));
        if txn.ret != u64::MAX {
            events.push((txn.ret, 0, index));
        }
    }
    events.sort_unstable();
    let mut frontier: BTreeSet<usize> = BTreeSet::new();
    let mut preceded_by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (_, kind, index) in events {
        if kind == 1 {
            for &before in &frontier {
                graph.add(before, index, RT, b"");
            }
            preceded_by.insert(index, frontier.iter().copied().collect());
        } else {
            for before in preceded_by.remove(&index).unwrap_or_default() {
                frontier.remove(&before);
            }
            frontier.insert(index);
        }
    }
}

/// Looks for a cycle with ever more kinds of edges, so the weakest anomaly is named.
fn find_cycle(txns: &[Txn], graph: &Graph) -> Result<(), Anomaly> {
    // One pass over every edge first: most histories have no cycle at all.
    if cycle_with(graph, WW | WR | RW | RT).is_none() {
        return Ok(());
    }
    classify_cycle(txns, graph)
}

fn classify_cycle(txns: &[Txn], graph: &Graph) -> Result<(), Anomaly> {
    for (mask, kind) in [(WW, "G0 (write cycle)"), (WW | WR, "G1c (circular information flow)"), (WW | WR | RW, "G2")] {
        if let Some(cycle) = cycle_with(graph, mask) {
            let rw = count_kind(graph, &cycle, RW);
            let kind = if mask & RW != 0 && rw == 1 { "G-single (read skew)" } else { kind };
            return Err(Anomaly { kind, key: cycle_key(graph, &cycle), explanation: describe(txns, graph, &cycle) });
        }
    }
    if let Some(cycle) = cycle_with(graph, WW | WR | RW | RT) {
        let kind = "real-time order violated (not strictly serializable)";
        return Err(Anomaly { kind, key: cycle_key(graph, &cycle), explanation: describe(txns, graph, &cycle) });
    }
    Ok(())
}

fn count_kind(graph: &Graph, cycle: &[usize], kind: u8) -> usize {
    cycle
        .windows(2)
        .filter(|pair| {
            graph.edges[pair[0]][&pair[1]].0 & kind != 0 && graph.edges[pair[0]][&pair[1]].0 & (WW | WR) == 0
        })
        .count()
}

fn cycle_key(graph: &Graph, cycle: &[usize]) -> Vec<u8> {
    cycle
        .windows(2)
        .map(|pair| graph.edges[pair[0]][&pair[1]].1.clone())
        .find(|key| !key.is_empty())
        .unwrap_or_default()
}

/// A cycle using only edges of `mask`, as a node list whose first and last are the same.
fn cycle_with(graph: &Graph, mask: u8) -> Option<Vec<usize>> {
    let next =
        |node: usize| graph.edges[node].iter().filter(move |(_, (kinds, _))| kinds & mask != 0).map(|(to, _)| *to);
    let components = strongly_connected(graph.edges.len(), &next);
    let component = components.into_iter().find(|component| component.len() > 1)?;
    let members: BTreeSet<usize> = component.iter().copied().collect();
    let start = component[0];
    // Breadth first from `start` back to it, inside the component: a shortest cycle through it.
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for to in next(node).filter(|to| members.contains(to)) {
            if to == start {
                let mut cycle = vec![start, node];
                let mut at = node;
                while at != start {
                    at = parent[&at];
                    cycle.push(at);
                }
                cycle.reverse();
                return Some(cycle);
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = parent.entry(to) {
                slot.insert(node);
                queue.push_back(to);
            }
        }
    }
    unreachable!("a strongly connected component of two or more nodes has a cycle through each")
}

/// Tarjan's algorithm, iterative (no recursion depth limit to meet).
fn strongly_connected<I: Iterator<Item = usize>>(count: usize, next: &dyn Fn(usize) -> I) -> Vec<Vec<usize>> {
    let mut index = vec![usize::MAX; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut counter = 0;
    for root in 0..count {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> = vec![(root, next(root).collect())];
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((node, successors)) = work.last_mut() {
            let node = *node;
            if let Some(to) = successors.pop() {
                if index[to] == usize::MAX {
                    index[to] = counter;
                    low[to] = counter;
                    counter += 1;
                    stack.push(to);
                    on_stack[to] = true;
                    work.push((to, next(to).collect()));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

fn describe(txns: &[Txn], graph: &Graph, cycle: &[usize]) -> String {
    let mut text = String::new();
    for pair in cycle.windows(2) {
        let (kinds, key) = &graph.edges[pair[0]][&pair[1]];
        let names: Vec<&str> = [(WW, "ww"), (WR, "wr"), (RW, "rw"), (RT, "rt")]
            .iter()
            .filter(|(bit, _)| kinds & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        text.push_str(&format!(
            "{} -{}({})-> ",
            txns[pair[0]].description,
            names.join("+"),
            String::from_utf8_lossy(key)
        ));
    }
    text.push_str(&txns[cycle[0]].description);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(id: u64, call: u64, ret: u64, micros: Vec<Micro>) -> Txn {
        Txn {
            id,
            call,
            ret,
            status: TxnStatus::Committed,
            micros,
            refused_tokens: Vec::new(),
            description: format!("T{id}"),
        }
    }

    fn append(key: &str, token: u64) -> Micro {
        Micro::Append { key: key.as_bytes().to_vec(), token }
    }

    fn read(key: &str, list: &[u64]) -> Micro {
        Micro::Read { key: key.as_bytes().to_vec(), list: Some(list.to_vec()) }
    }

    #[test]
    fn a_serial_history_passes() {
        let history = [
            txn(1, 1, 2, vec![append("x", 1), append("y", 2)]),
            txn(2, 3, 4, vec![read("x", &[1]), append("x", 3)]),
            txn(3, 5, 6, vec![read("x", &[1, 3]), read("y", &[2])]),
        ];
        check(&history).expect("serial");
    }

    #[test]
    fn lost_update_is_g_single_or_g2() {
        // Both read x empty and both append: each read misses the other's append.
        let history = [
            txn(1, 1, 10, vec![read("x", &[]), append("x", 1)]),
            txn(2, 2, 11, vec![read("x", &[]), append("x", 2)]),
            txn(3, 12, 13, vec![read("x", &[1, 2])]),
        ];
        let anomaly = check(&history).expect_err("a lost update");
        assert!(anomaly.kind.starts_with("G"), "{anomaly:?}");
        assert!(anomaly.explanation.contains("T1") && anomaly.explanation.contains("T2"), "{anomaly:?}");
    }

    #[test]
    fn stale_read_after_commit_breaks_real_time() {
        let history = [
            txn(1, 1, 2, vec![append("x", 1)]),
            txn(2, 3, 4, vec![read("x", &[])]),
            txn(3, 5, 6, vec![read("x", &[1])]),
        ];
        let anomaly = check(&history).expect_err("stale");
        assert!(anomaly.kind.starts_with("real-time"), "{anomaly:?}");
    }

    #[test]
    fn lost_and_aborted_and_intermediate() {
        let lost = [
            txn(1, 1, 2, vec![append("x", 1)]),
            txn(2, 3, 4, vec![append("x", 2)]),
            txn(3, 5, 6, vec![read("x", &[2])]),
        ];
        assert!(check(&lost).is_err());
        let mut failed = txn(1, 1, 2, vec![append("x", 1)]);
        failed.status = TxnStatus::Failed;
        let aborted = [failed, txn(2, 3, 4, vec![read("x", &[1])])];
        assert_eq!(check(&aborted).expect_err("G1a").kind, "G1a (aborted read)");
        let intermediate = [
            txn(1, 1, 5, vec![append("x", 1), append("x", 2)]),
            txn(2, 2, 3, vec![read("x", &[1])]),
            txn(3, 6, 7, vec![read("x", &[1, 2])]),
        ];
        assert_eq!(check(&intermediate).expect_err("G1b").kind, "G1b (intermediate read)");
    }

    #[test]
    fn interleaved_appends_are_a_write_cycle() {
        // T1 appends x then y, T2 appends x then y, but the orders disagree.
        let history = [
            txn(1, 1, 10, vec![append("x", 1), append("y", 3)]),
            txn(2, 2, 11, vec![append("x", 2), append("y", 4)]),
            txn(3, 12, 13, vec![read("x", &[1, 2]), read("y", &[4, 3])]),
        ];
        assert_eq!(check(&history).expect_err("G0").kind, "G0 (write cycle)");
    }
}
