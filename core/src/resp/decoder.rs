//! Incremental RESP2 request decoder (multibulk and inline requests).
//!
//! The decoder owns its input buffer and keeps a resume point inside the
//! request being parsed, so bytes arriving one at a time are still examined a
//! bounded number of times each: total work stays linear in the input.

use std::ops::Range;

use super::limits::Limits;
use super::whole_frame::{parse_whole_frame, Arguments};
use crate::command::Reply;

/// One decoded request: its arguments, binary-safe, command name first.
pub type Command = Vec<Vec<u8>>;

/// A decoded request: lent from the decoder's buffer (a multibulk request that arrived whole,
/// the common case: no copy, no allocation), or owned (one assembled from pieces, or inline).
#[derive(Debug)]
pub enum Frame<'a> {
    Lent(Arguments<'a>),
    Owned(Command),
}

/// Cap on argument slots reserved up front: the count in `*N` is untrusted,
/// so the vector only grows further as arguments actually arrive.
const ARGS_PREALLOC_MAX: usize = 1024;

/// Buffers above this capacity are shrunk once mostly empty, so one large
/// request does not pin its memory for the rest of the connection.
const SHRINK_FLOOR: usize = 64 * 1024;

/// A malformed or oversized request. The connection is unusable afterwards:
/// the server replies with [`ProtocolError::to_reply`] and closes it, as
/// Redis does. Texts are Redis's own (`networking.c`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*N` count that is not an integer or exceeds `i32::MAX`.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `*N` count above [`Limits::arguments_max`] (Redis 6 used the same text
    /// for its 1M-argument limit).
    #[error("Protocol error: invalid multibulk length")]
    TooManyArguments,
    /// `$N` length that is not a non-negative integer.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// `$N` length above [`Limits::bulk_bytes_max`], rejected before any of
    /// the payload is buffered.
    #[error("Protocol error: invalid bulk length")]
    BulkTooLarge,
    /// An argument of a multibulk request did not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", printable(*.0))]
    ExpectedDollar(u8),
    /// Inline request line longer than [`Limits::inline_bytes_max`].
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// `*N` line longer than [`Limits::inline_bytes_max`].
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCountString,
    /// `$N` line longer than [`Limits::inline_bytes_max`].
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCountString,
    /// Inline request with an unterminated quote, or a closing quote not
    /// followed by a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// More than [`Limits::query_buffer_bytes_max`] bytes held for incomplete
    /// commands. Redis closes such clients without replying; see
    /// [`ProtocolError::sends_reply`].
    #[error("Protocol error: query buffer limit exceeded")]
    QueryBufferExceeded,
}

/// Renders the offending byte like Redis's `%c`, with CR/LF turned into
/// spaces (as `addReplyErrorFormat` does) so the reply stays one line.
fn printable(byte: u8) -> char {
    match byte {
        b'\r' | b'\n' => ' ',
        other => char::from(other),
    }
}

impl ProtocolError {
    /// Error reply text, without the leading `-`.
    pub fn to_reply_text(&self) -> String {
        format!("ERR {self}")
    }

    /// Error reply to send before closing the connection.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(self.to_reply_text())
    }

    /// Whether Redis answers this error before closing; it closes silently
    /// when the query buffer limit is hit.
    pub fn sends_reply(&self) -> bool {
        !matches!(self, Self::QueryBufferExceeded)
    }
}

/// Incremental request parser; feed it bytes, pull complete commands out.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Received bytes; `buf[..pos]` is consumed and awaits compaction.
    buf: Vec<u8>,
    pos: usize,
    state: State,
    /// Set on the first error; every later call reports it again.
    poisoned: Option<ProtocolError>,
    /// Bytes looked at by scans and copies, to prove parsing is linear.
    bytes_examined: usize,
    /// The argument ranges of the request last lent (reused: no allocation per request).
    ranges: Vec<Range<usize>>,
}

/// Where the decoder stands inside the current request. `scanned` counts
/// bytes after `pos` already known not to hold the awaited terminator.
#[derive(Debug)]
enum State {
    /// Between requests: the next byte picks inline or multibulk.
    Idle,
    /// Inside an inline line, awaiting `\n`.
    Inline { scanned: usize },
    /// Inside a `*N` line, awaiting `\r`.
    Count { scanned: usize },
    /// Reading the arguments of a multibulk request.
    Args(Multibulk),
}

/// Partially read multibulk request.
#[derive(Debug)]
struct Multibulk {
    args: Vec<Vec<u8>>,
    remaining: usize,
    /// Sum of `args` lengths, counted against the query buffer limit.
    arg_bytes: usize,
    bulk: Bulk,
}

