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
//!
//! The expiry keys (`x…`, expiring.rs) use the same model with time: a state is a value and
//! its expiry time, and a command's outcome depends on when, within its window, it ran.

use std::collections::{BTreeMap, BTreeSet};

use quill_core::command::{SetCondition, SetExpiry};
use quill_core::format::{EXPIRY_BYTES, KEY_BYTES_MAX, RECORD_HEADER_BYTES};
use quill_core::{Config, Reply, Request};
use rand::Rng;

use crate::runner::expiring::{self, Expected, Timed, Window};
use crate::runner::replies::ErrorMeaning;
use crate::runner::{Outstanding, Sim};

/// Most states one key may be in before the model gives up on it (a violation: the workload
/// keeps that far below, since each unknown outcome at most doubles the set).
const STATES_MAX: usize = 512;

/// A key's possible states.
pub type States = Vec<Timed>;

/// What the simulator knows of the value-domain keys.
#[derive(Default)]
pub(crate) struct DomainModel {
    /// The states each key may be in.
    pub states: BTreeMap<Vec<u8>, States>,
    /// Requests answered "not durable" since the last crash, by key, in order, with the
    /// window they ran in.
    pub unresolved: BTreeMap<Vec<u8>, Vec<(Request, Window)>>,
    /// FLUSHALLs sent and not answered (nor lost) yet.
    flushes_in_flight: u32,
    /// The tick the last FLUSHALL was answered or lost at: it may have run after any command
    /// sent before then.
    last_flush_end_tick: Option<u64>,
    /// The wall-clock time a FLUSHALL was last sent, answered or lost at.
    last_flush_unix_ms: Option<u64>,
    /// A FLUSHALL answered "not durable", or lost, since the last crash: the next crash may
    /// find it on disk, after any command of that time.
    flush_unresolved: bool,
    /// Keys whose state is unknown: a cut connection lost a command on them, which the engine
    /// still runs, at a moment (and in an order with the client's next commands) nobody sees.
    /// With the connections whose commands may still be queued in the engine. Such a key is
    /// not judged until a command sets its state outright once none of them can still run.
    pub unknown: BTreeMap<Vec<u8>, Vec<u64>>,
    /// Commands on unknown keys sent once none of the lost commands could still run: only such
    /// a command decides the key's state (one sent before could run before a lost command that
    /// was still queued, then ran after it; seed 7684).
    sent_after_drain: BTreeSet<u64>,
    /// The tick each key's states last changed at (a reply, a crash's lost commands).
    changed_tick: BTreeMap<Vec<u8>, u64>,
}

/// Whether the request, answered without an error, leaves the key in a state it alone decides.
fn decides_state(request: &Request, window: Window) -> Option<Timed> {
    match request {
        Request::Set { value, condition: SetCondition::Always, .. } => {
            Some(Timed { value: Some(value.clone()), expires: None })
        }
        Request::SetExpiring { condition: SetCondition::Always, expiry: SetExpiry::At(_), .. } => {
            let outcomes = expiring::expiry_outcomes(&Timed::ABSENT, request, window);
            outcomes.into_iter().next().map(|(_, state)| state)
        }
        Request::Del { .. } | Request::GetDel { .. } => Some(Timed::ABSENT),
        _ => None,
    }
}

/// The keys a client owns: three counters, and for client 0 the empty key.
fn owned_key(client: usize, pick: u32) -> Vec<u8> {
    match (client, pick) {
        (0, 3) => Vec::new(),
        _ => format!("n{client}.{}", pick % 3).into_bytes(),
    }
}

/// Whether `key` is a value-domain key (or an expiry key, judged the same way).
pub fn is_domain_key(key: &[u8]) -> bool {
    key.is_empty() || key[0] == b'n' || expiring::is_expiring_key(key)
}

