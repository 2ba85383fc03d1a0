//! Expiry in the value-domain model (domains.rs): a key's state is its value and its expiry
//! time, and a command runs at a moment the simulator knows only within a window (from the
//! wall-clock time it was sent to the time its reply came). A relative time (PX, PEXPIRE,
//! SETEX) therefore gives an expiry time known within an interval, and a key whose interval
//! meets the window may be there or gone: the model follows both.
//!
//! The workload (`next_expiring_request`) runs on its own random stream: each client owns
//! three keys `x{client}.{0,1,2}` and sends every expiry command to them, now and then alone
//! inside an EXEC; times are a few milliseconds (keys expire while the run goes on), up to two
//! seconds, beyond the run, or already past. The clock also jumps ahead now and then
//! (`clock_jump`), so keys expire between two commands, across crashes and under compaction.

use quill_core::command::{ExpireCondition, ExpiryTime, GetExChange, SetCondition, SetExpiry};
use quill_core::{Reply, Request};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Wall-clock milliseconds: the earliest and the latest moment a command may have run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

/// A key's state: its value (`None`: absent) and its expiry time, known within `(low, high)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timed {
    pub value: Option<Vec<u8>>,
    pub expires: Option<(u64, u64)>,
}

impl Timed {
    pub const ABSENT: Timed = Timed { value: None, expires: None };
}

/// A reply the model expects: exactly this, or an integer within a range (a time left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Exact(Reply),
    IntegerWithin(i64, i64),
    /// EXEC's reply to one command.
    Array(Box<Expected>),
}

impl Expected {
    pub fn matches(&self, reply: &Reply) -> bool {
        match (self, reply) {
            (Expected::Exact(expected), reply) => expected == reply,
            (Expected::IntegerWithin(low, high), Reply::Integer(value)) => (low..=high).contains(&value),
            (Expected::Array(inner), Reply::Array(Some(items))) => items.len() == 1 && inner.matches(&items[0]),
            _ => false,
        }
    }
}

/// What the key is at some moment of `window`: there (as it is), gone (its time passed), or
/// either.
pub fn views(state: &Timed, window: Window) -> Vec<Timed> {
    match (&state.value, state.expires) {
        (None, _) => vec![Timed::ABSENT],
        (Some(_), None) => vec![state.clone()],
        // There during the millisecond of its time, gone after it.
        (Some(_), Some((low, high))) => {
            let mut views = Vec::new();
            if window.from <= high {
                views.push(state.clone());
            }
            if window.to > low {
                views.push(Timed::ABSENT);
            }
            views
        }
    }
}

/// Whether `request` is an expiry command this module models.
pub fn is_expiry_request(request: &Request) -> bool {
    matches!(
        request,
        Request::SetExpiring { .. }
            | Request::Expire { .. }
            | Request::Persist { .. }
            | Request::GetEx { .. }
            | Request::Ttl { .. }
    )
}

/// The time `time` names, run within `window`: an interval.
fn resolve(time: ExpiryTime, window: Window) -> (u64, u64) {
    match time {
        ExpiryTime::In(milliseconds) => {
            let milliseconds = milliseconds.max(0) as u64;
            (window.from + milliseconds, window.to + milliseconds)
        }
        ExpiryTime::At(unix_ms) => (unix_ms.max(0) as u64, unix_ms.max(0) as u64),
    }
}

/// Whether a time in `when` is at or before the moment the command ran (Redis's
/// `checkAlreadyExpired`): certainly, certainly not, or either.
fn past(time: ExpiryTime, window: Window) -> (bool, bool) {
    match time {
        ExpiryTime::In(milliseconds) => (milliseconds <= 0, milliseconds > 0),
        ExpiryTime::At(unix_ms) => {
            let unix_ms = unix_ms.max(0) as u64;
            (unix_ms <= window.to, unix_ms > window.from)
        }
    }
}