/// Position inside the next argument of a multibulk request.
#[derive(Clone, Copy, Debug)]
enum Bulk {
    /// Inside a `$N` line, awaiting `\r`.
    Header { scanned: usize },
    /// Awaiting `len` payload bytes plus the two terminator bytes.
    Payload { len: usize },
}

/// Outcome of one parsing step.
enum Step {
    /// State advanced; try again.
    Progress,
    /// More input is needed.
    Pending,
    /// A command is complete.
    Done(Command),
}

/// Outcome of searching for a line terminator.
enum Scan {
    Found(usize),
    Partial(usize),
    TooLong,
}

/// Outcome of reading a `\r`-terminated header line.
enum Line {
    Complete(usize),
    Partial(usize),
}

impl State {
    fn arg_bytes(&self) -> usize {
        match self {
            State::Args(multibulk) => multibulk.arg_bytes,
            _ => 0,
        }
    }
}

impl Multibulk {
    fn new(count: usize) -> Self {
        Self {
            args: Vec::with_capacity(count.min(ARGS_PREALLOC_MAX)),
            remaining: count,
            arg_bytes: 0,
            bulk: Bulk::Header { scanned: 0 },
        }
    }

    fn push(&mut self, arg: Vec<u8>) {
        self.arg_bytes += arg.len();
        self.remaining = self.remaining.saturating_sub(1);
        self.args.push(arg);
        self.bulk = Bulk::Header { scanned: 0 };
    }
}