/// The one key a value-domain request touches, if it is one (an EXEC of one expiry command
/// included).
pub fn domain_request_key(request: &Request) -> Option<&[u8]> {
    let key = match request {
        Request::Get { key }
        | Request::Set { key, .. }
        | Request::IncrBy { key, .. }
        | Request::GetSet { key, .. }
        | Request::GetDel { key }
        | Request::SetRange { key, .. }
        | Request::Append { key, .. }
        | Request::SetExpiring { key, .. }
        | Request::Expire { key, .. }
        | Request::Persist { key }
        | Request::GetEx { key, .. }
        | Request::IncrByFloat { key, .. }
        | Request::Ttl { key, .. } => key.as_slice(),
        Request::Del { keys } if keys.len() == 1 => keys[0].as_slice(),
        Request::Exec { commands } if commands.len() == 1 => {
            return domain_request_key(&commands[0]).filter(|key| expiring::is_expiring_key(key))
        }
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

/// INCRBYFLOAT increments: ordinary, huge (the result overflows to infinity), not floats.
const FLOATS: [&str; 10] = ["0.1", "-1.5", "1e3", "5", "3.0e-5", "1.7976931348623157e308", "1e4932", "abc", "", "nan"];

/// The limits every outcome depends on.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub value_bytes_max: usize,
    pub batch_payload_bytes_max: usize,
}

impl Limits {
    pub(crate) fn of(config: &Config) -> Limits {
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

/// The replies `request` may get in `state`, run within `window`, and the state after each.
pub(crate) fn outcomes(state: &Timed, request: &Request, window: Window, limits: &Limits) -> Vec<(Expected, Timed)> {
    if let Request::Exec { commands } = request {
        let inner = outcomes(state, &commands[0], window, limits);
        return inner.into_iter().map(|(expected, state)| (Expected::Array(Box::new(expected)), state)).collect();
    }
    let mut all = Vec::new();
    for view in expiring::views(state, window) {
        // A command that leaves the key as it saw it leaves the state as it was: an expired
        // key keeps its record and time, which a command answered "not durable" before it
        // expired may still build on at the next crash.
        let keep = |(expected, next): (Expected, Timed)| (expected, if next == view { state.clone() } else { next });
        if let Some(refusal) = limit_refusal(request, limits) {
            all.push((Expected::Exact(refusal), state.clone()));
            continue;
        }
        if expiring::is_expiry_request(request) {
            all.extend(expiring::expiry_outcomes(&view, request, window).into_iter().map(keep));
            continue;
        }
        let (reply, value) = outcome(&view.value, request, limits);
        // A value changed in place keeps its expiry time; a new value, or none, has none.
        let in_place = matches!(
            request,
            Request::Append { .. } | Request::SetRange { .. } | Request::IncrBy { .. } | Request::IncrByFloat { .. }
        );
        let applied = match request {
            Request::GetSet { condition: SetCondition::IfAbsent, .. } => view.value.is_none(),
            Request::GetSet { condition: SetCondition::IfPresent, .. } => view.value.is_some(),
            Request::Get { .. } => false,
            _ => !matches!(reply, Reply::Error(_)),
        };
        let expires = match (applied, in_place) {
            _ if value.is_none() => None,
            (false, _) | (true, true) => view.expires,
            (true, false) => None,
        };
        all.push(keep((Expected::Exact(reply), Timed { value, expires })));
    }
    all
}

/// SET with a time refuses a value over the limit, or a record over a batch, before anything.
fn limit_refusal(request: &Request, limits: &Limits) -> Option<Reply> {
    let Request::SetExpiring { key, value, .. } = request else { return None };
    if value.len() > limits.value_bytes_max {
        return Some(error(&format!("ERR value too large (the limit is {} bytes)", limits.value_bytes_max)));
    }
    let record_bytes = RECORD_HEADER_BYTES + EXPIRY_BYTES + key.len() + value.len();
    (record_bytes > limits.batch_payload_bytes_max)
        .then(|| error("ERR command too large: its records exceed one batch"))
}

/// The exact reply `request` gets in `state`, and the state after it.
pub(crate) fn outcome(state: &Option<Vec<u8>>, request: &Request, limits: &Limits) -> (Reply, Option<Vec<u8>>) {
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
        // Its arithmetic is the engine's own (C's long double, as Redis's): the differential test
        // holds it to redis-server; here what matters is that the result is stored and kept.
        Request::IncrByFloat { increment, .. } => {
            match quill_core::command::float::incr_by_float(state.as_deref(), increment) {
                Ok(text) if too_large(text.len()) => {
                    (error("ERR command too large: its records exceed one batch"), unchanged)
                }
                Ok(text) if text.len() > limits.value_bytes_max => {
                    (error(&format!("ERR value too large (the limit is {} bytes)", limits.value_bytes_max)), unchanged)
                }
                Ok(text) => (Reply::Bulk(Some(text.clone())), Some(text)),
                Err(reply) => (reply, unchanged),
            }
        }
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

fn merge(states: &mut States, more: impl IntoIterator<Item = Timed>) {
    for state in more {
        if !states.contains(&state) {
            states.push(state);
        }
    }
}

impl Sim {
    /// A command on domain key `key` is being sent: if the key is unknown and none of its lost
    /// commands can still run, the command's reply may decide its state.
    pub(crate) fn domain_command_sent(&mut self, key: &[u8], op_id: u64) {
        let engine = self.server.engine();
        let Some(connections) = self.domains.unknown.get_mut(key) else { return };
        connections.retain(|connection| engine.client_backlog(*connection) > 0);
        if connections.is_empty() {
            self.domains.sent_after_drain.insert(op_id);
        }
    }

    /// A value-domain request of `client` on a key it owns.
    pub(crate) fn next_domain_request(&mut self, client: usize) -> Request {
        let rng = &mut self.workload_rng;
        let limits = !self.knobs.network; // over a connection an oversized bulk closes it
        let mut key = owned_key(client, rng.gen_range(0..4));
        // Over a connection too, where the protocol lets it through (a bulk longer than the
        // largest value closes the connection): the engine refuses a long key, and a GET's
        // hot path must agree.
        let long_keys = limits || self.config.value_bytes_max > KEY_BYTES_MAX;
        if long_keys && client == 0 && rng.gen_range(0..20) == 0 {
            // A key exactly at the limit, or one byte over.
            key = b"n0.".to_vec();
            key.resize(KEY_BYTES_MAX + rng.gen_range(0..2), b'x');
        }
        match rng.gen_range(0..100) {
            0..=27 => Request::IncrBy { key, delta: DELTAS[rng.gen_range(0..DELTAS.len())] },
            28..=34 => {
                // Huge increments (printing a sum near the largest long double takes thousands of
                // digits, and the model computes it per state) only now and then.
                let pick = if rng.gen_range(0..8) == 0 { rng.gen_range(0..FLOATS.len()) } else { rng.gen_range(0..4) };
                let increment = FLOATS[pick].as_bytes().to_vec();
                Request::IncrByFloat { key, increment }
            }
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
        let window = Window { from: outstanding.sent_unix_ms, to: self.unix_now() };
        // Any reply may change what the model knows of the key (key-set reads judge by it).
        self.domains.changed_tick.insert(key.clone(), self.tick);
        if self.domains.unknown.contains_key(&key) {
            return self.on_unknown_domain_reply(key, outstanding, reply, window);
        }
        let states = self.domains.states.entry(key.clone()).or_insert_with(|| vec![Timed::ABSENT]).clone();
        let outcomes: Vec<(Expected, Timed)> =
            states.iter().flat_map(|state| outcomes(state, request, window, &limits)).collect();
        let mut next = States::new();
        merge(
            &mut next,
            outcomes.iter().filter(|(expected, _)| expected.matches(reply)).map(|(_, state)| state.clone()),
        );
        if !next.is_empty() {
            if self.flush_may_follow(outstanding) {
                merge(&mut next, [Timed::ABSENT]);
            }
            self.domains.states.insert(key, next);
            return;
        }
        let meaning = match reply {
            // The refused value counts among the live data: the model holds only applied states.
            Reply::Error(text) if text.starts_with("OOM disk full") => {
                let longest = states.iter().filter_map(|state| state.value.as_ref()).map(Vec::len).max().unwrap_or(0);
                let value_bytes = match request {
                    Request::Set { value, .. } | Request::GetSet { value, .. } | Request::SetExpiring { value, .. } => {
                        value.len()
                    }
                    Request::SetRange { offset, value, .. } => longest.max(*offset as usize + value.len()),
                    Request::Append { value, .. } => longest + value.len(),
                    _ => 20,
                };
                let record_bytes = (RECORD_HEADER_BYTES + EXPIRY_BYTES + key.len() + value_bytes) as u64;
                let explained = self.disk_full_explained(outstanding.invoked, responded, record_bytes);
                explained.then_some(ErrorMeaning::NotApplied)
            }
            Reply::Error(text) => self.classify_error(text, request, outstanding.invoked, responded),
            _ => None,
        };
        match meaning {
            // Not applied: refused, or its read of the current value failed.
            Some(ErrorMeaning::NotApplied | ErrorMeaning::ReadFault) => {}
            Some(ErrorMeaning::Unknown) => {
                self.domains.unresolved.entry(key).or_default().push((request.clone(), window));
            }
            None if matches!(reply, Reply::Error(text) if text.starts_with("OOM disk full")) => {
                let got = format!("{reply:?}; {}", self.fullness_report(outstanding.invoked, responded));
                let what = "a disk-full refusal while the live data fits (deleted space never came back)";
                self.checker.fail(what, &key, "the write accepted".into(), got);
            }
            None => {
                let expected: Vec<String> = outcomes.iter().map(|(reply, _)| format!("{reply:?}")).collect();
                let expected = format!("one of [{}] from states {states:?} in {window:?}", expected.join(", "));
                self.checker.fail(
                    "a value-domain reply no state of the key explains",
                    &key,
                    expected,
                    format!("{reply:?}"),
                );
            }
        }
    }

    /// A reply on a key whose state is unknown judges nothing; a command that decides the state,
    /// once no lost command can still run, makes it known again.
    fn on_unknown_domain_reply(&mut self, key: Vec<u8>, outstanding: &Outstanding, reply: &Reply, window: Window) {
        let request = &outstanding.request;
        let sent_after_drain = self.domains.sent_after_drain.remove(&outstanding.op_id);
        if !sent_after_drain || matches!(reply, Reply::Error(_)) {
            return;
        }
        if let Some(state) = decides_state(request, window) {
            self.domains.unknown.remove(&key);
            let mut states = vec![state];
            if self.flush_may_follow(outstanding) {
                merge(&mut states, [Timed::ABSENT]);
            }
            self.domains.states.insert(key, states);
        }
    }

    /// Whether an expiry key may have existed when a key-set read (`outstanding`: SCAN, KEYS,
    /// RANDOMKEY) ran. Judged only where the model knows the state then: no command on the key
    /// in flight or answered since the read was sent, and the key not unknown or unresolved.
    pub(crate) fn expiring_key_may_exist(&self, key: &[u8], outstanding: &Outstanding) -> bool {
        let changed_since = self.domains.changed_tick.get(key).is_some_and(|tick| *tick >= outstanding.sent_tick);
        if changed_since || self.domains.unknown.contains_key(key) || self.domains.unresolved.contains_key(key) {
            return true;
        }
        // A key no reply has judged yet starts absent.
        let states = self.domains.states.get(key).cloned().unwrap_or_else(|| vec![Timed::ABSENT]);
        // Commands on the key still in flight may have run before the read: a prefix of them, in
        // the order sent (one client owns the key).
        let now = self.unix_now();
        let limits = Limits::of(&self.config);
        let mut possible = states.clone();
        let mut frontier = states.clone();
        let in_flight = self.clients.iter().flat_map(|client| client.outstanding.iter());
        for other in in_flight.filter(|other| domain_request_key(&other.request) == Some(key)) {
            let window = Window { from: other.sent_unix_ms, to: now };
            let mut next = States::new();
            merge(
                &mut next,
                frontier
                    .iter()
                    .flat_map(|state| outcomes(state, &other.request, window, &limits))
                    .map(|(_, state)| state),
            );
            frontier = next;
            merge(&mut possible, frontier.iter().cloned());
        }
        let window = Window { from: outstanding.sent_unix_ms, to: now };
        possible.iter().any(|state| expiring::views(state, window).iter().any(|view| view.value.is_some()))
    }

    /// Whether a FLUSHALL in flight since the command was sent may have run after it.
    fn flush_may_follow(&self, outstanding: &Outstanding) -> bool {
        self.domains.flushes_in_flight > 0
            || self.domains.last_flush_end_tick.is_some_and(|tick| tick >= outstanding.sent_tick)
    }

    /// Requests on `key` whose replies will never come, in the order sent: a prefix of them took
    /// effect (batches become durable in order).
    fn domain_maybe_applied(&mut self, key: &[u8], requests: &[(Request, Window)]) {
        self.domains.changed_tick.insert(key.to_vec(), self.tick);
        let limits = Limits::of(&self.config);
        let flushes_in_flight = self.domains.flushes_in_flight;
        let last_flush_unix_ms = self.domains.last_flush_unix_ms;
        let states = self.domains.states.entry(key.to_vec()).or_insert_with(|| vec![Timed::ABSENT]);
        let mut frontier = states.clone();
        // A FLUSHALL in flight meanwhile may have run between any two of them.
        let first_sent = requests.first().map_or(u64::MAX, |(_, window)| window.from);
        let flushed = flushes_in_flight > 0 || last_flush_unix_ms.is_some_and(|unix_ms| unix_ms >= first_sent);
        for (request, window) in requests {
            if flushed {
                merge(&mut frontier, [Timed::ABSENT]);
            }
            let mut next = States::new();
            merge(
                &mut next,
                frontier.iter().flat_map(|state| outcomes(state, request, *window, &limits)).map(|(_, state)| state),
            );
            frontier = next;
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
    pub(crate) fn domain_requests_lost(&mut self, outstanding: &[Outstanding], crash: bool, connection: Option<u64>) {
        if crash {
            // The engine and its queues are gone: no lost command can run any more.
            self.domains.unknown.values_mut().for_each(Vec::clear);
            self.domains.sent_after_drain.clear();
        } else {
            for lost in outstanding {
                let Some(key) = domain_request_key(&lost.request) else { continue };
                let connections = self.domains.unknown.entry(key.to_vec()).or_default();
                connections.extend(connection);
            }
        }
        let mut by_key: BTreeMap<Vec<u8>, Vec<(Request, Window)>> =
            if crash { std::mem::take(&mut self.domains.unresolved) } else { BTreeMap::new() };
        // A crash ends the engine: what ran, ran before now. A cut connection's commands still
        // run, at some later moment.
        let to = if crash { self.unix_now() } else { u64::MAX / 4 };
        for _ in outstanding.iter().filter(|lost| matches!(lost.request, Request::FlushAll)) {
            self.domain_flush_ended(true);
        }
        for lost in outstanding {
            if let Some(key) = domain_request_key(&lost.request) {
                let window = Window { from: lost.sent_unix_ms, to };
                by_key.entry(key.to_vec()).or_default().push((lost.request.clone(), window));
            }
        }
        for (key, requests) in by_key {
            if !self.domains.unknown.contains_key(&key) {
                self.domain_maybe_applied(&key, &requests);
            }
        }
        if crash && std::mem::take(&mut self.domains.flush_unresolved) {
            self.domain_flush_possible();
        }
    }

    /// A FLUSHALL was sent: from now on, and until a while after it ends, every value-domain
    /// key may be absent.
    pub(crate) fn domain_flush_sent(&mut self) {
        self.domains.flushes_in_flight += 1;
        self.domains.last_flush_unix_ms = Some(self.unix_now());
        self.domain_flush_possible();
    }

    /// A FLUSHALL was answered or lost (`unresolved`: its effect waits for the next crash).
    pub(crate) fn domain_flush_ended(&mut self, unresolved: bool) {
        self.domains.flush_unresolved |= unresolved;
        self.domains.flushes_in_flight = self.domains.flushes_in_flight.saturating_sub(1);
        self.domains.last_flush_end_tick = Some(self.tick);
        self.domains.last_flush_unix_ms = Some(self.unix_now());
        self.domain_flush_possible();
    }

    fn domain_flush_possible(&mut self) {
        for states in self.domains.states.values_mut() {
            merge(states, [Timed::ABSENT]);
        }
    }

    /// The largest bytes the value-domain keys may hold (for the disk-full rule).
    /// Index entries the value-domain keys may hold: every one ever written (an upper bound).
    /// (Transfer keys included.)
    pub(crate) fn domain_index_bytes_upper(&self) -> u64 {
        let domains: u64 = self.domains.states.keys().map(|key| quill_core::engine::index_entry_bytes(key.len())).sum();
        let shared: u64 = self
            .checker
            .keys
            .keys()
            .filter(|key| crate::runner::isolation::is_isolation_key(key))
            .map(|key| quill_core::engine::index_entry_bytes(key.len()))
            .sum();
        domains + self.transfer_bytes_upper().1 + shared
    }

    /// (Transfer keys included.)
    pub(crate) fn domain_live_bytes_upper(&self) -> u64 {
        let domains: u64 = self
            .domains
            .states
            .iter()
            .filter_map(|(key, states)| {
                let value_bytes = if self.domains.unknown.contains_key(key) {
                    self.config.value_bytes_max
                } else {
                    states.iter().filter_map(|state| state.value.as_ref().map(Vec::len)).max()?
                };
                let expiry_bytes = if states.iter().any(|state| state.expires.is_some()) { EXPIRY_BYTES } else { 0 };
                Some((RECORD_HEADER_BYTES + expiry_bytes + key.len() + value_bytes) as u64)
            })
            .sum();
        domains + self.transfer_bytes_upper().0 + self.isolation_live_bytes_upper()
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
