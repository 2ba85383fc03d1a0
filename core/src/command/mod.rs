//! Client requests: parsing a command's arguments into a [`Request`], with Redis's errors.

pub mod float;
pub(crate) mod parse;
pub mod pattern;
mod reply;
pub mod table;

pub use parse::{parse_command, parse_request, parse_request_owned};
pub use reply::Reply;

/// A binary-safe key or value.
pub type Bytes = Vec<u8>;

/// How the server turns the engine's reply into the reply of the command the client sent, for
/// commands the server maps onto an engine request (SETNX onto SET NX, TYPE and TOUCH onto
/// EXISTS, GETRANGE onto GET). Error replies pass through unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplyShape {
    #[default]
    AsIs,
    /// SETNX: OK becomes 1, nil becomes 0.
    SetAsInteger,
    /// TYPE: a count of 1 becomes `string`, 0 becomes `none`.
    ExistsAsType,
    /// GETRANGE: the value's bytes from `start` to `end`, inclusive, Redis's way (negative
    /// indexes count from the end; a missing key is the empty string).
    Range { start: i64, end: i64 },
    /// This error, whatever the engine replied (a rejected EXEC, sent as UNWATCH).
    ErrorInstead(&'static str),
}

impl ReplyShape {
    pub fn apply(self, reply: Reply) -> Reply {
        match (self, reply) {
            (ReplyShape::SetAsInteger, Reply::Simple(_)) => Reply::Integer(1),
            (ReplyShape::SetAsInteger, Reply::Bulk(None)) => Reply::Integer(0),
            (ReplyShape::ExistsAsType, Reply::Integer(count)) => {
                Reply::Simple(if count > 0 { "string" } else { "none" }.into())
            }
            (ReplyShape::ErrorInstead(text), _) => Reply::Error(text.to_string()),
            (ReplyShape::Range { start, end }, Reply::Bulk(value)) => {
                Reply::Bulk(Some(byte_range(&value.unwrap_or_default(), start, end)))
            }
            (_, reply) => reply,
        }
    }
}

/// GETRANGE's slice, as Redis's `getrangeCommand` computes it.
fn byte_range(value: &[u8], start: i64, end: i64) -> Vec<u8> {
    let length = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Vec::new();
    }
    let start = if start < 0 { length + start } else { start }.max(0);
    let end = if end < 0 { length + end } else { end }.max(0).min(length - 1);
    if start > end || length == 0 {
        return Vec::new();
    }
    value[start as usize..=end as usize].to_vec()
}

/// When SET writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// An expiry time as a command gives it, in milliseconds (seconds are converted at parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryTime {
    /// From the moment the command runs (EX, PX, EXPIRE, PEXPIRE, SETEX, PSETEX).
    In(i64),
    /// A Unix time (EXAT, PXAT, EXPIREAT, PEXPIREAT).
    At(i64),
}

impl ExpiryTime {
    /// The Unix time in milliseconds, with the command running at `now_ms`; `None` where Redis
    /// refuses it as an invalid expire time (the sum overflows).
    pub fn resolve(self, now_ms: u64) -> Option<i64> {
        match self {
            ExpiryTime::In(milliseconds) => milliseconds.checked_add(i64::try_from(now_ms).ok()?),
            ExpiryTime::At(unix_ms) => Some(unix_ms),
        }
    }
}

/// What SET (with EX, PX, EXAT, PXAT or KEEPTTL), SETEX and PSETEX do to the expiry time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// KEEPTTL: the key keeps the expiry time it had.
    Keep,
    At(ExpiryTime),
}

/// EXPIRE's NX, XX, GT and LT. A key without an expiry time counts as expiring never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// NX: only if the key has no expiry time.
    IfNone,
    /// XX: only if it has one.
    IfSome,
    /// GT: only if the new time is later.
    IfLater,
    /// LT: only if the new time is earlier.
    IfEarlier,
    /// XX with LT: only if the key has an expiry time and the new one is earlier.
    IfEarlierExisting,
}

/// What GETEX does to the expiry time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetExChange {
    Persist,
    At(ExpiryTime),
    /// The time was not an integer: the error Redis gives once it finds the key.
    NotInteger,
    /// The time was 0, negative or too large: likewise.
    InvalidTime,
}

