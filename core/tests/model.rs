//! A proptest model test: random commands from several clients, I/O completed in random order,
//! crashes at random points; every reply and every recovered state is checked against a
//! `BTreeMap` model.
//!
//! Each client owns its keys, so its commands have one order and the model is exact: a reply
//! must equal the model's newest value, and after a crash each client's keys must equal its
//! acknowledged state plus some prefix of its unacknowledged writes (a batch is all or nothing,
//! so an MSET's keys land together).

mod support;

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use quill_core::command::SetCondition;
use quill_core::{Reply, Request};
use support::Harness;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Debug)]
enum Op {
    Set(u8, usize),
    Del(u8),
    MSet(u8, u8, usize),
    Get(u8),
    MGet(u8, u8),
    Incr,
    Append(u8),
    Complete(u8),
    Crash,
}

fn op() -> impl Strategy<Value = (u8, Op)> {
    let op = prop_oneof![
        4 => (0u8..6, 0usize..9000).prop_map(|(key, length)| Op::Set(key, length)),
        1 => (0u8..6).prop_map(Op::Del),
        1 => (0u8..6, 0u8..6, 0usize..300).prop_map(|(a, b, length)| Op::MSet(a, b, length)),
        3 => (0u8..6).prop_map(Op::Get),
        1 => (0u8..6, 0u8..6).prop_map(|(a, b)| Op::MGet(a, b)),
        1 => Just(Op::Incr),
        1 => (0u8..6).prop_map(Op::Append),
        4 => (0u8..8).prop_map(Op::Complete),
        1 => Just(Op::Crash),
    ];
    (0u8..3, op)
}

/// One client's model.
#[derive(Default)]
struct ClientModel {
    /// The acknowledged state of this client's keys.
    base: State,
    /// Writes sent but not acknowledged, in order, with their effects.
    pending: VecDeque<(u64, Vec<(Vec<u8>, Option<Vec<u8>>)>)>,
    /// Replies expected, in order: (op id, reply).
    expected: VecDeque<(u64, Reply)>,
    op_id_next: u64,
}

impl ClientModel {
    fn newest(&self) -> State {
        let mut state = self.base.clone();
        for (_, effects) in &self.pending {
            apply(&mut state, effects);
        }
        state
    }

    fn acknowledge(&mut self, op_id: u64) {
        while self.pending.front().is_some_and(|(id, _)| *id <= op_id) {
            let (_, effects) = self.pending.pop_front().expect("front exists");
            apply(&mut self.base, &effects);
        }
    }

    /// Every state a crash may leave: the acknowledged one plus each prefix of pending writes.
    fn possible_after_crash(&self) -> Vec<State> {
        let mut states = vec![self.base.clone()];
        let mut state = self.base.clone();
        for (_, effects) in &self.pending {
            apply(&mut state, effects);
            states.push(state.clone());
        }
        states
    }
}

fn apply(state: &mut State, effects: &[(Vec<u8>, Option<Vec<u8>>)]) {
    for (key, value) in effects {
        match value {
            Some(value) => state.insert(key.clone(), value.clone()),
            None => state.remove(key),
        };
    }
}

fn key(client: u8, index: u8) -> Vec<u8> {
    format!("c{client}-k{index}").into_bytes()
}

fn value(client: u8, op_id: u64, length: usize) -> Vec<u8> {
    let seed = format!("{client}:{op_id}:");
    seed.bytes().cycle().take(length).collect()
}

struct Run {
    harness: Harness,
    models: BTreeMap<u8, ClientModel>,
}

