//! Simulated clients' operations: three key families, so each command has clean semantics for
//! the checker. `k…` keys are registers (SET, GET, DEL, MSET, MGET, EXISTS, STRLEN, FLUSHALL),
//! `c…` keys are counters (INCRBY, GET), `a…` keys take APPEND (APPEND, GET, STRLEN).

use crate::knobs::op;
use quill_core::command::SetCondition;
use quill_core::Request;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::knobs::Knobs;

/// Every appended token is this long: `{id:07x};`.
pub const APPEND_TOKEN_BYTES: usize = 8;

pub fn register_key(index: u64) -> Vec<u8> {
    format!("k{index}").into_bytes()
}

pub fn counter_key(index: u64) -> Vec<u8> {
    format!("c{index}").into_bytes()
}

pub fn append_key(index: u64) -> Vec<u8> {
    format!("a{index}").into_bytes()
}

pub fn append_token(id: u64) -> Vec<u8> {
    format!("{:07x};", id & 0x0fff_ffff).into_bytes()
}

fn key_index(rng: &mut ChaCha8Rng, knobs: &Knobs) -> u64 {
    let uniform: f64 = rng.gen_range(0.0..1.0);
    let skewed = uniform.powi(knobs.key_skew as i32 + 1);
    ((skewed * knobs.keys as f64) as u64).min(knobs.keys - 1)
}

fn value(rng: &mut ChaCha8Rng, knobs: &Knobs, client: usize, op_id: u64) -> Vec<u8> {
    let length = if knobs.family == crate::knobs::Family::RingEdge {
        knobs.fill_value_bytes // one size: stale records of earlier laps match live ones
    } else if rng.gen_range(0..1_000_000) < knobs.value_large_ppm {
        rng.gen_range(0..=knobs.value_bytes_large_max)
    } else {
        rng.gen_range(0..=knobs.value_bytes_small_max)
    };
    let stamp = format!("{client}.{op_id}.");
    let filler = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes: Vec<u8> = stamp.into_bytes();
    bytes.extend(filler.iter().cycle().take(length.saturating_sub(bytes.len())));
    bytes.truncate(length);
    bytes
}

/// Draws the next request of `client`; `op_id` is unique in the run.
pub fn next_request(rng: &mut ChaCha8Rng, knobs: &Knobs, client: usize, op_id: u64) -> Request {
    let total: u32 = knobs.mix.iter().sum();
    let mut pick = rng.gen_range(0..total.max(1));
    let mut kind = 0;
    for (index, weight) in knobs.mix.iter().enumerate() {
        if pick < *weight {
            kind = index;
            break;
        }
        pick -= weight;
    }
    let keys = |rng: &mut ChaCha8Rng| -> Vec<Vec<u8>> {
        let count = rng.gen_range(1..=4);
        let mut keys: Vec<Vec<u8>> = (0..count).map(|_| register_key(key_index(rng, knobs))).collect();
        keys.dedup();
        keys
    };
    match kind {
        op::SET => Request::Set {
            key: register_key(key_index(rng, knobs)),
            value: value(rng, knobs, client, op_id),
            condition: match rng.gen_range(0..10) {
                0 => SetCondition::IfAbsent,
                1 => SetCondition::IfPresent,
                _ => SetCondition::Always,
            },
        },
        op::GET => match rng.gen_range(0..33) {
            0 => Request::DbSize,
            1 => Request::Ping { message: None },
            2 => Request::Ping { message: Some(b"hello".to_vec()) },
            number if number % 3 == 0 => Request::Get { key: counter_key(key_index(rng, knobs)) },
            number if number % 3 == 1 => Request::Get { key: append_key(key_index(rng, knobs)) },
            _ => Request::Get { key: register_key(key_index(rng, knobs)) },
        },
        op::DEL => Request::Del { keys: keys(rng) },
        op::MSET => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for key in keys(rng) {
                if !pairs.iter().any(|(existing, _)| *existing == key) {
                    pairs.push((key, value(rng, knobs, client, op_id)));
                }
            }
            Request::MSet { pairs }
        }
        op::MGET => Request::MGet { keys: keys(rng) },
        op::EXISTS => Request::Exists { keys: keys(rng) },
        op::STRLEN => Request::StrLen { key: register_key(key_index(rng, knobs)) },
        op::INCR => Request::IncrBy { key: counter_key(key_index(rng, knobs)), delta: rng.gen_range(1..=5) },
        op::APPEND => Request::Append { key: append_key(key_index(rng, knobs)), value: append_token(op_id) },
        _ => Request::FlushAll,
    }
}