/// A command the engine executes. Connection-level commands (AUTH, HELLO, CLIENT, …) belong to
/// the server and never reach the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Get {
        key: Bytes,
    },
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
    },
    Del {
        keys: Vec<Bytes>,
    },
    Exists {
        keys: Vec<Bytes>,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
    },
    IncrBy {
        key: Bytes,
        delta: i64,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    StrLen {
        key: Bytes,
    },
    DbSize,
    Ping {
        message: Option<Bytes>,
    },
    FlushAll,
    /// GETSET, and SET with GET: replies the old value; writes only if `condition` holds.
    GetSet {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
    },
    /// GETDEL: replies the value and deletes the key.
    GetDel {
        key: Bytes,
    },
    /// SETRANGE: overwrites from `offset`, padding with zero bytes; replies the new length.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// MSETNX: sets every pair, atomically, only if none of the keys exists; replies 1 or 0.
    MSetNx {
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// SCAN: the keys whose scan positions lie from `cursor` on, about `count` slots' worth,
    /// that match `pattern`; `only_type` keeps keys of that type (only `string` keeps any).
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: u64,
        only_type: Option<Bytes>,
    },
    /// KEYS: every key matching the pattern.
    Keys {
        pattern: Bytes,
    },
    /// RANDOMKEY: some key, or nil when there is none.
    RandomKey,
    /// EXEC of a MULTI transaction: the commands run one after another with nothing between
    /// them, and their writes go into one batch, so all or none survive a crash. Only
    /// commands on named keys (see [`Request::allowed_in_transaction`]).
    Exec {
        commands: Vec<Request>,
    },
    /// WATCH: the client's next EXEC runs only if none of these keys changes before it.
    Watch {
        keys: Vec<Bytes>,
    },
    /// UNWATCH (and DISCARD): forgets the client's watched keys.
    Unwatch,
    /// RENAME (`only_if_absent`: RENAMENX): moves the value, in one batch.
    Rename {
        source: Bytes,
        destination: Bytes,
        only_if_absent: bool,
    },
    /// COPY: copies the value, overwriting the destination only with REPLACE.
    Copy {
        source: Bytes,
        destination: Bytes,
        replace: bool,
    },
    /// SET with an expiry option (EX, PX, EXAT, PXAT, KEEPTTL), SETEX and PSETEX; with `get`,
    /// replies the old value as SET … GET does. `name` is the command, for the error text.
    SetExpiring {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        expiry: SetExpiry,
        get: bool,
        name: &'static str,
    },
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: replies 1 if the time was set (or the key deleted,
    /// for a time already past), 0 if the key is missing or the condition failed.
    Expire {
        key: Bytes,
        time: ExpiryTime,
        condition: ExpireCondition,
        name: &'static str,
    },
    /// PERSIST: removes the expiry time; replies 1 if there was one.
    Persist {
        key: Bytes,
    },
    /// GETEX: the value, changing its expiry time if asked.
    GetEx {
        key: Bytes,
        change: Option<GetExChange>,
    },
    /// INCRBYFLOAT: the increment is read (as Redis reads floats) when the command runs, after
    /// the current value, so the errors come in Redis's order.
    IncrByFloat {
        key: Bytes,
        increment: Bytes,
    },
    /// TTL, PTTL, EXPIRETIME, PEXPIRETIME.
    Ttl {
        key: Bytes,
        milliseconds: bool,
        absolute: bool,
    },
}

impl Request {
    /// Whether the request may be queued inside MULTI: commands on named keys, and PING.
    pub fn allowed_in_transaction(&self) -> bool {
        !matches!(
            self,
            Request::FlushAll
                | Request::DbSize
                | Request::Scan { .. }
                | Request::Keys { .. }
                | Request::RandomKey
                | Request::Exec { .. }
                | Request::Watch { .. }
        )
    }

    /// The key of a read-modify-write: a command that needs the key's current value (and
    /// expiry time) to compute its effect. The one list of them: the engine's dispatch, its
    /// transactions and the read path all ask here.
    pub fn read_modify_write_key(&self) -> Option<&[u8]> {
        match self {
            Request::IncrBy { key, .. }
            | Request::Append { key, .. }
            | Request::GetSet { key, .. }
            | Request::GetDel { key }
            | Request::SetRange { key, .. }
            | Request::SetExpiring { key, .. }
            | Request::Expire { key, .. }
            | Request::Persist { key }
            | Request::GetEx { key, .. }
            | Request::IncrByFloat { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Calls `test` on each key the request names, in order, until one returns true; whether
    /// one did. An EXEC's commands are requests of their own: it names none. No allocation.
    pub fn any_key<'a>(&'a self, mut test: impl FnMut(&'a [u8]) -> bool) -> bool {
        match self {
            Request::Get { key }
            | Request::StrLen { key }
            | Request::Set { key, .. }
            | Request::IncrBy { key, .. }
            | Request::Append { key, .. }
            | Request::GetSet { key, .. }
            | Request::GetDel { key }
            | Request::SetRange { key, .. }
            | Request::SetExpiring { key, .. }
            | Request::Expire { key, .. }
            | Request::Persist { key }
            | Request::GetEx { key, .. }
            | Request::IncrByFloat { key, .. }
            | Request::Ttl { key, .. } => test(key),
            Request::Del { keys } | Request::Exists { keys } | Request::MGet { keys } | Request::Watch { keys } => {
                keys.iter().any(|key| test(key))
            }
            Request::MSet { pairs } | Request::MSetNx { pairs } => pairs.iter().any(|(key, _)| test(key)),
            Request::Rename { source, destination, .. } | Request::Copy { source, destination, .. } => {
                test(source) || test(destination)
            }
            Request::DbSize
            | Request::Ping { .. }
            | Request::FlushAll
            | Request::Scan { .. }
            | Request::Keys { .. }
            | Request::RandomKey
            | Request::Exec { .. }
            | Request::Unwatch => false,
        }
    }

    /// Whether the request changes the store (and so is refused when the engine is read-only).
    pub fn is_write(&self) -> bool {
        if let Request::Exec { commands } = self {
            return commands.iter().any(Request::is_write);
        }
        matches!(
            self,
            Request::Set { .. }
                | Request::Del { .. }
                | Request::MSet { .. }
                | Request::IncrBy { .. }
                | Request::Append { .. }
                | Request::FlushAll
                | Request::GetSet { .. }
                | Request::GetDel { .. }
                | Request::SetRange { .. }
                | Request::MSetNx { .. }
                | Request::Rename { .. }
                | Request::Copy { .. }
                | Request::SetExpiring { .. }
                | Request::Expire { .. }
                | Request::Persist { .. }
                | Request::GetEx { change: Some(_), .. }
                | Request::IncrByFloat { .. }
        )
    }

    /// The command's name in lower case, for errors and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Get { .. } => "get",
            Request::Set { .. } => "set",
            Request::Del { .. } => "del",
            Request::Exists { .. } => "exists",
            Request::MGet { .. } => "mget",
            Request::MSet { .. } => "mset",
            Request::IncrBy { .. } => "incrby",
            Request::Append { .. } => "append",
            Request::StrLen { .. } => "strlen",
            Request::DbSize => "dbsize",
            Request::Ping { .. } => "ping",
            Request::FlushAll => "flushall",
            Request::GetSet { .. } => "getset",
            Request::GetDel { .. } => "getdel",
            Request::SetRange { .. } => "setrange",
            Request::MSetNx { .. } => "msetnx",
            Request::Scan { .. } => "scan",
            Request::Keys { .. } => "keys",
            Request::RandomKey => "randomkey",
            Request::Exec { .. } => "exec",
            Request::Watch { .. } => "watch",
            Request::Unwatch => "unwatch",
            Request::Rename { only_if_absent: false, .. } => "rename",
            Request::Rename { only_if_absent: true, .. } => "renamenx",
            Request::Copy { .. } => "copy",
            Request::SetExpiring { name, .. } | Request::Expire { name, .. } => name,
            Request::Persist { .. } => "persist",
            Request::GetEx { .. } => "getex",
            Request::IncrByFloat { .. } => "incrbyfloat",
            Request::Ttl { milliseconds: false, absolute: false, .. } => "ttl",
            Request::Ttl { milliseconds: true, absolute: false, .. } => "pttl",
            Request::Ttl { milliseconds: false, absolute: true, .. } => "expiretime",
            Request::Ttl { milliseconds: true, absolute: true, .. } => "pexpiretime",
        }
    }
}
