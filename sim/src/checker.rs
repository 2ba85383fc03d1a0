//! The checker: a model of every key's history. Times are logical (one counter for every
//! invocation and response), so "before" is exact.
//!
//! A read may return the value of a write that began before the read ended and that no other
//! write had already superseded when the read began (superseded: another write began after it
//! completed and itself completed before the read began). A write with no reply (in flight at a
//! crash, or failed as "not durable") is indeterminate: it may take effect, or never; once a
//! read observes it, it counts as completed at that read.

use std::collections::BTreeMap;

use crate::trace::digest;
use crate::workload::APPEND_TOKEN_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Acknowledged,
    /// Failed with an error that means it was not applied.
    Failed,
    /// No reply, or an error that leaves it unknown whether it was applied.
    Indeterminate,
}

/// A value, by hash and length (enough to tell values apart without storing them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueId {
    pub hash: u64,
    pub length: usize,
}

impl ValueId {
    pub fn of(bytes: &[u8]) -> ValueId {
        ValueId { hash: digest(bytes), length: bytes.len() }
    }
}

#[derive(Clone, Debug)]
pub struct Write {
    pub op_id: u64,
    /// `None`: the key was deleted.
    pub value: Option<ValueId>,
    /// For counters, the increment; for appends, the token id.
    pub amount: i64,
    pub invoked: u64,
    pub completed: Option<u64>,
    pub status: Status,
    /// A read returned this write's value before its reply (or while it had none): the write
    /// was revealed, so it may no longer turn out not to have happened.
    pub observed: bool,
}

impl Write {
    fn counts(&self) -> bool {
        self.status != Status::Failed
    }
}

/// What went wrong, with enough context to debug it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Violation {
    pub what: String,
    pub key: String,
    pub expected: String,
    pub got: String,
    pub history: Vec<String>,
}

#[derive(Default)]
pub struct History {
    pub writes: Vec<Write>,
}

/// A register's writes together with every FLUSHALL (a write of nil to every key, including
/// keys first written after it began).
fn with_flushes<'a>(writes: &'a [Write], flushes: &'a [Write]) -> impl Iterator<Item = &'a Write> + Clone {
    writes.iter().chain(flushes.iter())
}

/// The writes a read over `invoked..responded` may return.
fn allowed<'a>(writes: &'a [Write], flushes: &'a [Write], invoked: u64, responded: u64) -> Vec<&'a Write> {
    let bar = supersede_bar(writes, flushes, invoked);
    with_flushes(writes, flushes)
        .filter(|write| write.counts() && write.invoked < responded && !superseded_below(write, bar))
        .collect()
}

/// The latest start among writes that finished before `read_invoked`. A write is superseded for
/// such a read exactly when it completed before that start: another write then began after it
/// completed and finished before the read began. One pass instead of comparing every pair.
fn supersede_bar(writes: &[Write], flushes: &[Write], read_invoked: u64) -> Option<u64> {
    with_flushes(writes, flushes)
        .filter(|other| other.counts() && other.completed.is_some_and(|done| done < read_invoked))
        .map(|other| other.invoked)
        .max()
}

fn superseded_below(write: &Write, bar: Option<u64>) -> bool {
    matches!((write.completed, bar), (Some(completed), Some(bar)) if completed < bar)
}

/// Whether the initial state (absent) is still allowed for a read beginning at `invoked`.
fn initial_allowed(writes: &[Write], flushes: &[Write], invoked: u64) -> bool {
    !with_flushes(writes, flushes).any(|write| write.counts() && write.completed.is_some_and(|done| done < invoked))
}

impl History {
    /// Whether a write invoked before `crash_tick` is still undecided.
    pub fn has_undecided(&self, crash_tick: u64) -> bool {
        self.writes.iter().any(|write| write.status == Status::Indeterminate && write.invoked < crash_tick)
    }

    /// Drops writes that no read beginning at or after `horizon` may return.
    fn prune(&mut self, flushes: &[Write], horizon: u64) {
        if self.writes.len() < 16 {
            return;
        }
        let bar = supersede_bar(&self.writes, flushes, horizon);
        self.writes.retain(|write| !superseded_below(write, bar));
    }

