//! Shared keys: many clients race on the same few keys, and the whole history is judged at the
//! end by two checkers that know nothing of the engine.
//!
//! - `s…` keys: every single-key command (SET and its options, GET, GETSET, GETDEL, GETEX,
//!   SETRANGE, APPEND, the INCR family, INCRBYFLOAT, DEL, EXISTS, STRLEN, the expiry and TTL
//!   commands). Each key is one register, checked for linearizability (linearizability.rs).
//! - `g…` keys: one object of a few keys, under multi-key commands (MGET, MSET, MSETNX, DEL,
//!   EXISTS, RENAME, RENAMENX, COPY) and EXECs of several commands, all checked as single
//!   operations on it: strict serializability of each command and each EXEC, exactly.
//! - `l…` keys: list-append transactions (EXECs of APPENDs of unique tokens and GETs), and
//!   single APPENDs and GETs, checked Elle-style (elle.rs) for dependency cycles, aborted and
//!   intermediate reads and lost appends.
//!
//! A request whose reply never came (a crash, a cut connection) or that was answered "not
//! durable" may or may not have taken effect, at any time until the next crash.

use std::collections::BTreeMap;

use quill_core::command::{ExpireCondition, ExpiryTime, GetExChange, SetCondition, SetExpiry};
use quill_core::{Reply, Request};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::checker::Violation;
use crate::elle::{Micro, Txn, TxnStatus};
use crate::linearizability::{self, Entry, Verdict};
use crate::runner::domains::Limits;
use crate::runner::expiring::{Timed, Window};
use crate::runner::isolation_models::{Group, Observed, SingleKey};
use crate::runner::replies::ErrorMeaning;
use crate::runner::{Outstanding, Sim};

/// A list's length at most before its slot moves on to a new key (about 200 tokens).
const LIST_BYTES_MAX: usize = 1_500;

/// Group requests outstanding at most when another is drawn.
const GROUP_IN_FLIGHT_MAX: usize = 3;
/// Single-key requests outstanding at most when another is drawn (over all `s` keys).
const SINGLE_IN_FLIGHT_MAX: usize = 4;

/// Whether `key` is one of the shared keys judged here.
pub fn is_isolation_key(key: &[u8]) -> bool {
    matches!(key.first(), Some(b's' | b'g' | b'l'))
}