impl Run {
    fn send(&mut self, client: u8, op: &Op) {
        let model = self.models.entry(client).or_default();
        let op_id = model.op_id_next;
        model.op_id_next += 1;
        let newest = model.newest();
        let get = |index: u8| Reply::Bulk(newest.get(&key(client, index)).cloned());
        let (request, reply, effects) = match *op {
            Op::Set(index, length) => {
                let value = value(client, op_id, length);
                let request =
                    Request::Set { key: key(client, index), value: value.clone(), condition: SetCondition::Always };
                (request, Reply::ok(), vec![(key(client, index), Some(value))])
            }
            Op::Del(index) => {
                let existed = newest.contains_key(&key(client, index));
                let effects = if existed { vec![(key(client, index), None)] } else { vec![] };
                (Request::Del { keys: vec![key(client, index)] }, Reply::Integer(existed as i64), effects)
            }
            Op::MSet(a, b, length) => {
                let (value_a, value_b) = (value(client, op_id, length), value(client, op_id, length + 1));
                let pairs = vec![(key(client, a), value_a.clone()), (key(client, b), value_b.clone())];
                let effects = vec![(key(client, a), Some(value_a)), (key(client, b), Some(value_b))];
                (Request::MSet { pairs }, Reply::ok(), effects)
            }
            Op::Get(index) => (Request::Get { key: key(client, index) }, get(index), vec![]),
            Op::MGet(a, b) => {
                let request = Request::MGet { keys: vec![key(client, a), key(client, b)] };
                (request, Reply::Array(Some(vec![get(a), get(b)])), vec![])
            }
            Op::Incr => {
                let counter = key(client, 100);
                let old: i64 =
                    newest.get(&counter).map_or(0, |bytes| String::from_utf8_lossy(bytes).parse().expect("numeric"));
                let effects = vec![(counter.clone(), Some((old + 1).to_string().into_bytes()))];
                (Request::IncrBy { key: counter, delta: 1 }, Reply::Integer(old + 1), effects)
            }
            Op::Append(index) => {
                let suffix = value(client, op_id, 3);
                let mut joined = newest.get(&key(client, index)).cloned().unwrap_or_default();
                joined.extend_from_slice(&suffix);
                let reply = Reply::Integer(joined.len() as i64);
                (
                    Request::Append { key: key(client, index), value: suffix },
                    reply,
                    vec![(key(client, index), Some(joined))],
                )
            }
            Op::Complete(_) | Op::Crash => unreachable!("not a command"),
        };
        model.expected.push_back((op_id, reply));
        if request.is_write() {
            model.pending.push_back((op_id, effects));
        }
        self.harness.submit(u64::from(client), request);
    }

    fn check_replies(&mut self) {
        for (client, reply) in std::mem::take(&mut self.harness.replies) {
            let model = self.models.get_mut(&(client as u8)).expect("a client that sent");
            let (op_id, expected) = model.expected.pop_front().expect("a reply that was expected");
            assert_eq!(reply, expected, "client {client} op {op_id}");
            model.acknowledge(op_id);
        }
    }

    fn crash(&mut self) {
        self.harness.crash_and_reopen();
        assert!(self.harness.engine.is_ready(), "{:?}", self.harness.engine.open_error());
        let clients: Vec<u8> = self.models.keys().copied().collect();
        for client in clients {
            let actual = self.read_client_state(client);
            let model = self.models.get_mut(&client).expect("listed");
            let possible = model.possible_after_crash();
            assert!(
                possible.contains(&actual),
                "client {client}: recovered {actual:?} is none of {} possible states",
                possible.len()
            );
            model.base = actual;
            model.pending.clear();
            model.expected.clear();
        }
    }

    fn read_client_state(&mut self, client: u8) -> State {
        let mut state = State::new();
        for index in (0..6).chain([100]) {
            if let Reply::Bulk(Some(value)) = self.harness.call(999, Request::Get { key: key(client, index) }) {
                state.insert(key(client, index), value);
            }
        }
        state
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn engine_matches_the_model(ops in proptest::collection::vec(op(), 1..160), seed in 0u64..1000, cache in 0usize..3) {
        let mut config = support::small_config();
        config.cache_bytes_max = [0, 4096, 1 << 20][cache];
        config.queue_depth_max = 1 + (seed as usize % 8);
        let mut run = Run { harness: Harness::format(config, seed), models: BTreeMap::new() };
        for (client, op) in &ops {
            match op {
                Op::Complete(count) => {
                    for _ in 0..*count {
                        run.harness.complete_one();
                    }
                }
                Op::Crash => {
                    run.check_replies();
                    run.crash();
                }
                _ => run.send(*client, op),
            }
            run.check_replies();
        }
        run.harness.run_until_idle();
        run.check_replies();
        for model in run.models.values() {
            prop_assert!(model.expected.is_empty() && model.pending.is_empty());
        }
        run.crash();
    }
}