    pub fn describe(&self) -> Vec<String> {
        let start = self.writes.len().saturating_sub(12);
        self.writes[start..]
            .iter()
            .map(|write| {
                format!(
                    "op {} value {} amount {} invoked {} completed {:?} {:?}",
                    write.op_id,
                    describe_value(write.value),
                    write.amount,
                    write.invoked,
                    write.completed,
                    write.status
                )
            })
            .collect()
    }
}

fn finish_write(writes: &mut [Write], op_id: u64, status: Status, completed: u64) {
    if let Some(write) = writes.iter_mut().rev().find(|write| write.op_id == op_id) {
        write.status = status;
        if status == Status::Acknowledged {
            write.completed = Some(completed);
        }
    }
}

pub fn describe_value(value: Option<ValueId>) -> String {
    match value {
        None => "nil".to_string(),
        Some(value) => format!("#{:016x}/{}B", value.hash, value.length),
    }
}

/// The key families the workload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Register,
    Counter,
    Append,
    /// Value-domain keys (`n…` and the empty key), judged by their owner's exact model.
    Domain,
    /// Transaction keys (`t…`), judged by their pair's sum (transfers.rs).
    Transfer,
    /// Keys many clients share (`s…`, `g…`, `l…`), judged at the end by the linearizability
    /// and isolation checkers (runner/isolation.rs).
    Shared,
}

pub fn family(key: &[u8]) -> Option<Family> {
    match key.first() {
        Some(b'k') => Some(Family::Register),
        Some(b'c') => Some(Family::Counter),
        Some(b'a') => Some(Family::Append),
        Some(b'n' | b'x') | None => Some(Family::Domain),
        Some(b't') => Some(Family::Transfer),
        Some(b's' | b'g' | b'l') => Some(Family::Shared),
        _ => None,
    }
}

#[derive(Default)]
pub struct Checker {
    pub keys: BTreeMap<Vec<u8>, History>,
    pub clock: u64,
    pub violation: Option<Violation>,
    /// Every FLUSHALL, as a write of nil to all registers.
    pub flushes: Vec<Write>,
    /// Reads in flight, by invocation time (a multiset), to know how far history may be pruned.
    reads_in_flight: BTreeMap<u64, u32>,
    pub reads_checked: u64,
    /// Reads that returned a write's value before that write's reply came: each one a chance
    /// to aim a crash at a write that must already be durable (runner, `aim_after_reveal`).
    pub reveals_before_reply: u64,
}

impl Checker {
    pub fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub fn fail(&mut self, what: impl Into<String>, key: &[u8], expected: String, got: String) {
        if self.violation.is_some() {
            return;
        }
        let history = self.keys.get(key).map(History::describe).unwrap_or_default();
        let key = String::from_utf8_lossy(key).into_owned();
        self.violation = Some(Violation { what: what.into(), key, expected, got, history });
    }

    pub fn begin_read(&mut self, invoked: u64) {
        *self.reads_in_flight.entry(invoked).or_default() += 1;
    }

    pub fn end_read(&mut self, invoked: u64) {
        if let Some(count) = self.reads_in_flight.get_mut(&invoked) {
            *count -= 1;
            if *count == 0 {
                self.reads_in_flight.remove(&invoked);
            }
        }
    }

    pub fn begin_write(&mut self, key: &[u8], op_id: u64, value: Option<ValueId>, amount: i64, invoked: u64) {
        let write = Write { op_id, value, amount, invoked, completed: None, status: Status::Pending, observed: false };
        // Most writes hit a key already known: look it up before allocating a copy of it.
        match self.keys.get_mut(key) {
            Some(history) => history.writes.push(write),
            None => self.keys.entry(key.to_vec()).or_default().writes.push(write),
        }
    }

    /// Records the end of write `op_id` on `key`.
    pub fn end_write(&mut self, key: &[u8], op_id: u64, status: Status, completed: u64) {
        let horizon = self.reads_in_flight.keys().next().copied().unwrap_or(completed);
        let Some(history) = self.keys.get_mut(key) else { return };
        let revealed =
            history.writes.iter().rev().find(|write| write.op_id == op_id).is_some_and(|write| write.observed);
        if status == Status::Failed && revealed {
            let what = "a read returned the value of a write that then failed (revealed before it was durable)";
            return self.fail(what, key, "the write applied".into(), "failed".into());
        }
        finish_write(&mut history.writes, op_id, status, completed);
        if family(key) == Some(Family::Register) {
            history.prune(&self.flushes, horizon);
        }
    }