/// Whether the request is judged here (its keys are shared keys; the workload never mixes).
pub fn is_isolation_request(request: &Request) -> bool {
    match request {
        Request::Exec { commands } => commands.iter().any(is_isolation_request),
        other => other.any_key(is_isolation_key),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Replied,
    /// Refused before anything was written.
    NotApplied,
    /// Maybe applied, at any time until the next crash (which sets its return time).
    Unknown,
}

struct Record {
    client: usize,
    /// The client's connection since the last crash (see `Observed::watcher`).
    watcher: u64,
    request: Request,
    call: u64,
    ret: u64,
    reply: Option<Reply>,
    window: Window,
    outcome: Outcome,
}

/// The shared-key workload and its history.
pub(crate) struct IsolationWorkload {
    pub rng: ChaCha8Rng,
    /// Percent of requests sent to shared keys (0: none in this seed).
    pub percent: u32,
    single_keys: u32,
    group_keys: u32,
    list_slots: u32,
    /// Each list slot's generation: a list that grew past `list_bytes_max` is left for a new key.
    list_generations: Vec<u32>,
    list_bytes: BTreeMap<Vec<u8>, usize>,
    list_bytes_max: usize,
    /// Large values for group keys, so their reads go to disk.
    large_value_bytes: usize,
    /// The seed's weights (of 10) for single-key, group and list requests.
    mix: [u32; 3],
    /// Percent of group values that are large: in some seeds most, so that batches fill and
    /// commands wait for room (a window where a lock or a watch must hold).
    large_percent: u32,
    /// The client drawing now may WATCH (it has nothing outstanding and no EXEC to follow).
    may_watch: bool,
    next_token: u64,
    records: BTreeMap<u64, Record>,
    /// Operations whose outcome the next crash decides.
    unresolved: Vec<u64>,
    /// Bytes each key may hold at most (every payload sent to it, or to the group).
    payload_bytes: BTreeMap<Vec<u8>, u64>,
}

impl IsolationWorkload {
    pub fn new(mut rng: ChaCha8Rng, percent: u32) -> IsolationWorkload {
        let single_keys = rng.gen_range(1..=2);
        let group_keys = rng.gen_range(2..=4);
        let list_slots = rng.gen_range(2..=5);
        let large_value_bytes = [0, 400, 800, 1_600, 3_000][rng.gen_range(0..5)];
        // Swarm testing: each seed leans on one kind, or mixes all three.
        let mix = [[4, 3, 3], [8, 1, 1], [1, 7, 2], [2, 2, 6]][rng.gen_range(0..4)];
        let large_percent = [33, 33, 80][rng.gen_range(0..3)];
        // Batch fillers: most values as large as the cap allows (a sixth of a batch).
        let large_value_bytes = if large_percent == 80 { usize::MAX } else { large_value_bytes };
        IsolationWorkload {
            rng,
            percent,
            single_keys,
            group_keys,
            list_slots,
            list_generations: vec![0; list_slots as usize],
            list_bytes: BTreeMap::new(),
            list_bytes_max: 0,
            large_value_bytes,
            mix,
            large_percent,
            may_watch: false,
            next_token: 1,
            records: BTreeMap::new(),
            unresolved: Vec::new(),
            payload_bytes: BTreeMap::new(),
        }
    }

    pub fn chosen(&mut self) -> bool {
        self.percent > 0 && self.rng.gen_range(0..100) < self.percent
    }

    /// The next shared-key request. `in_flight`: the single-key and group requests outstanding
    /// (few, so the search stays small); `may_watch`: the client may start a WATCH.
    pub fn next_request(
        &mut self,
        now_unix_ms: u64,
        limits: &Limits,
        in_flight: (usize, usize),
        may_watch: bool,
    ) -> Request {
        self.may_watch = may_watch;
        let (single_in_flight, group_in_flight) = in_flight;
        // Lists stay well inside a batch even when a transaction rewrites three of them, and
        // short: every APPEND rewrites its whole list, and every read returns it.
        let list_bytes_max = limits.value_bytes_max.min(limits.batch_payload_bytes_max / 4).saturating_sub(200);
        self.list_bytes_max = list_bytes_max.clamp(64, LIST_BYTES_MAX);
        // Large enough that a few fill a batch (commands then wait for room), small enough that
        // an EXEC's records fit one.
        // (The drawn size, or `usize::MAX` for batch fillers, capped once: the limits are the
        // seed's and do not change.)
        let large = self.large_value_bytes.min(limits.batch_payload_bytes_max / 6).min(limits.value_bytes_max);
        self.large_value_bytes = large;
        let [single_weight, group_weight, _] = self.mix;
        let pick = self.rng.gen_range(0..10);
        // At most a few linearizability operations at once: enough to race, few enough that
        // the search over their orders stays small (its cost grows with their overlap).
        let request = if pick < single_weight && single_in_flight < SINGLE_IN_FLIGHT_MAX {
            self.single_request(now_unix_ms)
        } else if (single_weight..single_weight + group_weight).contains(&pick) && group_in_flight < GROUP_IN_FLIGHT_MAX
        {
            self.group_request()
        } else {
            self.list_request()
        };
        self.count_payload(&request);
        request
    }

    fn single_key(&mut self) -> Vec<u8> {
        format!("s{}", self.rng.gen_range(0..self.single_keys)).into_bytes()
    }

    fn small_value(&mut self) -> Vec<u8> {
        match self.rng.gen_range(0..10) {
            0 => b"x".to_vec(),
            1 => Vec::new(),
            _ => self.rng.gen_range(0..100).to_string().into_bytes(),
        }
    }

    /// An expiry time: far beyond the run, a little ahead, or already past.
    fn time(&mut self, now_unix_ms: u64) -> ExpiryTime {
        let milliseconds: i64 = match self.rng.gen_range(0..10) {
            0..=4 => 1_000_000_000,
            5..=8 => self.rng.gen_range(50..3_000),
            _ => -self.rng.gen_range(0..2_000),
        };
        if self.rng.gen_bool(0.5) {
            ExpiryTime::In(milliseconds.max(1))
        } else {
            ExpiryTime::At(now_unix_ms as i64 + milliseconds)
        }
    }

    fn single_request(&mut self, now_unix_ms: u64) -> Request {
        let key = self.single_key();
        // Now and then a large value, so that read-modify-writes read the key from disk.
        let value = if self.rng.gen_range(0..4) == 0 { self.group_value() } else { self.small_value() };
        let condition =
            [SetCondition::Always, SetCondition::IfAbsent, SetCondition::IfPresent][self.rng.gen_range(0..3)];
        match self.rng.gen_range(0..20) {
            0..=2 => Request::Set { key, value, condition },
            3..=5 => Request::Get { key },
            6 => Request::GetSet { key, value, condition },
            7 => Request::GetDel { key },
            8 => Request::Append { key, value: b"7".to_vec() },
            9..=10 => Request::IncrBy { key, delta: self.rng.gen_range(-3..=5) },
            11 => Request::IncrByFloat { key, increment: b"1.5".to_vec() },
            12 => Request::SetRange { key, offset: self.rng.gen_range(0..4), value: b"9".to_vec() },
            13 => Request::Del { keys: vec![key] },
            14 => Request::Exists { keys: vec![key] },
            15 => Request::StrLen { key },
            16 => {
                let time = self.time(now_unix_ms);
                let expiry = if self.rng.gen_bool(0.2) { SetExpiry::Keep } else { SetExpiry::At(time) };
                Request::SetExpiring { key, value, condition, expiry, get: self.rng.gen_bool(0.3), name: "set" }
            }
            17 => {
                let conditions = [ExpireCondition::Always, ExpireCondition::IfNone, ExpireCondition::IfLater];
                let condition = conditions[self.rng.gen_range(0..conditions.len())];
                let time = self.time(now_unix_ms);
                // The name says how a connection sends the time (network.rs).
                let name = if matches!(time, ExpiryTime::In(_)) { "pexpire" } else { "pexpireat" };
                Request::Expire { key, time, condition, name }
            }
            18 => match self.rng.gen_range(0..3) {
                0 => Request::Persist { key },
                1 => Request::GetEx { key, change: Some(GetExChange::Persist) },
                _ => Request::GetEx { key, change: Some(GetExChange::At(self.time(now_unix_ms))) },
            },
            _ => Request::Ttl { key, milliseconds: self.rng.gen_bool(0.5), absolute: self.rng.gen_bool(0.3) },
        }
    }

    fn group_key(&mut self) -> Vec<u8> {
        format!("g{}", self.rng.gen_range(0..self.group_keys)).into_bytes()
    }

    fn group_value(&mut self) -> Vec<u8> {
        if self.large_value_bytes > 0 && self.rng.gen_range(0..100) < self.large_percent {
            let mut value = self.rng.gen_range(0..100).to_string().into_bytes();
            value.resize(self.large_value_bytes, b'v');
            return value;
        }
        self.small_value()
    }

    /// One command over the group: what EXECs are made of, and sent alone too.
    fn group_command(&mut self) -> Request {
        let (a, b) = (self.group_key(), self.group_key());
        match self.rng.gen_range(0..16) {
            0..=2 => Request::IncrBy { key: a, delta: 1 },
            3..=4 => Request::Get { key: a },
            5 => Request::Set { key: a, value: self.group_value(), condition: SetCondition::Always },
            6 => Request::Set { key: a, value: self.group_value(), condition: SetCondition::IfAbsent },
            7 => Request::Append { key: a, value: b"1".to_vec() },
            8 => Request::Del { keys: vec![a, b] },
            9 => Request::GetSet { key: a, value: self.group_value(), condition: SetCondition::Always },
            10 => Request::Copy { source: a, destination: b, replace: self.rng.gen_bool(0.5) },
            11 => Request::Rename { source: a, destination: b, only_if_absent: self.rng.gen_bool(0.5) },
            12 => Request::MSet { pairs: vec![(a, self.group_value()), (b, self.group_value())] },
            13 => Request::MSetNx { pairs: vec![(a, self.group_value()), (b, self.group_value())] },
            14 => Request::MGet { keys: vec![a, b] },
            _ => Request::Exists { keys: vec![a, b] },
        }
    }

    /// The EXEC a WATCH leads to: it reads the watched keys (so that its reply shows what it
    /// saw) and writes one or two group keys.
    pub fn watched_exec(&mut self, keys: &[Vec<u8>]) -> Request {
        let mut commands: Vec<Request> = keys.iter().map(|key| Request::Get { key: key.clone() }).collect();
        for _ in 0..self.rng.gen_range(1..=2) {
            commands.push(self.group_command());
        }
        let exec = Request::Exec { commands };
        self.count_payload(&exec);
        exec
    }

    fn group_request(&mut self) -> Request {
        if self.may_watch && self.rng.gen_range(0..5) == 0 {
            let mut keys = vec![self.group_key()];
            if self.rng.gen_bool(0.5) {
                keys.push(self.group_key());
            }
            return Request::Watch { keys };
        }
        if self.rng.gen_bool(0.4) {
            // Alone: RENAME and COPY often (their one-command path), else any group command.
            let (a, b) = (self.group_key(), self.group_key());
            return match self.rng.gen_range(0..10) {
                0..=2 => Request::Copy { source: a, destination: b, replace: self.rng.gen_bool(0.3) },
                3 => Request::Rename { source: a, destination: b, only_if_absent: self.rng.gen_bool(0.5) },
                _ => self.group_command(),
            };
        }
        let count = self.rng.gen_range(2..=4);
        Request::Exec { commands: (0..count).map(|_| self.group_command()).collect() }
    }

    fn list_key(&mut self) -> Vec<u8> {
        let slot = self.rng.gen_range(0..self.list_slots) as usize;
        let key = format!("l{slot}.{}", self.list_generations[slot]).into_bytes();
        if self.list_bytes.get(&key).is_some_and(|bytes| *bytes > self.list_bytes_max) {
            self.list_generations[slot] += 1;
            return format!("l{slot}.{}", self.list_generations[slot]).into_bytes();
        }
        key
    }

    fn list_micro(&mut self) -> Request {
        let key = self.list_key();
        if self.rng.gen_bool(0.5) {
            return Request::Get { key };
        }
        let token = self.next_token;
        self.next_token += 1;
        let value = format!("{token},").into_bytes();
        *self.list_bytes.entry(key.clone()).or_default() += value.len();
        Request::Append { key, value }
    }

    fn list_request(&mut self) -> Request {
        if self.rng.gen_bool(0.3) {
            return self.list_micro();
        }
        let count = self.rng.gen_range(1..=4);
        Request::Exec { commands: (0..count).map(|_| self.list_micro()).collect() }
    }

    fn count_payload(&mut self, request: &Request) {
        let commands = match request {
            Request::Exec { commands } => commands.as_slice(),
            single => std::slice::from_ref(single),
        };
        for command in commands {
            let bytes = match command {
                Request::Set { value, .. }
                | Request::GetSet { value, .. }
                | Request::Append { value, .. }
                | Request::SetExpiring { value, .. } => value.len() as u64,
                Request::SetRange { offset, value, .. } => offset + value.len() as u64,
                Request::MSet { pairs } | Request::MSetNx { pairs } => {
                    pairs.iter().map(|(_, value)| value.len() as u64).sum()
                }
                _ => 0,
            };
            // An integer or float result, at most this long.
            let bytes = bytes + 48;
            command.any_key(|key| {
                // The group's keys take one another's values (COPY, RENAME): each may hold any.
                let owner = if key.first() == Some(&b'g') { b"g".to_vec() } else { key.to_vec() };
                *self.payload_bytes.entry(owner).or_default() += bytes;
                false
            });
        }
    }
}

impl Sim {
    /// Records a shared-key request as sent.
    pub(crate) fn isolation_sent(&mut self, client: usize, op_id: u64, request: &Request, invoked: u64) {
        self.know_keys(request);
        let window = Window { from: self.unix_now(), to: u64::MAX / 4 };
        let connection = self.clients[client].connection.unwrap_or(0) & 0xffff_ffff;
        let watcher = (client as u64) << 48 | (self.crashes & 0xffff) << 32 | connection;
        let record = Record {
            client,
            watcher,
            request: request.clone(),
            call: invoked,
            ret: u64::MAX,
            reply: None,
            window,
            outcome: Outcome::Pending,
        };
        self.isolation.records.insert(op_id, record);
    }

    pub(crate) fn on_isolation_reply(&mut self, outstanding: &Outstanding, reply: Reply, responded: u64) {
        let outcome = match &reply {
            Reply::Error(text) => match self.classify_error(text, &outstanding.request, outstanding.invoked, responded)
            {
                Some(ErrorMeaning::NotApplied) => Outcome::NotApplied,
                Some(ErrorMeaning::Unknown) => Outcome::Unknown,
                // A failed read changes nothing; its EXEC or read-modify-write ran none of it.
                Some(ErrorMeaning::ReadFault) => Outcome::NotApplied,
                None if is_fault_error(text) => {
                    let got = text.clone();
                    return self.checker.fail("an error reply no injected fault explains", b"", "a reply".into(), got);
                }
                None => Outcome::Replied, // a command's own error: the model judges it
            },
            _ => Outcome::Replied,
        };
        let to = self.unix_now();
        if let (Request::Watch { keys }, Reply::Simple(_)) = (&outstanding.request, &reply) {
            // The EXEC follows once the client has nothing outstanding, up to 100 ticks later,
            // so other clients' writes may land in between.
            let exec = self.isolation.watched_exec(keys);
            let due = self.tick + self.isolation.rng.gen_range(0..100);
            let client = self.isolation.records[&outstanding.op_id].client;
            self.clients[client].follow_up = Some((exec, due));
        }
        let Some(record) = self.isolation.records.get_mut(&outstanding.op_id) else { return };
        record.outcome = outcome;
        record.window.to = to;
        match outcome {
            Outcome::Replied => {
                record.reply = Some(reply);
                record.ret = responded;
            }
            Outcome::NotApplied => record.ret = responded,
            Outcome::Unknown => self.isolation.unresolved.push(outstanding.op_id),
            Outcome::Pending => unreachable!("set above"),
        }
    }

    /// Requests that will never be answered: at a crash, they ran before it or never; on a cut
    /// connection, they may still run, until the next crash.
    pub(crate) fn isolation_lost(&mut self, lost: &[Outstanding], crash: bool) {
        for outstanding in lost.iter().filter(|outstanding| is_isolation_request(&outstanding.request)) {
            if let Some(record) = self.isolation.records.get_mut(&outstanding.op_id) {
                record.outcome = Outcome::Unknown;
                self.isolation.unresolved.push(outstanding.op_id);
            }
        }
        if crash {
            let (now, unix_now) = (self.crash_time, self.unix_now());
            for op_id in std::mem::take(&mut self.isolation.unresolved) {
                let record = self.isolation.records.get_mut(&op_id).expect("recorded");
                record.ret = now.max(record.call + 1);
                record.window.to = unix_now;
            }
        }
    }

    /// An upper bound on the bytes the shared keys hold, for disk-full judgements.
    pub(crate) fn isolation_live_bytes_upper(&self) -> u64 {
        let groups = u64::from(self.isolation.group_keys);
        self.isolation
            .payload_bytes
            .iter()
            .map(|(owner, bytes)| if owner.as_slice() == b"g" { bytes * groups } else { *bytes })
            .sum()
    }

    /// Judges the whole shared-key history (after the final reads).
    pub(crate) fn judge_isolation(&mut self) {
        if self.isolation.records.is_empty() || !self.is_running() {
            return;
        }
        let limits = Limits::of(&self.config);
        self.space.shared_operations += self.isolation.records.len() as u64;
        if let Err(violation) = self.judge_partitions(&limits) {
            self.checker.violation.get_or_insert(violation);
            return;
        }
        let txns = self.list_transactions(false);
        self.space.shared_transactions += txns.len() as u64;
        if crate::elle::check(&txns).is_err() {
            // Again with each transaction described, for the report.
            let anomaly = crate::elle::check(&self.list_transactions(true)).expect_err("the same history fails again");
            let key = String::from_utf8_lossy(&anomaly.key).into_owned();
            let what = format!("isolation: {} on shared lists", anomaly.kind);
            let violation = Violation {
                what,
                key,
                expected: "serializable, in real-time order".into(),
                got: anomaly.explanation,
                history: Vec::new(),
            };
            self.checker.violation.get_or_insert(violation);
        }
    }

    /// Each single key, and the group, checked for linearizability.
    fn judge_partitions(&mut self, limits: &Limits) -> Result<(), Violation> {
        let mut partitions: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
        for (op_id, record) in &self.isolation.records {
            let Some(owner) = partition(&record.request) else { continue };
            // A refused EXEC changed nothing, but it ended its client's WATCH.
            let ends_watch = matches!(record.request, Request::Exec { .. });
            if record.outcome != Outcome::NotApplied || ends_watch {
                partitions.entry(owner).or_default().push(*op_id);
            }
        }
        for (owner, op_ids) in partitions {
            let mut entries: Vec<Entry<Observed>> = op_ids.iter().map(|op_id| self.entry(*op_id)).collect();
            let mut op_ids = op_ids;
            if owner.first() == Some(&b'g') {
                // A write whose outcome was never seen may have dirtied watchers in memory
                // apart from when (or whether) its values took effect: its touch is an
                // operation of its own (an EXEC that watched may abort for a write that never
                // became durable; see docs/commands.md).
                // Only in partitions with a WATCH (each touch widens the search).
                let watched = entries.iter().any(|entry| matches!(entry.operation.request, Request::Watch { .. }));
                for index in 0..entries.len() {
                    if watched
                        && entries[index].optional
                        && !matches!(entries[index].operation.request, Request::Watch { .. })
                    {
                        let mut touch = entries[index].clone();
                        touch.operation.touch_only = true;
                        entries.push(touch);
                        op_ids.push(op_ids[index]);
                    }
                }
            }
            let verdict = if owner.first() == Some(&b'g') {
                linearizability::check(&Group { limits: *limits }, Default::default(), &entries)
            } else {
                linearizability::check(&SingleKey { limits: *limits }, Timed::ABSENT, &entries)
            };
            self.space.shared_partitions += 1;
            match verdict {
                Verdict::Linearizable => {}
                Verdict::Undecided => self.space.shared_partitions_undecided += 1,
                Verdict::Violation { stuck, prefix } => {
                    return Err(self.linearizability_violation(&owner, &op_ids, stuck, prefix))
                }
            }
        }
        Ok(())
    }

    fn entry(&self, op_id: u64) -> Entry<Observed> {
        let record = &self.isolation.records[&op_id];
        let optional = !matches!(record.outcome, Outcome::Replied | Outcome::NotApplied);
        let observed = Observed {
            request: record.request.clone(),
            reply: record.reply.clone(),
            window: record.window,
            watcher: record.watcher,
            refused: record.outcome == Outcome::NotApplied,
            touch_only: false,
        };
        Entry { call: record.call, ret: record.ret, operation: observed, optional }
    }

    fn linearizability_violation(&self, owner: &[u8], op_ids: &[u64], stuck: usize, prefix: usize) -> Violation {
        let stuck_op = op_ids[stuck];
        let record = &self.isolation.records[&stuck_op];
        let history = op_ids
            .iter()
            .map(|op_id| {
                let record = &self.isolation.records[op_id];
                format!(
                    "op {op_id} client {} [{}, {}] {:?}: {} -> {}",
                    record.client,
                    record.call,
                    if record.ret == u64::MAX { "open".to_string() } else { record.ret.to_string() },
                    record.outcome,
                    crate::runner::replies::describe_request(&record.request),
                    record.reply.as_ref().map(|reply| format!("{reply:?}")).unwrap_or_else(|| "no reply".into()),
                )
            })
            .collect();
        Violation {
            what: format!(
                "not linearizable: no order of the operations on {} explains op {stuck_op} ({} of {} placed)",
                String::from_utf8_lossy(owner),
                prefix,
                op_ids.len()
            ),
            key: String::from_utf8_lossy(owner).into_owned(),
            expected: "a reply some sequential order allows".into(),
            got: format!("{}: {:?}", crate::runner::replies::describe_request(&record.request), record.reply),
            history,
        }
    }

    /// The list-append requests as transactions.
    fn list_transactions(&self, described: bool) -> Vec<Txn> {
        let mut txns = Vec::new();
        for (op_id, record) in &self.isolation.records {
            if partition(&record.request).is_some() {
                continue;
            }
            let status = match record.outcome {
                Outcome::Replied => TxnStatus::Committed,
                Outcome::NotApplied => TxnStatus::Failed,
                Outcome::Unknown | Outcome::Pending => TxnStatus::Indeterminate,
            };
            let commands = match &record.request {
                Request::Exec { commands } => commands.as_slice(),
                single => std::slice::from_ref(single),
            };
            let replies: Vec<Option<&Reply>> = match (&record.request, &record.reply) {
                (Request::Exec { .. }, Some(Reply::Array(Some(items)))) => items.iter().map(Some).collect(),
                (Request::Exec { .. }, _) => vec![None; commands.len()],
                (_, reply) => vec![reply.as_ref()],
            };
            let mut txn = Txn {
                id: *op_id,
                call: record.call,
                ret: record.ret,
                status,
                micros: Vec::new(),
                refused_tokens: Vec::new(),
                description: if described {
                    format!("op {op_id} (client {}) {}", record.client, describe_list_txn(commands, &replies))
                } else {
                    String::new()
                },
            };
            for (command, reply) in commands.iter().zip(replies.iter().chain(std::iter::repeat(&None))) {
                add_micro(&mut txn, command, *reply, status);
            }
            txns.push(txn);
        }
        txns
    }
}

/// Errors that only injected faults or the engine's limits explain (not a command's own).
fn is_fault_error(text: &str) -> bool {
    ["OOM", "READONLY", "ERR not durable", "ERR I/O", "ERR QuillKV", "ERR too many", "ERR command too large"]
        .iter()
        .any(|prefix| text.starts_with(prefix))
}

/// Whether the request is on the group (`g…` keys), and whether on a single key (`s…`).
pub fn linearizability_kind(request: &Request) -> (bool, bool) {
    match partition(request) {
        Some(owner) if owner.as_slice() == b"g" => (false, true),
        Some(_) => (true, false),
        None => (false, false),
    }
}

/// The linearizability partition of a request: its single key, or the group; `None` for lists.
fn partition(request: &Request) -> Option<Vec<u8>> {
    let mut first = None;
    let commands = match request {
        Request::Exec { commands } => commands.as_slice(),
        single => std::slice::from_ref(single),
    };
    commands[0].any_key(|key| {
        first = Some(key.to_vec());
        true
    });
    match first?.as_slice() {
        [b'g', ..] => Some(b"g".to_vec()),
        key @ [b's', ..] => Some(key.to_vec()),
        _ => None,
    }
}

fn add_micro(txn: &mut Txn, command: &Request, reply: Option<&Reply>, status: TxnStatus) {
    match command {
        Request::Append { key, value } => {
            let token = parse_token(value).expect("the workload's own tokens");
            match (status, reply) {
                (TxnStatus::Committed, Some(Reply::Error(_))) => txn.refused_tokens.push(token),
                _ => txn.micros.push(Micro::Append { key: key.clone(), token }),
            }
        }
        Request::Get { key } => {
            let list = match reply {
                Some(Reply::Bulk(None)) => Some(Vec::new()),
                Some(Reply::Bulk(Some(bytes))) => Some(parse_list(bytes)),
                _ => None,
            };
            txn.micros.push(Micro::Read { key: key.clone(), list });
        }
        other => unreachable!("the list workload sends no {}", other.name()),
    }
}

fn parse_token(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text.strip_suffix(b",").unwrap_or(text)).ok()?.parse().ok()
}