/// Whether `condition` may hold (first) and may fail (second) for a new time `when` over the
/// key's `expires`; a key without a time expires never.
fn condition_may(condition: ExpireCondition, expires: Option<(u64, u64)>, when: (u64, u64)) -> (bool, bool) {
    let later = |(low, high): (u64, u64)| (when.1 > low, when.0 <= high); // may be later, may not
    let earlier = |(low, high): (u64, u64)| (when.0 < high, when.1 >= low);
    match (condition, expires) {
        (ExpireCondition::Always, _) => (true, false),
        (ExpireCondition::IfNone, existing) => (existing.is_none(), existing.is_some()),
        (ExpireCondition::IfSome, existing) => (existing.is_some(), existing.is_none()),
        (ExpireCondition::IfLater, None) | (ExpireCondition::IfEarlierExisting, None) => (false, true),
        (ExpireCondition::IfLater, Some(existing)) => later(existing),
        (ExpireCondition::IfEarlier, None) => (true, false),
        (ExpireCondition::IfEarlier | ExpireCondition::IfEarlierExisting, Some(existing)) => earlier(existing),
    }
}

/// The replies and states an expiry command gives over `view` (the key as it is when it runs).
pub fn expiry_outcomes(view: &Timed, request: &Request, window: Window) -> Vec<(Expected, Timed)> {
    let exact = |reply: Reply, state: Timed| (Expected::Exact(reply), state);
    let unchanged = view.clone();
    let Some(value) = view.value.clone() else {
        let reply = match request {
            Request::SetExpiring { .. } => return set_expiring_outcomes(view, request, window),
            Request::Ttl { .. } => Reply::Integer(-2),
            Request::GetEx { .. } => Reply::Bulk(None),
            _ => Reply::Integer(0), // EXPIRE, PERSIST
        };
        return vec![exact(reply, unchanged)];
    };
    let with = |expires| Timed { value: Some(value.clone()), expires };
    match request {
        Request::SetExpiring { .. } => set_expiring_outcomes(view, request, window),
        Request::Persist { .. } => match view.expires {
            Some(_) => vec![exact(Reply::Integer(1), with(None))],
            None => vec![exact(Reply::Integer(0), unchanged)],
        },
        Request::Ttl { milliseconds, absolute, .. } => {
            vec![(ttl_expected(view.expires, window, *milliseconds, *absolute), unchanged)]
        }
        Request::GetEx { change, .. } => {
            let reply = Reply::Bulk(Some(value.clone()));
            match change {
                None => vec![exact(reply, unchanged)],
                Some(GetExChange::Persist) => vec![exact(reply, with(None))],
                Some(GetExChange::At(time)) => {
                    let (may_be_past, may_be_future) = past(*time, window);
                    let mut outcomes = Vec::new();
                    if may_be_past {
                        outcomes.push(exact(reply.clone(), Timed::ABSENT));
                    }
                    if may_be_future {
                        outcomes.push(exact(reply, with(Some(resolve(*time, window)))));
                    }
                    outcomes
                }
                Some(GetExChange::NotInteger | GetExChange::InvalidTime) => {
                    unreachable!("the workload sends valid times")
                }
            }
        }
        Request::Expire { time, condition, .. } => {
            let when = resolve(*time, window);
            let (may_hold, may_fail) = condition_may(*condition, view.expires, when);
            let mut outcomes = Vec::new();
            if may_fail {
                outcomes.push(exact(Reply::Integer(0), unchanged));
            }
            if may_hold {
                let (may_be_past, may_be_future) = past(*time, window);
                if may_be_past {
                    outcomes.push(exact(Reply::Integer(1), Timed::ABSENT));
                }
                if may_be_future {
                    outcomes.push(exact(Reply::Integer(1), with(Some(when))));
                }
            }
            outcomes
        }
        _ => unreachable!("only expiry commands"),
    }
}

