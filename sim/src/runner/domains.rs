//! Value domains: counters at the edges of `i64`, INCRBY on values that are not integers, empty
//! keys and values, keys and values exactly at their limits and one byte over.
//!
//! Each such key (`n…`, and the empty key) belongs to one client, which sends its commands in
//! order and sees them answered in order, so its state is a sequence of exact outcomes rather
//! than the register model's intervals. The checker keeps the set of states the key may be in:
//! a reply narrows it to the states that give exactly that reply (the error texts included).
//! An operation answered "not durable" did not take effect for the engine that answered (it
//! turned read-only and serves durable data only) but may have reached the disk: it waits,
//! unresolved, for the next crash. At a crash the unresolved operations and those still in
//! flight took effect as a prefix, in the order sent (batches become durable in order), and the
//! set grows by every state such a prefix makes. Every reply no state explains, or an error no
//! injected fault explains, is a violation.

use std::collections::BTreeMap;

use quill_core::command::SetCondition;
use quill_core::format::{KEY_BYTES_MAX, RECORD_HEADER_BYTES};
use quill_core::{Config, Reply, Request};
use rand::Rng;

use crate::runner::replies::ErrorMeaning;
use crate::runner::{Outstanding, Sim};

/// Most states one key may be in before the model gives up on it (a violation: the workload
/// keeps that far below, since each unknown outcome at most doubles the set).
const STATES_MAX: usize = 512;

/// A key's possible values (`None`: absent).
pub type States = Vec<Option<Vec<u8>>>;

/// What the simulator knows of the value-domain keys.
#[derive(Default)]
pub(crate) struct DomainModel {
    /// The states each key may be in.
    pub states: BTreeMap<Vec<u8>, States>,
    /// Requests answered "not durable" since the last crash, by key, in order.
    pub unresolved: BTreeMap<Vec<u8>, Vec<Request>>,
}

/// The keys a client owns: three counters, and for client 0 the empty key.
fn owned_key(client: usize, pick: u32) -> Vec<u8> {
    match (client, pick) {
        (0, 3) => Vec::new(),
        _ => format!("n{client}.{}", pick % 3).into_bytes(),
    }
}

/// Whether `key` is a value-domain key.
pub fn is_domain_key(key: &[u8]) -> bool {
    key.is_empty() || key[0] == b'n'
}

/// The one key a value-domain request touches, if it is one.
pub fn domain_request_key(request: &Request) -> Option<&[u8]> {
    let key = match request {
        Request::Get { key }
        | Request::Set { key, .. }
        | Request::IncrBy { key, .. }
        | Request::GetSet { key, .. }
        | Request::GetDel { key }
        | Request::SetRange { key, .. }
        | Request::Append { key, .. } => key.as_slice(),
        Request::Del { keys } if keys.len() == 1 => keys[0].as_slice(),
        _ => return None,
    };
    is_domain_key(key).then_some(key)
}

const DELTAS: [i64; 9] = [1, -1, 5, 1 << 62, -(1 << 62), i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1];
const TEXTS: [&str; 14] = [
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "-9223372036854775807",
    "9223372036854775808",
    "0",
    "-1",
    "abc",
    "",
    "007",
    "-0",
    " 1",
    "+1",
    "12345678901234567890",
];

/// The limits every outcome depends on.
struct Limits {
    value_bytes_max: usize,
    batch_payload_bytes_max: usize,
}

impl Limits {
    fn of(config: &Config) -> Limits {
        Limits {
            value_bytes_max: config.value_bytes_max,
            batch_payload_bytes_max: Config::batch_payload_bytes_max(config.batch_blocks_max),
        }
    }
}

/// An integer as Redis reads one: optional `-`, digits, no leading zeros, no `-0`, fits `i64`.
fn redis_integer(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
        && !(digits == b"0" && digits.len() < bytes.len());
    canonical.then(|| std::str::from_utf8(bytes).ok()?.parse().ok()).flatten()
}

fn error(text: &str) -> Reply {
    Reply::Error(text.to_string())
}

