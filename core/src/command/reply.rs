//! Replies, in the shape of RESP2 so the server can encode them directly.

use std::borrow::Cow;

/// A reply to one client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK\r\n`; the fixed texts (OK, QUEUED, PONG) are borrowed, not allocated.
    Simple(Cow<'static, str>),
    /// `-ERR message\r\n`; the text includes its prefix word (`ERR`, `WRONGTYPE`, …).
    Error(String),
    /// `:42\r\n`
    Integer(i64),
    /// `$3\r\nfoo\r\n`, or `$-1\r\n` for `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n…`, or `*-1\r\n` for `None`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}