impl Decoder {
    /// Creates a decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            pos: 0,
            state: State::Idle,
            poisoned: None,
            bytes_examined: 0,
            ranges: Vec::new(),
        }
    }

    /// Appends received bytes. Call [`Decoder::next_command`] until it returns
    /// `Ok(None)` after each feed: the query buffer limit is checked here,
    /// against bytes not yet returned as commands, so the decoder never holds
    /// more than that limit. Bytes fed after an error are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.poisoned.is_some() {
            return;
        }
        let held = self.buffered_bytes().saturating_add(bytes.len());
        if held > self.limits.query_buffer_bytes_max {
            self.poison(ProtocolError::QueryBufferExceeded);
            return;
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete command, `Ok(None)` if only part of one has
    /// arrived, or the error that poisoned the decoder (again on every call).
    pub fn next_command(&mut self) -> Result<Option<Command>, ProtocolError> {
        if let Some(err) = &self.poisoned {
            return Err(err.clone());
        }
        match self.advance() {
            Ok(found) => {
                self.compact();
                Ok(found)
            }
            Err(err) => {
                self.poison(err.clone());
                Err(err)
            }
        }
    }

    /// Like [`Decoder::next_command`], but a multibulk request that arrived whole (checked only
    /// between requests) is lent from the buffer instead of copied out. Anything the fast path
    /// does not take, it leaves untouched for the incremental parser: the same requests are
    /// accepted and the same errors reported either way.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ProtocolError> {
        #[cfg(debug_assertions)]
        let mut declined: Option<Vec<u8>> = None;
        if self.poisoned.is_none() && matches!(self.state, State::Idle) {
            self.compact();
            let unparsed = self.buf.get(self.pos..).unwrap_or_default();
            if let Some(length) = parse_whole_frame(unparsed, &self.limits, &mut self.ranges, &mut self.bytes_examined)
            {
                let start = self.pos;
                self.pos += length;
                let bytes = self.buf.get(start..self.pos).unwrap_or_default();
                return Ok(Some(Frame::Lent(Arguments::new(bytes, &self.ranges))));
            }
            #[cfg(debug_assertions)]
            {
                // Bounded, so a large request arriving in pieces is not copied in debug builds.
                let unparsed = self.buf.get(self.pos..).unwrap_or_default();
                declined = (unparsed.len() <= DECLINED_CHECK_BYTES_MAX).then(|| unparsed.to_vec());
            }
        }
        let command = self.next_command()?;
        #[cfg(debug_assertions)]
        if let (Some(unparsed), Some(command)) = (&declined, &command) {
            declined_whole_request(unparsed, command);
        }
        Ok(command.map(Frame::Owned))
    }

    /// Bytes held for commands not yet returned: unparsed input plus the
    /// arguments already decoded for the command in progress.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.pos + self.state.arg_bytes()
    }

    /// Whether an error has ended this connection's protocol stream.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Runs steps until a command completes or input runs out. Each step
    /// either consumes bytes or moves to a state that will, so it cannot spin.
    fn advance(&mut self) -> Result<Option<Command>, ProtocolError> {
        loop {
            let step = match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => self.start_request(),
                State::Inline { scanned } => self.step_inline(scanned)?,
                State::Count { scanned } => self.step_count(scanned)?,
                State::Args(multibulk) => self.step_args(multibulk)?,
            };
            match step {
                Step::Progress => {}
                Step::Pending => return Ok(None),
                Step::Done(command) => return Ok(Some(command)),
            }
        }
    }

    /// Picks the request type from its first byte, as Redis does.
    fn start_request(&mut self) -> Step {
        match self.buf.get(self.pos) {
            None => Step::Pending,
            Some(b'*') => {
                self.state = State::Count { scanned: 0 };
                Step::Progress
            }
            Some(_) => {
                self.state = State::Inline { scanned: 0 };
                Step::Progress
            }
        }
    }

    /// Parses an inline request once its `\n` has arrived. Lines with no
    /// words (empty or blank) produce no command, as in Redis.
    fn step_inline(&mut self, scanned: usize) -> Result<Step, ProtocolError> {
        let end = match self.scan(b'\n', scanned, self.limits.inline_bytes_max) {
            Scan::TooLong => return Err(ProtocolError::TooBigInlineRequest),
            Scan::Partial(scanned) => {
                self.state = State::Inline { scanned };
                return Ok(Step::Pending);
            }
            Scan::Found(end) => end,
        };
        let line = self.buf.get(self.pos..self.pos + end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args = split_inline(line)?;
        self.bytes_examined += line.len();
        self.pos += end + 1;
        Ok(if args.is_empty() { Step::Progress } else { Step::Done(args) })
    }

    /// Parses `*N\r\n`. Counts of zero or less are skipped, as Redis does.
    fn step_count(&mut self, scanned: usize) -> Result<Step, ProtocolError> {
        let end = match self.header_line(scanned, ProtocolError::TooBigMultibulkCountString)? {
            Line::Partial(scanned) => {
                self.state = State::Count { scanned };
                return Ok(Step::Pending);
            }
            Line::Complete(end) => end,
        };
        let count = parse_redis_int(self.header_digits(end))
            .filter(|&count| count <= i64::from(i32::MAX))
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        self.pos += end + 2;
        let Ok(count) = usize::try_from(count) else {
            return Ok(Step::Progress);
        };
        if count == 0 {
            return Ok(Step::Progress);
        }
        if count > self.limits.arguments_max {
            return Err(ProtocolError::TooManyArguments);
        }
        self.state = State::Args(Multibulk::new(count));
        Ok(Step::Progress)
    }

    /// Advances through one `$N` header or payload of a multibulk request.
    fn step_args(&mut self, mut multibulk: Multibulk) -> Result<Step, ProtocolError> {
        let progressed = match multibulk.bulk {
            Bulk::Header { scanned } => self.read_bulk_header(&mut multibulk, scanned)?,
            Bulk::Payload { len } => self.read_bulk_payload(&mut multibulk, len),
        };
        if multibulk.remaining == 0 {
            return Ok(Step::Done(multibulk.args));
        }
        self.state = State::Args(multibulk);
        Ok(if progressed { Step::Progress } else { Step::Pending })
    }

    /// Parses `$N\r\n`, rejecting a wrong first byte as soon as it arrives
    /// and an oversized length before any payload is buffered.
    fn read_bulk_header(&mut self, multibulk: &mut Multibulk, scanned: usize) -> Result<bool, ProtocolError> {
        match self.buf.get(self.pos) {
            None => return Ok(false),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedDollar(other)),
        }
        let end = match self.header_line(scanned, ProtocolError::TooBigBulkCountString)? {
            Line::Partial(scanned) => {
                multibulk.bulk = Bulk::Header { scanned };
                return Ok(false);
            }
            Line::Complete(end) => end,
        };
        let len = parse_redis_int(self.header_digits(end))
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(ProtocolError::InvalidBulkLength)?;
        if len > self.limits.bulk_bytes_max {
            return Err(ProtocolError::BulkTooLarge);
        }
        self.pos += end + 2;
        multibulk.bulk = Bulk::Payload { len };
        Ok(true)
    }

    /// Copies a bulk payload once all of it and its terminator have arrived;
    /// until then only lengths are compared, so waiting costs nothing per
    /// byte. Like Redis, the two bytes after the payload are not inspected.
    fn read_bulk_payload(&mut self, multibulk: &mut Multibulk, len: usize) -> bool {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(frame) = len.checked_add(2).filter(|&frame| frame <= rest.len()) else {
            return false;
        };
        multibulk.push(rest.get(..len).unwrap_or_default().to_vec());
        self.bytes_examined += len;
        self.pos += frame;
        true
    }

    /// Finds the `\r` ending a `*N`/`$N` line plus the byte after it (which
    /// Redis skips unchecked), resuming after `scanned` bytes.
    fn header_line(&mut self, scanned: usize, too_long: ProtocolError) -> Result<Line, ProtocolError> {
        match self.scan(b'\r', scanned, self.limits.inline_bytes_max) {
            Scan::TooLong => Err(too_long),
            Scan::Partial(scanned) => Ok(Line::Partial(scanned)),
            Scan::Found(end) if end + 2 > self.buf.len() - self.pos => Ok(Line::Partial(end)),
            Scan::Found(end) => Ok(Line::Complete(end)),
        }
    }

    /// The number in a header line of length `end`, after its type byte.
    fn header_digits(&self, end: usize) -> &[u8] {
        self.buf.get(self.pos + 1..self.pos + end).unwrap_or_default()
    }

    /// Searches the unparsed bytes for `needle`, skipping the `scanned` bytes
    /// an earlier call already examined and looking at most `limit + 1` bytes
    /// in, so an over-long line is rejected without reading all of it.
    fn scan(&mut self, needle: u8, scanned: usize, limit: usize) -> Scan {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let window = rest.len().min(limit.saturating_add(1));
        let start = scanned.min(window);
        let unseen = rest.get(start..window).unwrap_or_default();
        match unseen.iter().position(|&byte| byte == needle) {
            Some(offset) => {
                self.bytes_examined += offset + 1;
                Scan::Found(start + offset)
            }
            None => {
                self.bytes_examined += unseen.len();
                if window > limit {
                    Scan::TooLong
                } else {
                    Scan::Partial(window)
                }
            }
        }
    }

    /// Drops the consumed prefix once it is at least as long as what
    /// remains, so each byte is moved at most once on average, and returns
    /// memory left over from a large request.
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let capacity = self.buf.capacity();
        if capacity > SHRINK_FLOOR && capacity / 4 > self.buf.len() {
            self.buf.shrink_to((self.buf.len() * 2).max(SHRINK_FLOOR));
        }
    }

    /// Records the error and frees everything buffered.
    fn poison(&mut self, err: ProtocolError) {
        self.poisoned = Some(err);
        self.buf = Vec::new();
        self.pos = 0;
        self.state = State::Idle;
    }
}