    pub fn begin_flush(&mut self, op_id: u64, invoked: u64) {
        let flush =
            Write { op_id, value: None, amount: 0, invoked, completed: None, status: Status::Pending, observed: false };
        self.flushes.push(flush);
    }

    pub fn end_flush(&mut self, op_id: u64, status: Status, completed: u64) {
        finish_write(&mut self.flushes, op_id, status, completed);
    }

    /// Every write still pending becomes indeterminate (a crash took its reply).
    pub fn crash(&mut self) {
        for history in
            self.keys.values_mut().map(|history| &mut history.writes).chain(std::iter::once(&mut self.flushes))
        {
            for write in history {
                if write.status == Status::Pending {
                    write.status = Status::Indeterminate;
                }
            }
        }
        self.reads_in_flight.clear();
    }

    /// Checks a register read that returned `got` (None: nil) over `invoked..responded`.
    pub fn check_register(&mut self, key: &[u8], got: Option<ValueId>, invoked: u64, responded: u64) {
        self.check_register_excluding(key, got, invoked, responded, None);
    }

    /// The same, for the value a write met (GETSET, GETDEL): its own write `excluded` left out.
    pub fn check_register_excluding(
        &mut self,
        key: &[u8],
        got: Option<ValueId>,
        invoked: u64,
        responded: u64,
        excluded: Option<u64>,
    ) {
        self.reads_checked += 1;
        let history = self.keys.entry(key.to_vec()).or_default();
        let initial = got.is_none() && initial_allowed(&history.writes, &self.flushes, invoked);
        let mut candidates = allowed(&history.writes, &self.flushes, invoked, responded);
        candidates.retain(|write| Some(write.op_id) != excluded);
        let matching: Vec<u64> =
            candidates.iter().filter(|write| write.value == got).map(|write| write.op_id).collect();
        if matching.is_empty() && !initial {
            let allowed: Vec<String> = candidates.iter().map(|write| describe_value(write.value)).collect();
            let expected = format!("one of [{}]", allowed.join(", "));
            return self.fail(
                "a read returned a value linearizability does not allow",
                key,
                expected,
                describe_value(got),
            );
        }
        if let ([op_id], false) = (&matching[..], initial) {
            // Observed: it took effect by now, whatever its reply said.
            let writes = history.writes.iter_mut().chain(self.flushes.iter_mut());
            if let Some(write) = writes.filter(|write| write.op_id == *op_id).find(|write| write.completed.is_none()) {
                self.reveals_before_reply += u64::from(write.status == Status::Pending);
                write.completed = Some(responded);
                write.observed = true;
            }
        }
    }

    /// Checks a counter read: the sum of increments it includes must be possible.
    pub fn check_counter(&mut self, key: &[u8], got: i64, invoked: u64, responded: u64) {
        self.reads_checked += 1;
        let history = self.keys.entry(key.to_vec()).or_default();
        let lower: i64 = history
            .writes
            .iter()
            .filter(|write| write.status == Status::Acknowledged && write.completed.is_some_and(|done| done < invoked))
            .map(|write| write.amount)
            .sum();
        let upper: i64 = history
            .writes
            .iter()
            .filter(|write| write.counts() && write.invoked < responded)
            .map(|write| write.amount)
            .sum();
        if got < lower || got > upper {
            self.fail(
                "a counter read is outside what its increments allow",
                key,
                format!("{lower}..={upper}"),
                got.to_string(),
            );
        }
    }