/// The exact reply `request` gets in `state`, and the state after it.
fn outcome(state: &Option<Vec<u8>>, request: &Request, limits: &Limits) -> (Reply, Option<Vec<u8>>) {
    let unchanged = state.clone();
    let key = domain_request_key(request).unwrap_or_default();
    if key.len() > KEY_BYTES_MAX {
        return (error(&format!("ERR key too long (the limit is {KEY_BYTES_MAX} bytes)")), unchanged);
    }
    let too_large = |value_bytes: usize| RECORD_HEADER_BYTES + key.len() + value_bytes > limits.batch_payload_bytes_max;
    match request {
        Request::Get { .. } => (Reply::Bulk(state.clone()), unchanged),
        Request::Del { .. } => (Reply::Integer(i64::from(state.is_some())), None),
        Request::Set { value, .. } if value.len() > limits.value_bytes_max => {
            (error(&format!("ERR value too large (the limit is {} bytes)", limits.value_bytes_max)), unchanged)
        }
        Request::Set { value, .. } if too_large(value.len()) => {
            (error("ERR command too large: its records exceed one batch"), unchanged)
        }
        Request::Set { value, .. } => (Reply::ok(), Some(value.clone())),
        Request::GetSet { value, .. } if value.len() > limits.value_bytes_max => {
            (error(&format!("ERR value too large (the limit is {} bytes)", limits.value_bytes_max)), unchanged)
        }
        Request::GetSet { value, condition, .. } => {
            let applies = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => state.is_none(),
                SetCondition::IfPresent => state.is_some(),
            };
            if !applies {
                return (Reply::Bulk(unchanged.clone()), unchanged);
            }
            if too_large(value.len()) {
                return (error("ERR command too large: its records exceed one batch"), unchanged);
            }
            (Reply::Bulk(unchanged), Some(value.clone()))
        }
        Request::GetDel { .. } => (Reply::Bulk(unchanged), None),
        Request::Append { value, .. } => {
            let old = state.as_deref().unwrap_or_default();
            let length = old.len() + value.len();
            if value.len() > limits.value_bytes_max || length > limits.value_bytes_max {
                return (
                    error(&format!("ERR value too large (the limit is {} bytes)", limits.value_bytes_max)),
                    unchanged,
                );
            }
            if too_large(length) {
                return (error("ERR command too large: its records exceed one batch"), unchanged);
            }
            (Reply::Integer(length as i64), Some([old, value].concat()))
        }
        Request::SetRange { offset, value, .. } => set_range_outcome(state, *offset, value, limits, too_large),
        Request::IncrBy { delta, .. } => {
            let current = match state {
                None => Some(0),
                Some(bytes) => redis_integer(bytes),
            };
            let Some(current) = current else {
                return (error("ERR value is not an integer or out of range"), unchanged);
            };
            let Some(new) = current.checked_add(*delta) else {
                return (error("ERR increment or decrement would overflow"), unchanged);
            };
            let text = new.to_string().into_bytes();
            if too_large(text.len()) {
                return (error("ERR command too large: its records exceed one batch"), unchanged);
            }
            (Reply::Integer(new), Some(text))
        }
        _ => unreachable!("only value-domain requests"),
    }
}