/// A list read back; a piece that is no token becomes token 0, which no append wrote (a
/// garbage read for the checker).
fn parse_list(bytes: &[u8]) -> Vec<u64> {
    let mut list = Vec::with_capacity(bytes.len() / 4);
    for piece in bytes.split(|byte| *byte == b',').filter(|piece| !piece.is_empty()) {
        // Digits by hand: every token of every read passes here.
        let digits = piece.len() <= 19 && piece.iter().all(u8::is_ascii_digit);
        let token =
            if digits { piece.iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')) } else { 0 };
        list.push(token);
    }
    list
}

fn describe_list_txn(commands: &[Request], replies: &[Option<&Reply>]) -> String {
    let parts: Vec<String> = commands
        .iter()
        .zip(replies.iter().chain(std::iter::repeat(&None)))
        .map(|(command, reply)| match (command, reply) {
            (Request::Append { key, value }, _) => {
                format!(
                    "append {} {}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(value.strip_suffix(b",").unwrap_or(value))
                )
            }
            (Request::Get { key }, Some(Reply::Bulk(Some(bytes)))) => {
                let list = parse_list(bytes);
                let shown: Vec<String> = list.iter().rev().take(4).rev().map(u64::to_string).collect();
                format!(
                    "get {} -> [{}{}]",
                    String::from_utf8_lossy(key),
                    if list.len() > 4 { "..," } else { "" },
                    shown.join(",")
                )
            }
            (Request::Get { key }, Some(Reply::Bulk(None))) => format!("get {} -> []", String::from_utf8_lossy(key)),
            (Request::Get { key }, _) => format!("get {} -> ?", String::from_utf8_lossy(key)),
            (other, _) => other.name().to_string(),
        })
        .collect();
    format!("[{}]", parts.join("; "))
}