    /// Checks an append-key read: every token acknowledged before the read began is present,
    /// and every token present was appended (and not refused) before the read ended.
    pub fn check_appends(&mut self, key: &[u8], got: &[u8], invoked: u64, responded: u64) {
        self.reads_checked += 1;
        let history = self.keys.entry(key.to_vec()).or_default();
        if !got.len().is_multiple_of(APPEND_TOKEN_BYTES) {
            return self.fail(
                "an append key holds a partial token",
                key,
                "whole tokens".into(),
                format!("{} bytes", got.len()),
            );
        }
        let present: std::collections::BTreeSet<i64> = got
            .chunks(APPEND_TOKEN_BYTES)
            .map(|token| i64::from_str_radix(std::str::from_utf8(&token[..7]).unwrap_or("x"), 16).unwrap_or(-1))
            .collect();
        if present.len() * APPEND_TOKEN_BYTES != got.len() {
            return self.fail(
                "an append key holds a token twice",
                key,
                "each token once".into(),
                format!("{} bytes", got.len()),
            );
        }
        let possible: std::collections::BTreeSet<i64> = history
            .writes
            .iter()
            .filter(|write| write.counts() && write.invoked < responded)
            .map(|write| write.amount)
            .collect();
        if let Some(token) = present.iter().find(|token| !possible.contains(token)) {
            return self.fail(
                "an append key holds a token never appended",
                key,
                "known tokens".into(),
                format!("{token:x}"),
            );
        }
        let missing = history.writes.iter().find(|write| {
            write.status == Status::Acknowledged
                && write.completed.is_some_and(|done| done < invoked)
                && !present.contains(&write.amount)
        });
        if let Some(write) = missing {
            let expected = format!("token {:x} (acknowledged)", write.amount);
            self.fail("an acknowledged append is missing", key, expected, format!("{} tokens", present.len()));
        }
    }

    /// The values a register read over `invoked..responded` may return, as lengths (0 also
    /// standing for absent).
    fn register_values(&mut self, key: &[u8], invoked: u64, responded: u64) -> Vec<Option<ValueId>> {
        self.register_values_excluding(key, invoked, responded, None)
    }

    /// The same, leaving out write `excluded` (a conditional SET judging the state it met).
    fn register_values_excluding(
        &mut self,
        key: &[u8],
        invoked: u64,
        responded: u64,
        excluded: Option<u64>,
    ) -> Vec<Option<ValueId>> {
        let history = self.keys.entry(key.to_vec()).or_default();
        let initial = initial_allowed(&history.writes, &self.flushes, invoked);
        let mut values: Vec<Option<ValueId>> = allowed(&history.writes, &self.flushes, invoked, responded)
            .iter()
            .filter(|write| Some(write.op_id) != excluded)
            .map(|write| write.value)
            .collect();
        if initial {
            values.push(None);
        }
        values
    }

    /// Whether a register read over `invoked..responded` may find the key absent, and present.
    pub fn register_possibilities(&mut self, key: &[u8], invoked: u64, responded: u64) -> (bool, bool) {
        self.register_possibilities_excluding(key, invoked, responded, None)
    }

    /// The same, with write `excluded` left out (an MSETNX judging the state it met).
    pub fn register_possibilities_excluding(
        &mut self,
        key: &[u8],
        invoked: u64,
        responded: u64,
        excluded: Option<u64>,
    ) -> (bool, bool) {
        let values = self.register_values_excluding(key, invoked, responded, excluded);
        (values.iter().any(Option::is_none), values.iter().any(Option::is_some))
    }

    /// Whether register `key` certainly existed from `start` to `end`: every state a read at
    /// `start` may find holds a value, and no deletion (DEL, GETDEL, FLUSHALL) that may take
    /// effect began before `end` unless it was over before `start`.
    pub fn certainly_present_throughout(&mut self, key: &[u8], start: u64, end: u64) -> bool {
        let values = self.register_values(key, start, start);
        if values.is_empty() || values.iter().any(Option::is_none) {
            return false;
        }
        let Some(history) = self.keys.get(key) else { return false };
        let mut deletions =
            with_flushes(&history.writes, &self.flushes).filter(|write| write.counts() && write.value.is_none());
        !deletions.any(|write| write.invoked < end && write.completed.is_none_or(|done| done >= start))
    }

