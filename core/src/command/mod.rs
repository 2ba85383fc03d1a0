//! Client requests: parsing a command's arguments into a [`Request`], with Redis's errors.

pub(crate) mod parse;
mod reply;
pub mod table;

pub use parse::{parse_request, parse_request_owned};
pub use reply::Reply;

/// A binary-safe key or value.
pub type Bytes = Vec<u8>;

/// When SET writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// A command the engine executes. Connection-level commands (AUTH, HELLO, CLIENT, …) belong to
/// the server and never reach the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Get { key: Bytes },
    Set { key: Bytes, value: Bytes, condition: SetCondition },
    Del { keys: Vec<Bytes> },
    Exists { keys: Vec<Bytes> },
    MGet { keys: Vec<Bytes> },
    MSet { pairs: Vec<(Bytes, Bytes)> },
    IncrBy { key: Bytes, delta: i64 },
    Append { key: Bytes, value: Bytes },
    StrLen { key: Bytes },
    DbSize,
    Ping { message: Option<Bytes> },
    FlushAll,
}

impl Request {
    /// Whether the request changes the store (and so is refused when the engine is read-only).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Set { .. }
                | Request::Del { .. }
                | Request::MSet { .. }
                | Request::IncrBy { .. }
                | Request::Append { .. }
                | Request::FlushAll
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
        }
    }
}