/// The fast path's promise, checked in debug builds: a request it declined and the incremental
/// parser then decoded at once, from the same bytes, was not a whole request in the canonical
/// form every client library sends (which the fast path must lend).
#[cfg(debug_assertions)]
const DECLINED_CHECK_BYTES_MAX: usize = 64 * 1024;

#[cfg(debug_assertions)]
fn declined_whole_request(unparsed: &[u8], command: &Command) {
    if command.len() > super::whole_frame::WHOLE_FRAME_ARGUMENTS_MAX {
        return;
    }
    let mut canonical = Vec::new();
    super::encode_command(command, &mut canonical);
    debug_assert!(!unparsed.starts_with(&canonical), "the fast path declined a whole request");
}

/// Parses a decimal integer exactly like Redis's `string2ll`: optional `-`,
/// no `+`, no leading zeros (nor `-0`), no spaces, no overflow.
pub(super) fn parse_redis_int(text: &[u8]) -> Option<i64> {
    let (negative, body) = match text.split_first()? {
        (b'-', body) => (true, body),
        _ => (false, text),
    };
    match body {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &byte in body {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// Splits an inline request line into words following Redis's
/// `sdssplitargs`: whitespace-separated words, `"..."` with `\n \r \t \b \a`
/// and `\xHH` escapes, `'...'` with only `\'`. A NUL byte ends the line, as
/// it ends the C string Redis parses.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        while is_c_space(byte_at(line, at)) {
            at += 1;
        }
        if byte_at(line, at) == 0 {
            return Ok(args);
        }
        let (arg, next) = split_word(line, at)?;
        args.push(arg);
        at = next;
    }
}

/// Quoting mode while reading one inline word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