    /// A write of a value to `key` (not `excluded`) that certainly ran between `after` and
    /// `before`: invoked after the one and acknowledged before the other. Its op id.
    pub fn certain_change_between(&self, key: &[u8], excluded: u64, after: u64, before: u64) -> Option<u64> {
        let history = self.keys.get(key)?;
        history
            .writes
            .iter()
            .filter(|write| write.op_id != excluded && write.value.is_some() && write.status == Status::Acknowledged)
            .find(|write| write.invoked > after && write.completed.is_some_and(|done| done < before))
            .map(|write| write.op_id)
    }

    /// Whether some write to `key` (not `excluded`), or a FLUSHALL, may have run between `after`
    /// and `before`: it began before `before` and was not over before `after`.
    pub fn may_change_between(&self, key: &[u8], excluded: u64, after: u64, before: u64) -> bool {
        let writes = self.keys.get(key).map(|history| history.writes.as_slice()).unwrap_or_default();
        with_flushes(writes, &self.flushes).any(|write| {
            write.op_id != excluded
                && write.counts()
                && write.invoked < before
                && write.completed.is_none_or(|done| done > after)
        })
    }

    /// A SET NX/XX answered: OK means it wrote (so the key was absent for NX, present for XX
    /// when it ran); nil means it did not (the opposite held).
    pub fn check_conditional_set(
        &mut self,
        key: &[u8],
        op_id: u64,
        wants_absent: bool,
        wrote: bool,
        invoked: u64,
        responded: u64,
    ) {
        self.reads_checked += 1;
        let values = self.register_values_excluding(key, invoked, responded, Some(op_id));
        let (may_be_absent, may_be_present) = (values.iter().any(Option::is_none), values.iter().any(Option::is_some));
        let condition_held = if wants_absent { may_be_absent } else { may_be_present };
        let condition_failed = if wants_absent { may_be_present } else { may_be_absent };
        if (wrote && !condition_held) || (!wrote && !condition_failed) {
            let condition = if wants_absent { "NX" } else { "XX" };
            let got = if wrote { "OK (wrote)" } else { "nil (did not write)" };
            self.fail(
                format!("SET {condition} decided against every state the history allows"),
                key,
                format!("absent possible {may_be_absent}, present possible {may_be_present}"),
                got.into(),
            );
        }
    }

    pub fn register_lengths(&mut self, key: &[u8], invoked: u64, responded: u64) -> Vec<usize> {
        self.reads_checked += 1;
        self.register_values(key, invoked, responded)
            .iter()
            .map(|value| value.map_or(0, |value| value.length))
            .collect()
    }

    /// An APPEND's reply (the new length) counts whole tokens: at least those acknowledged
    /// before it began plus its own, at most every append not refused that began before it ended.
    pub fn check_append_length(&mut self, key: &[u8], length: i64, invoked: u64, responded: u64) {
        let history = self.keys.entry(key.to_vec()).or_default();
        let token = APPEND_TOKEN_BYTES as i64;
        let acknowledged = history
            .writes
            .iter()
            .filter(|write| write.status == Status::Acknowledged && write.completed.is_some_and(|done| done < invoked))
            .count() as i64;
        let possible = history.writes.iter().filter(|write| write.counts() && write.invoked < responded).count() as i64;
        let (low, high) = ((acknowledged + 1) * token, possible * token);
        if length % token != 0 || length < low || length > high {
            self.fail(
                "APPEND returned a length its history does not allow",
                key,
                format!("{low}..={high}"),
                length.to_string(),
            );
        }
    }
}

impl Checker {
    /// An upper bound on the bytes the live records held at some moment of `invoked..responded`
    /// (when a refused write ran): for every key, the largest value a read over that span may
    /// return, plus its record header and key. Deleted keys count nothing.
    /// Index entry bytes of keys certainly in the durable index at every moment of
    /// [invoked, responded], `except` aside: registers whose every state allowed then is a
    /// value (the newest durable write is among them), counters and append keys with a write
    /// acknowledged before `invoked` (they are never deleted; FLUSHALL seeds have none).
    pub fn durable_index_bytes_lower(&self, invoked: u64, responded: u64, except: &[u8]) -> u64 {
        let entry = |key: &[u8]| quill_core::engine::index_entry_bytes(key.len());
        self.keys
            .iter()
            .filter(|(key, _)| key.as_slice() != except)
            .filter(|(key, history)| match family(key) {
                Some(Family::Register) => {
                    !initial_allowed(&history.writes, &self.flushes, invoked)
                        && allowed(&history.writes, &self.flushes, invoked, responded)
                            .iter()
                            .all(|write| write.value.is_some())
                }
                Some(Family::Counter | Family::Append) => {
                    self.flushes.is_empty()
                        && history.writes.iter().any(|write| {
                            write.status == Status::Acknowledged && write.completed.is_some_and(|done| done < invoked)
                        })
                }
                Some(Family::Domain | Family::Transfer | Family::Shared) | None => false,
            })
            .map(|(key, _)| entry(key))
            .sum()
    }