/// SET with an expiry option, SETEX, PSETEX.
fn set_expiring_outcomes(view: &Timed, request: &Request, window: Window) -> Vec<(Expected, Timed)> {
    let Request::SetExpiring { value, condition, expiry, get, .. } = request else { unreachable!("SET") };
    let applies = match condition {
        SetCondition::Always => true,
        SetCondition::IfAbsent => view.value.is_none(),
        SetCondition::IfPresent => view.value.is_some(),
    };
    let reply = match (get, applies) {
        (true, _) => Reply::Bulk(view.value.clone()),
        (false, true) => Reply::ok(),
        (false, false) => Reply::Bulk(None),
    };
    if !applies {
        return vec![(Expected::Exact(reply), view.clone())];
    }
    let expires = match expiry {
        SetExpiry::Keep => view.expires,
        SetExpiry::At(time) => Some(resolve(*time, window)),
    };
    vec![(Expected::Exact(reply), Timed { value: Some(value.clone()), expires })]
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME of a key that is there: -1 without a time, else the time
/// (left) as the window and the interval allow, rounded as Redis rounds seconds.
fn ttl_expected(expires: Option<(u64, u64)>, window: Window, milliseconds: bool, absolute: bool) -> Expected {
    let Some((low, high)) = expires else { return Expected::Exact(Reply::Integer(-1)) };
    let (least, most) =
        if absolute { (low, high) } else { (low.saturating_sub(window.to), high.saturating_sub(window.from)) };
    let seconds = |time: u64| (time as i64 + 500) / 1000;
    if milliseconds {
        Expected::IntegerWithin(least as i64, most as i64)
    } else {
        Expected::IntegerWithin(seconds(least), seconds(most))
    }
}

/// The keys a client owns for expiry.
fn expiring_key(client: usize, pick: u32) -> Vec<u8> {
    format!("x{client}.{pick}").into_bytes()
}

/// Whether `key` is an expiry key (judged with the value-domain model).
pub fn is_expiring_key(key: &[u8]) -> bool {
    key.first() == Some(&b'x')
}

/// The expiry workload's random stream, its rate, and the clock's jumps.
pub struct ExpiryWorkload {
    pub rng: ChaCha8Rng,
    /// Percent of requests sent to the expiry keys (0 in half the seeds).
    pub percent: u32,
    /// How far the wall clock has jumped ahead of the tick, in total.
    pub clock_jump_ms: u64,
    values_sent: u64,
    /// The last Unix time drawn: drawn again now and then, so that GT and LT meet equal times.
    last_unix_ms: Option<i64>,
}

impl ExpiryWorkload {
    pub fn new(mut rng: ChaCha8Rng) -> ExpiryWorkload {
        let percent = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(5..=30) };
        ExpiryWorkload { rng, percent, clock_jump_ms: 0, values_sent: 0, last_unix_ms: None }
    }

    pub fn chosen(&mut self) -> bool {
        self.percent > 0 && self.rng.gen_range(0..100) < self.percent
    }

    /// Now and then (in seeds with expiry) the wall clock jumps ahead by up to three seconds.
    pub fn clock_jump(&mut self) {
        if self.percent > 0 && self.rng.gen_range(0..2000) == 0 {
            self.clock_jump_ms += self.rng.gen_range(1..3000);
        }
    }

    /// A time for the command: milliseconds from now (`relative`) or a Unix time.
    fn time(&mut self, now_unix_ms: u64, relative: bool, seconds: bool) -> ExpiryTime {
        let milliseconds: i64 = match self.rng.gen_range(0..10) {
            0..=3 => self.rng.gen_range(1..30),
            4..=7 => self.rng.gen_range(30..2000),
            8 => 1_000_000_000,                // beyond the run
            _ => -self.rng.gen_range(0..2000), // already past (EXPIRE deletes at once)
        };
        // Whole seconds where the command counts in seconds (EXPIRE, EXPIREAT).
        let whole = |milliseconds: i64| if seconds { milliseconds.div_euclid(1000) * 1000 } else { milliseconds };
        if relative {
            return ExpiryTime::In(whole(milliseconds));
        }
        let unix_ms = match self.last_unix_ms {
            // (Whole seconds only where the command counts in seconds.)
            Some(last) if (!seconds || last % 1000 == 0) && self.rng.gen_range(0..3) == 0 => last,
            _ => whole(now_unix_ms as i64 + milliseconds),
        };
        self.last_unix_ms = Some(unix_ms);
        ExpiryTime::At(unix_ms)
    }

    /// A time GETEX accepts: relative ones above 0 (a past Unix time deletes the key).
    fn positive(&mut self, now_unix_ms: u64) -> ExpiryTime {
        let relative = self.rng.gen_bool(0.5);
        match self.time(now_unix_ms, relative, false) {
            ExpiryTime::In(milliseconds) => ExpiryTime::In(milliseconds.max(5)),
            ExpiryTime::At(unix_ms) => ExpiryTime::At(unix_ms.max(1)),
        }
    }

    /// An expiry request of `client` on a key it owns, alone or (direct clients) in an EXEC.
    /// `value_bytes_max`: direct clients now and then send a value at the limit or one byte over.
    pub fn next_request(&mut self, client: usize, now_unix_ms: u64, direct: bool, value_bytes_max: usize) -> Request {
        let key = expiring_key(client, self.rng.gen_range(0..3));
        self.values_sent += 1;
        let mut value = format!("x{client}:{}", self.values_sent).into_bytes();
        let large = direct && self.rng.gen_range(0..40) == 0;
        if large {
            value.resize(value_bytes_max + self.rng.gen_range(0..2), b'x');
        }
        let request = match self.rng.gen_range(0..100) {
            0..=19 => self.set_request(key, value, now_unix_ms),
            20..=29 => Request::Set { key, value, condition: SetCondition::Always },
            30..=44 => {
                let names = [
                    ("expire", true, true),
                    ("pexpire", true, false),
                    ("expireat", false, true),
                    ("pexpireat", false, false),
                ];
                let (name, relative, seconds) = names[self.rng.gen_range(0..4)];
                let time = self.time(now_unix_ms, relative, seconds);
                let conditions = [
                    ExpireCondition::Always,
                    ExpireCondition::Always,
                    ExpireCondition::IfNone,
                    ExpireCondition::IfSome,
                    ExpireCondition::IfLater,
                    ExpireCondition::IfEarlier,
                    ExpireCondition::IfEarlierExisting,
                ];
                let condition = conditions[self.rng.gen_range(0..conditions.len())];
                Request::Expire { key, time, condition, name }
            }
            45..=49 => Request::Persist { key },
            50..=59 => {
                let change = match self.rng.gen_range(0..4) {
                    0 => None,
                    1 => Some(GetExChange::Persist),
                    _ => Some(GetExChange::At(self.positive(now_unix_ms))),
                };
                Request::GetEx { key, change }
            }
            60..=74 => {
                let (milliseconds, absolute) = (self.rng.gen_bool(0.5), self.rng.gen_bool(0.3));
                Request::Ttl { key, milliseconds, absolute }
            }
            75..=89 => Request::Get { key },
            90..=94 => Request::Append { key, value },
            _ => Request::Del { keys: vec![key] },
        };
        // (Not a large value: an EXEC too large for a batch is refused whole.)
        if direct && !large && self.rng.gen_range(0..5) == 0 {
            return Request::Exec { commands: vec![request] };
        }
        request
    }

    /// SET with EX, PX, EXAT, PXAT or KEEPTTL (with NX, XX, GET now and then), SETEX, PSETEX.
    fn set_request(&mut self, key: Vec<u8>, value: Vec<u8>, now_unix_ms: u64) -> Request {
        let name = ["set", "set", "set", "setex", "psetex"][self.rng.gen_range(0..5)];
        if name != "set" {
            let milliseconds =
                if name == "setex" { self.rng.gen_range(1..3) * 1000 } else { self.rng.gen_range(1..2000) };
            let expiry = SetExpiry::At(ExpiryTime::In(milliseconds));
            return Request::SetExpiring { key, value, condition: SetCondition::Always, expiry, get: false, name };
        }
        let relative = self.rng.gen_bool(0.5);
        let expiry = if self.rng.gen_range(0..5) == 0 {
            SetExpiry::Keep
        } else {
            // SET refuses 0 and negative times; a past Unix time is accepted.
            SetExpiry::At(match self.time(now_unix_ms, relative, false) {
                ExpiryTime::In(milliseconds) => ExpiryTime::In(milliseconds.max(1)),
                ExpiryTime::At(unix_ms) => ExpiryTime::At(unix_ms.max(1)),
            })
        };
        let condition = [SetCondition::Always, SetCondition::Always, SetCondition::IfAbsent, SetCondition::IfPresent]
            [self.rng.gen_range(0..4)];
        let get = self.rng.gen_range(0..4) == 0;
        Request::SetExpiring { key, value, condition, expiry, get, name }
    }
}