/// Reads one word starting at `at`; returns it and the index after it.
fn split_word(line: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut word = Vec::new();
    let mut quote = Quote::None;
    loop {
        let byte = byte_at(line, at);
        match quote {
            Quote::None => match byte {
                b' ' | b'\n' | b'\r' | b'\t' | 0 => return Ok((word, at)),
                b'"' => quote = Quote::Double,
                b'\'' => quote = Quote::Single,
                other => word.push(other),
            },
            Quote::Double | Quote::Single if byte == 0 => {
                return Err(ProtocolError::UnbalancedQuotes);
            }
            Quote::Double => match double_quoted(line, at) {
                Quoted::Byte(value, width) => {
                    word.push(value);
                    at += width - 1;
                }
                Quoted::Close => return close_quote(line, at, word),
            },
            Quote::Single => match single_quoted(line, at) {
                Quoted::Byte(value, width) => {
                    word.push(value);
                    at += width - 1;
                }
                Quoted::Close => return close_quote(line, at, word),
            },
        }
        at += 1;
    }
}

/// One step inside a quoted word.
enum Quoted {
    /// A byte of the word and how many input bytes produced it.
    Byte(u8, usize),
    /// The closing quote.
    Close,
}

/// Decodes the byte(s) at `at` inside double quotes.
fn double_quoted(line: &[u8], at: usize) -> Quoted {
    let (byte, next) = (byte_at(line, at), byte_at(line, at + 1));
    if byte == b'"' {
        return Quoted::Close;
    }
    if byte != b'\\' || next == 0 {
        return Quoted::Byte(byte, 1);
    }
    let hex = (hex_value(byte_at(line, at + 2)), hex_value(byte_at(line, at + 3)));
    if let (b'x', (Some(high), Some(low))) = (next, hex) {
        return Quoted::Byte((high << 4) | low, 4);
    }
    let unescaped = match next {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    };
    Quoted::Byte(unescaped, 2)
}

/// Decodes the byte(s) at `at` inside single quotes, where only `\'` escapes.
fn single_quoted(line: &[u8], at: usize) -> Quoted {
    match (byte_at(line, at), byte_at(line, at + 1)) {
        (b'\\', b'\'') => Quoted::Byte(b'\'', 2),
        (b'\'', _) => Quoted::Close,
        (byte, _) => Quoted::Byte(byte, 1),
    }
}

/// Ends a quoted word; Redis requires whitespace or end of line after it.
fn close_quote(line: &[u8], at: usize, word: Vec<u8>) -> Result<(Vec<u8>, usize), ProtocolError> {
    let after = byte_at(line, at + 1);
    if after != 0 && !is_c_space(after) {
        return Err(ProtocolError::UnbalancedQuotes);
    }
    Ok((word, at + 1))
}

/// The byte at `at`, or NUL past the end, mirroring C string access.
fn byte_at(line: &[u8], at: usize) -> u8 {
    line.get(at).copied().unwrap_or(0)
}