/// SETRANGE's reply and state, checked in the order Redis checks (then the engine's limits).
fn set_range_outcome(
    state: &Option<Vec<u8>>,
    offset: u64,
    value: &[u8],
    limits: &Limits,
    too_large: impl Fn(usize) -> bool,
) -> (Reply, Option<Vec<u8>>) {
    let unchanged = state.clone();
    let value_too_large = || error(&format!("ERR value too large (the limit is {} bytes)", limits.value_bytes_max));
    if value.len() > limits.value_bytes_max {
        return (value_too_large(), unchanged);
    }
    let old = state.as_deref().unwrap_or_default();
    if value.is_empty() {
        return (Reply::Integer(old.len() as i64), unchanged);
    }
    let end = offset + value.len() as u64;
    if end > 512 * 1024 * 1024 {
        return (error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"), unchanged);
    }
    let length = old.len().max(end as usize);
    if length > limits.value_bytes_max {
        return (value_too_large(), unchanged);
    }
    if too_large(length) {
        return (error("ERR command too large: its records exceed one batch"), unchanged);
    }
    let mut new = old.to_vec();
    new.resize(length, 0);
    new[offset as usize..end as usize].copy_from_slice(value);
    (Reply::Integer(length as i64), Some(new))
}

fn merge(states: &mut States, more: impl IntoIterator<Item = Option<Vec<u8>>>) {
    for state in more {
        if !states.contains(&state) {
            states.push(state);
        }
    }
}

impl Sim {
    /// A value-domain request of `client` on a key it owns.
    pub(crate) fn next_domain_request(&mut self, client: usize) -> Request {
        let rng = &mut self.workload_rng;
        let limits = !self.knobs.network; // over a connection an oversized bulk closes it
        let mut key = owned_key(client, rng.gen_range(0..4));
        if limits && client == 0 && rng.gen_range(0..20) == 0 {
            // A key exactly at the limit, or one byte over.
            key = b"n0.".to_vec();
            key.resize(KEY_BYTES_MAX + rng.gen_range(0..2), b'x');
        }
        match rng.gen_range(0..100) {
            0..=34 => Request::IncrBy { key, delta: DELTAS[rng.gen_range(0..DELTAS.len())] },
            35..=59 => {
                let value = TEXTS[rng.gen_range(0..TEXTS.len())].as_bytes().to_vec();
                Request::Set { key, value, condition: SetCondition::Always }
            }
            60..=66 if limits => {
                let value = vec![b'7'; self.config.value_bytes_max + rng.gen_range(0..2)];
                Request::Set { key, value, condition: SetCondition::Always }
            }
            67..=94 => Request::Get { key },
            _ => Request::Del { keys: vec![key] },
        }
    }

    /// Judges the reply to a value-domain request and narrows (or widens) its key's states.
    pub(crate) fn on_domain_reply(&mut self, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        let request = &outstanding.request;
        let key = domain_request_key(request).expect("a value-domain request").to_vec();
        let limits = Limits::of(&self.config);
        let states = self.domains.states.entry(key.clone()).or_insert_with(|| vec![None]).clone();
        let outcomes: Vec<(Reply, Option<Vec<u8>>)> =
            states.iter().map(|state| outcome(state, request, &limits)).collect();
        let mut next = States::new();
        merge(&mut next, outcomes.iter().filter(|(expected, _)| expected == reply).map(|(_, state)| state.clone()));
        if !next.is_empty() {
            self.domains.states.insert(key, next);
            return;
        }
        let meaning = match reply {
            // The refused value counts among the live data: the model holds only applied states.
            Reply::Error(text) if text.starts_with("OOM disk full") => {
                let longest = states.iter().flatten().map(Vec::len).max().unwrap_or(0);
                let value_bytes = match request {
                    Request::Set { value, .. } | Request::GetSet { value, .. } => value.len(),
                    Request::SetRange { offset, value, .. } => longest.max(*offset as usize + value.len()),
                    Request::Append { value, .. } => longest + value.len(),
                    _ => 20,
                };
                let record_bytes = (RECORD_HEADER_BYTES + key.len() + value_bytes) as u64;
                let explained = self.disk_full_explained(outstanding.invoked, responded, record_bytes);
                explained.then_some(ErrorMeaning::NotApplied)
            }
            Reply::Error(text) => self.classify_error(text, request, outstanding.invoked, responded),
            _ => None,
        };
        match meaning {
            // Not applied: refused, or its read of the current value failed.
            Some(ErrorMeaning::NotApplied | ErrorMeaning::ReadFault) => {}
            Some(ErrorMeaning::Unknown) => self.domains.unresolved.entry(key).or_default().push(request.clone()),
            None if matches!(reply, Reply::Error(text) if text.starts_with("OOM disk full")) => {
                let got = format!("{reply:?}; {}", self.fullness_report(outstanding.invoked, responded));
                let what = "a disk-full refusal while the live data fits (deleted space never came back)";
                self.checker.fail(what, &key, "the write accepted".into(), got);
            }
            None => {
                let expected: Vec<String> = outcomes.iter().map(|(reply, _)| format!("{reply:?}")).collect();
                let expected = format!("one of [{}]", expected.join(", "));
                self.checker.fail(
                    "a value-domain reply no state of the key explains",
                    &key,
                    expected,
                    format!("{reply:?}"),
                );
            }
        }
    }

    /// Requests on `key` whose replies will never come, in the order sent: a prefix of them took
    /// effect (batches become durable in order).
    fn domain_maybe_applied(&mut self, key: &[u8], requests: &[Request]) {
        let limits = Limits::of(&self.config);
        let states = self.domains.states.entry(key.to_vec()).or_insert_with(|| vec![None]);
        let mut frontier = states.clone();
        for request in requests {
            frontier = frontier.iter().map(|state| outcome(state, request, &limits).1).collect();
            merge(states, frontier.iter().cloned());
        }
        if states.len() > STATES_MAX {
            let got = format!("{} states", states.len());
            self.checker.fail("a value-domain key's model grew past its bound", key, format!("{STATES_MAX}"), got);
        }
    }

    /// A crash (`crash`) or a cut connection drops `outstanding` unanswered: each key's lost
    /// requests may have taken effect, as a prefix, after (at a crash) those answered "not
    /// durable" since the last one.
    pub(crate) fn domain_requests_lost(&mut self, outstanding: &[Outstanding], crash: bool) {
        let mut by_key: BTreeMap<Vec<u8>, Vec<Request>> =
            if crash { std::mem::take(&mut self.domains.unresolved) } else { BTreeMap::new() };
        for lost in outstanding {
            if let Some(key) = domain_request_key(&lost.request) {
                by_key.entry(key.to_vec()).or_default().push(lost.request.clone());
            }
        }
        for (key, requests) in by_key {
            self.domain_maybe_applied(&key, &requests);
        }
    }

    /// The largest bytes the value-domain keys may hold (for the disk-full rule).
    /// Index entries the value-domain keys may hold: every one ever written (an upper bound).
    /// (Transfer keys included.)
    pub(crate) fn domain_index_bytes_upper(&self) -> u64 {
        let domains: u64 = self.domains.states.keys().map(|key| quill_core::engine::index_entry_bytes(key.len())).sum();
        domains + self.transfer_bytes_upper().1
    }

    /// (Transfer keys included.)
    pub(crate) fn domain_live_bytes_upper(&self) -> u64 {
        let domains: u64 = self
            .domains
            .states
            .iter()
            .filter_map(|(key, states)| {
                let value_bytes = states.iter().filter_map(|state| state.as_ref().map(Vec::len)).max()?;
                Some((RECORD_HEADER_BYTES + key.len() + value_bytes) as u64)
            })
            .sum();
        domains + self.transfer_bytes_upper().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_as_redis_reads_them() {
        assert_eq!(redis_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(redis_integer(b"-9223372036854775808"), Some(i64::MIN));
        for text in ["9223372036854775808", "", "-", "007", "-0", " 1", "+1", "1a", "abc"] {
            assert_eq!(redis_integer(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(redis_integer(b"0"), Some(0));
        assert_eq!(redis_integer(b"-12"), Some(-12));
    }

    #[test]
    fn counters_overflow_and_refuse_non_integers_exactly() {
        let limits = Limits { value_bytes_max: 100, batch_payload_bytes_max: 4000 };
        let incr = |delta| Request::IncrBy { key: b"n0.0".to_vec(), delta };
        let at_max = Some(b"9223372036854775807".to_vec());
        assert_eq!(outcome(&at_max, &incr(1), &limits).0, error("ERR increment or decrement would overflow"));
        assert_eq!(outcome(&at_max, &incr(-1), &limits).0, Reply::Integer(i64::MAX - 1));
        assert_eq!(outcome(&None, &incr(i64::MIN), &limits).0, Reply::Integer(i64::MIN));
        let text = Some(b"abc".to_vec());
        assert_eq!(outcome(&text, &incr(1), &limits).0, error("ERR value is not an integer or out of range"));
        let set =
            |length| Request::Set { key: b"n0.0".to_vec(), value: vec![b'7'; length], condition: SetCondition::Always };
        assert_eq!(outcome(&None, &set(100), &limits).0, Reply::ok());
        assert_eq!(outcome(&None, &set(101), &limits).0, error("ERR value too large (the limit is 100 bytes)"));
    }
}
