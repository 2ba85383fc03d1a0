//! The benchmark's requests: which key, which operation, and what value a GET must return.

use quill_core::command::SetCondition;
use quill_core::Request;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOp {
    /// Random GETs of loaded keys.
    Get,
    /// Random durable SETs of loaded keys.
    Set,
    /// Half GETs, half SETs.
    Mixed,
}

impl BenchOp {
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Get => "get",
            BenchOp::Set => "set",
            BenchOp::Mixed => "mixed",
        }
    }
}

pub struct Workload {
    op: BenchOp,
    keys: u64,
    value_size: usize,
    random: ChaCha8Rng,
}

impl Workload {
    pub fn new(op: BenchOp, keys: u64, value_size: usize, seed: u64) -> Workload {
        Workload { op, keys, value_size, random: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// The load phase's SET of key number `index`.
    pub fn load_request(&self, index: u64) -> Request {
        Request::Set { key: key(index), value: self.value(index), condition: SetCondition::Always }
    }

    /// The next run-phase request and, for a GET, the value it must return.
    pub fn next_request(&mut self) -> (Request, Option<Vec<u8>>) {
        let index = self.random.next_u64() % self.keys;
        let is_get = match self.op {
            BenchOp::Get => true,
            BenchOp::Set => false,
            BenchOp::Mixed => self.random.next_u32() & 1 == 0,
        };
        if is_get {
            (Request::Get { key: key(index) }, Some(self.value(index)))
        } else {
            // A SET rewrites the load phase's value, so GETs can always check theirs exactly.
            (self.load_request(index), None)
        }
    }

    /// Key number `index`'s value: a pattern derived from the index, so a value read from the
    /// wrong record is noticed.
    fn value(&self, index: u64) -> Vec<u8> {
        let seed = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
        (0..self.value_size).map(|position| (seed as usize + position) as u8).collect()
    }
}

fn key(index: u64) -> Vec<u8> {
    format!("key:{index:012}").into_bytes()
}