/// C `isspace` in the C locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode_reply;
    use proptest::prelude::*;

    type Outcome = (Vec<Command>, Option<ProtocolError>);

    fn args(words: &[&[u8]]) -> Command {
        words.iter().map(|word| word.to_vec()).collect()
    }

    /// Pulls commands until the decoder needs input or fails, through `next_frame` (the
    /// server's path, lending whole requests) or `next_command` alone.
    fn drain_with(decoder: &mut Decoder, out: &mut Outcome, lend: bool) {
        loop {
            let next = if lend {
                decoder.next_frame().map(|frame| {
                    frame.map(|frame| match frame {
                        Frame::Lent(arguments) => arguments.to_command(),
                        Frame::Owned(command) => command,
                    })
                })
            } else {
                decoder.next_command()
            };
            match next {
                Ok(Some(command)) => out.0.push(command),
                Ok(None) => return,
                Err(err) => {
                    out.1 = Some(err);
                    return;
                }
            }
        }
    }

    fn drain(decoder: &mut Decoder, out: &mut Outcome) {
        drain_with(decoder, out, true);
    }

    /// Feeds `chunks` in order, draining after each, until an error.
    fn run_chunks(limits: Limits, chunks: &[&[u8]]) -> Outcome {
        run_chunks_with(limits, chunks, true)
    }

    fn run_chunks_with(limits: Limits, chunks: &[&[u8]], lend: bool) -> Outcome {
        let mut decoder = Decoder::new(limits);
        let mut out = (Vec::new(), None);
        for chunk in chunks {
            decoder.feed(chunk);
            drain_with(&mut decoder, &mut out, lend);
            if out.1.is_some() {
                break;
            }
        }
        out
    }

    fn run(input: &[u8]) -> Outcome {
        run_chunks(Limits::default(), &[input])
    }

    fn error_of(limits: Limits, input: &[u8]) -> ProtocolError {
        match run_chunks(limits, &[input]).1 {
            Some(err) => err,
            None => panic!("no error for {input:?}"),
        }
    }

    fn small_limits() -> Limits {
        Limits { bulk_bytes_max: 16, arguments_max: 4, inline_bytes_max: 16, query_buffer_bytes_max: 64 }
    }

    /// Cuts `data` at the given points (taken modulo its length).
    fn split_at<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (data.len() + 1)).collect();
        points.sort_unstable();
        points.push(data.len());
        let mut start = 0;
        let mut chunks = Vec::new();
        for point in points {
            chunks.push(&data[start..point]);
            start = point;
        }
        chunks
    }

    fn encode_command(command: &Command, out: &mut Vec<u8>) {
        let items = command.iter().map(|arg| Reply::Bulk(Some(arg.clone()))).collect();
        encode_reply(&Reply::Array(Some(items)), out);
    }

    #[test]
    fn multibulk_command() {
        let out = run(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
        assert_eq!(out, (vec![args(&[b"SET", b"k", b"value"])], None));
    }

    #[test]
    fn multibulk_is_binary_safe() {
        let out = run(b"*2\r\n$0\r\n\r\n$5\r\n\r\n\0*$\r\n");
        assert_eq!(out, (vec![args(&[b"", b"\r\n\0*$"])], None));
    }

    #[test]
    fn empty_and_null_multibulk_are_skipped() {
        let out = run(b"*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(out, (vec![args(&[b"PING"])], None));
    }

    #[test]
    fn inline_commands() {
        let out = run(b"PING\r\nSET  k\tv\n\r\n\n   \r\nGET k\n");
        let expected = vec![args(&[b"PING"]), args(&[b"SET", b"k", b"v"]), args(&[b"GET", b"k"])];
        assert_eq!(out, (expected, None));
    }

    #[test]
    fn inline_quotes_follow_sdssplitargs() {
        let out = run(b"SET \"a b\\x41\\n\" 'it\\'s' x\"y z\"\r\n");
        assert_eq!(out, (vec![args(&[b"SET", b"a bA\n", b"it's", b"xy z"])], None));
        let out = run(b"ECHO \"\\q\\\"\" a\0ignored\n");
        assert_eq!(out, (vec![args(&[b"ECHO", b"q\"", b"a"])], None));
    }

    #[test]
    fn inline_unbalanced_quotes() {
        for input in [&b"GET \"k\n"[..], b"GET 'k\n", b"GET \"k\"x\n", b"GET 'k'x\n"] {
            assert_eq!(error_of(Limits::default(), input), ProtocolError::UnbalancedQuotes);
        }
    }

    #[test]
    fn pipelined_mixed_commands() {
        let out = run(b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let expected = vec![args(&[b"PING"]), args(&[b"ECHO", b"hi"]), args(&[b"GET", b"k"])];
        assert_eq!(out, (expected, None));
    }

    #[test]
    fn partial_frame_waits() {
        let mut decoder = Decoder::new(Limits::default());
        decoder.feed(b"*2\r\n$3\r\nGET\r\n$1\r");
        assert_eq!(decoder.next_command(), Ok(None));
        assert_eq!(decoder.next_command(), Ok(None));
        decoder.feed(b"\nk\r\n");
        assert_eq!(decoder.next_command(), Ok(Some(args(&[b"GET", b"k"]))));
        assert_eq!(decoder.next_command(), Ok(None));
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn every_split_point_gives_same_result() {
        let input: &[u8] = b"*2\r\n$4\r\nECHO\r\n$3\r\na\r\n\r\nPING\r\n*0\r\n\nSET \"x y\" 'z'\n\
            *1\r\n$0\r\n\r\n";
        let whole = run(input);
        assert_eq!(whole.0.len(), 4);
        assert_eq!(whole.1, None);
        for cut in 0..=input.len() {
            let (head, tail) = input.split_at(cut);
            assert_eq!(run_chunks(Limits::default(), &[head, tail]), whole, "cut {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_chunks(Limits::default(), &bytes), whole);
    }

    #[test]
    fn invalid_multibulk_length() {
        for input in [&b"*x\r\n"[..], b"*01\r\n", b"*+1\r\n", b"*\r\n", b"*2147483648\r\n"] {
            assert_eq!(error_of(Limits::default(), input), ProtocolError::InvalidMultibulkLength);
        }
        assert_eq!(error_of(small_limits(), b"*5\r\n"), ProtocolError::TooManyArguments);
    }

    #[test]
    fn invalid_bulk_length() {
        for input in [&b"*1\r\n$x\r\n"[..], b"*1\r\n$-1\r\n", b"*1\r\n$1 \r\n"] {
            assert_eq!(error_of(Limits::default(), input), ProtocolError::InvalidBulkLength);
        }
        // Rejected from the header alone, before the payload arrives.
        assert_eq!(error_of(small_limits(), b"*1\r\n$17\r\n"), ProtocolError::BulkTooLarge);
        assert_eq!(error_of(Limits::default(), b"*1\r\n$536870913\r\n"), ProtocolError::BulkTooLarge);
    }

    #[test]
    fn expected_dollar() {
        let err = error_of(Limits::default(), b"*1\r\nx");
        assert_eq!(err, ProtocolError::ExpectedDollar(b'x'));
        assert_eq!(err.to_string(), "Protocol error: expected '$', got 'x'");
        let err = error_of(Limits::default(), b"*1\r\n\r\n");
        assert_eq!(err.to_string(), "Protocol error: expected '$', got ' '");
    }

    #[test]
    fn too_long_lines() {
        let limits = small_limits();
        assert_eq!(error_of(limits, &[b'a'; 17]), ProtocolError::TooBigInlineRequest);
        assert_eq!(error_of(limits, b"aaaaaaaaaaaaaaaaa\n"), ProtocolError::TooBigInlineRequest);
        assert_eq!(run_chunks(limits, &[b"aaaaaaaaaaaaaaa\n"]).0.len(), 1);
        assert_eq!(error_of(limits, b"*00000000000000001"), ProtocolError::TooBigMultibulkCountString);
        assert_eq!(error_of(limits, b"*1\r\n$00000000000000001"), ProtocolError::TooBigBulkCountString);
    }

    #[test]
    fn query_buffer_limit() {
        let limits = small_limits();
        let mut decoder = Decoder::new(limits);
        decoder.feed(b"*2\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789");
        assert_eq!(decoder.next_command(), Ok(None));
        assert!(decoder.buffered_bytes() <= limits.query_buffer_bytes_max);
        decoder.feed(&[b'x'; 40]);
        assert_eq!(decoder.next_command(), Err(ProtocolError::QueryBufferExceeded));
        assert!(!ProtocolError::QueryBufferExceeded.sends_reply());
    }

    #[test]
    fn error_poisons_decoder() {
        let mut decoder = Decoder::new(Limits::default());
        decoder.feed(b"*1\r\n$x\r\n*1\r\n$4\r\nPING\r\n");
        let err = ProtocolError::InvalidBulkLength;
        assert_eq!(decoder.next_command(), Err(err.clone()));
        decoder.feed(b"PING\r\n");
        assert_eq!(decoder.next_command(), Err(err.clone()));
        assert!(decoder.is_poisoned());
        assert_eq!(decoder.buffered_bytes(), 0);
        assert_eq!(err.to_reply_text(), "ERR Protocol error: invalid bulk length");
        assert_eq!(err.to_reply(), Reply::Error("ERR Protocol error: invalid bulk length".into()));
        assert!(err.sends_reply());
    }

    #[test]
    fn untrusted_count_is_not_preallocated() {
        let mut decoder = Decoder::new(Limits::default());
        decoder.feed(b"*1048576\r\n");
        assert_eq!(decoder.next_command(), Ok(None));
        match &decoder.state {
            State::Args(multibulk) => assert!(multibulk.args.capacity() <= ARGS_PREALLOC_MAX),
            other => panic!("unexpected state {other:?}"),
        }
    }

    #[test]
    fn consumed_bytes_are_released() {
        let mut decoder = Decoder::new(Limits::default());
        let mut frame = Vec::new();
        encode_command(&vec![b"SET".to_vec(), vec![b'v'; 1 << 20]], &mut frame);
        decoder.feed(&frame);
        assert!(decoder.next_command().is_ok_and(|found| found.is_some()));
        assert_eq!(decoder.buffered_bytes(), 0);
        assert!(decoder.buf.capacity() <= SHRINK_FLOOR);
        for _ in 0..1000 {
            decoder.feed(b"PING\r\nPI");
            assert!(decoder.next_command().is_ok_and(|found| found.is_some()));
            decoder.feed(b"NG\r\n");
            assert!(decoder.next_command().is_ok_and(|found| found.is_some()));
        }
        assert!(decoder.buf.len() <= 16);
    }

    #[test]
    fn redis_int_parsing() {
        assert_eq!(parse_redis_int(b"0"), Some(0));
        assert_eq!(parse_redis_int(b"-12"), Some(-12));
        assert_eq!(parse_redis_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"-0", b"01", b"+1", b" 1", b"1a", b"9223372036854775808"] {
            assert_eq!(parse_redis_int(bad), None, "{bad:?}");
        }
    }

    /// Feeds `input` one byte at a time and checks total scanning work.
    fn assert_linear(input: &[u8], commands: usize) {
        let mut decoder = Decoder::new(Limits::default());
        let mut out = (Vec::new(), None);
        for byte in input {
            decoder.feed(std::slice::from_ref(byte));
            drain(&mut decoder, &mut out);
        }
        assert_eq!(out.1, None);
        assert_eq!(out.0.len(), commands);
        assert!(decoder.bytes_examined <= 3 * input.len(), "examined {} of {}", decoder.bytes_examined, input.len());
    }

    #[test]
    fn byte_at_a_time_is_linear() {
        let mut input = Vec::new();
        let mut many: Command = vec![b"MSET".to_vec()];
        many.extend((0..2000).map(|i| format!("key{i}").into_bytes()));
        encode_command(&many, &mut input);
        encode_command(&vec![b"SET".to_vec(), vec![b'x'; 300_000]], &mut input);
        input.extend_from_slice(&[b'a'; 60_000]);
        input.extend_from_slice(b" b\r\n");
        assert_linear(&input, 3);
    }

    fn fuzz_byte() -> impl Strategy<Value = u8> {
        prop_oneof![any::<u8>(), prop::sample::select(b"*$\r\n0123456789- \"'\\x".to_vec())]
    }

    fn any_limits() -> impl Strategy<Value = Limits> {
        prop_oneof![Just(Limits::default()), Just(small_limits())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary input never panics and never makes the decoder hold
        /// more than the query buffer limit (raw buffer at most twice that).
        #[test]
        fn arbitrary_bytes_stay_bounded(
            data in prop::collection::vec(fuzz_byte(), 0..600),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            limits in any_limits(),
        ) {
            let mut decoder = Decoder::new(limits);
            let mut out = (Vec::new(), None);
            for chunk in split_at(&data, &cuts) {
                decoder.feed(chunk);
                drain(&mut decoder, &mut out);
                prop_assert!(decoder.buffered_bytes() <= limits.query_buffer_bytes_max);
                prop_assert!(decoder.buf.len() <= 2 * limits.query_buffer_bytes_max);
            }
        }

        /// Lending whole requests accepts and rejects exactly what the incremental parser
        /// alone does, on arbitrary bytes and on valid requests mixed with garbage.
        #[test]
        fn lending_does_not_change_results(
            data in prop::collection::vec(fuzz_byte(), 0..600),
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6),
                0..6,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            limits in any_limits(),
        ) {
            let mut wire = Vec::new();
            for command in &commands {
                encode_command(command, &mut wire);
            }
            let split = data.len() / 2;
            wire.splice(0..0, data[..split].iter().copied());
            wire.extend_from_slice(&data[split..]);
            let limits = Limits { query_buffer_bytes_max: usize::MAX, ..limits };
            for input in [&wire[split..wire.len() - (data.len() - split)], &wire[..]] {
                let chunks = split_at(input, &cuts);
                prop_assert_eq!(run_chunks_with(limits, &chunks, true), run_chunks_with(limits, &chunks, false));
            }
        }

        /// Except for the query buffer limit, chunking never changes results.
        #[test]
        fn chunking_does_not_change_results(
            data in prop::collection::vec(fuzz_byte(), 0..600),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let limits = Limits { query_buffer_bytes_max: usize::MAX, ..small_limits() };
            prop_assert_eq!(run_chunks(limits, &split_at(&data, &cuts)), run_chunks(limits, &[&data]));
        }

        /// Encoded commands, concatenated and split anywhere, decode back.
        #[test]
        fn multibulk_roundtrip(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6),
                0..8,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut wire = Vec::new();
            for command in &commands {
                encode_command(command, &mut wire);
            }
            let out = run_chunks(Limits::default(), &split_at(&wire, &cuts));
            prop_assert_eq!(out, (commands, None));
        }

        /// Byte-at-a-time feeding of random commands stays linear.
        #[test]
        fn byte_at_a_time_random_commands(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6),
                1..4,
            ),
        ) {
            let mut wire = Vec::new();
            for command in &commands {
                encode_command(command, &mut wire);
            }
            assert_linear(&wire, commands.len());
        }
    }
}