    /// Whether register `key` is certainly absent through [invoked, responded], its write
    /// `op_id` aside: every other write allowed then is a deletion (or none is, and the key
    /// was never set).
    /// An open after the crash at `crash_tick` found register `key` holding `durable` (`None`:
    /// absent): every write undecided at the crash with another value did not take effect last,
    /// and is set failed so that no later read may return it (see runner/settle.rs).
    ///
    /// A write a read had observed may be among them only if a write of the recovered value
    /// could have replaced it afterwards; else the read revealed a write the crash then lost.
    pub fn settle(&mut self, key: &[u8], crash_tick: u64, durable: Option<ValueId>) {
        let Some(history) = self.keys.get_mut(key) else { return };
        let flushes = &self.flushes;
        let replaceable = |lost: &Write| {
            with_flushes(&history.writes, flushes).any(|other| {
                other.op_id != lost.op_id
                    && other.counts()
                    && other.value == durable
                    && other.completed.is_none_or(|done| done > lost.invoked)
            })
        };
        let settled = |write: &Write| {
            write.status == Status::Indeterminate && write.invoked < crash_tick && write.value != durable
        };
        let revealed_then_lost = history
            .writes
            .iter()
            .find(|write| settled(write) && write.observed && !replaceable(write))
            .map(|write| write.op_id);
        for write in &mut history.writes {
            if settled(write) {
                write.status = Status::Failed;
            }
        }
        if let Some(op_id) = revealed_then_lost {
            let what = format!("a read returned the value of write op {op_id}, which recovery then found lost");
            self.fail(what, key, "the observed write durable".into(), describe_value(durable));
        }
    }

    pub fn certainly_absent(&self, key: &[u8], op_id: u64, invoked: u64, responded: u64) -> bool {
        let Some(history) = self.keys.get(key) else { return true };
        let others: Vec<Write> = history.writes.iter().filter(|write| write.op_id != op_id).cloned().collect();
        allowed(&others, &self.flushes, invoked, responded).iter().all(|write| write.value.is_none())
    }

    /// Index entry bytes of every key ever written with a value (a put, an increment, an
    /// append), whether or not it still holds one: a bound that no pruning of the histories
    /// can lower, for judging a refusal the engine made at some moment of a command's window.
    pub fn ever_set_index_bytes(&self) -> u64 {
        self.keys
            .iter()
            .filter(|(_, history)| !history.writes.is_empty())
            .map(|(key, _)| quill_core::engine::index_entry_bytes(key.len()))
            .sum()
    }

    pub fn live_record_bytes_upper(&self, invoked: u64, responded: u64) -> u64 {
        let mut total = 0u64;
        for (key, history) in &self.keys {
            let value_bytes = match family(key) {
                Some(Family::Register) => allowed(&history.writes, &self.flushes, invoked, responded)
                    .iter()
                    .filter_map(|write| write.value.map(|value| value.length as u64))
                    .max(),
                Some(Family::Counter) => history.writes.iter().any(Write::counts).then_some(20),
                Some(Family::Append) => {
                    let tokens = history.writes.iter().filter(|write| write.counts()).count() as u64;
                    (tokens > 0).then_some(tokens * APPEND_TOKEN_BYTES as u64)
                }
                Some(Family::Domain | Family::Transfer | Family::Shared) | None => None, // the runner adds its own bound
            };
            if let Some(value_bytes) = value_bytes {
                total += (quill_core::format::RECORD_HEADER_BYTES + key.len()) as u64 + value_bytes;
            }
        }
        total
    }
}
