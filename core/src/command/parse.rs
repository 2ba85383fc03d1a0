//! Arguments (as a RESP array delivers them) to a [`Request`], with Redis's error texts.

use super::{Bytes, ExpireCondition, ExpiryTime, GetExChange, Reply, ReplyShape, Request, SetCondition, SetExpiry};

/// Parses one command. `Err` carries the exact error reply Redis would send.
pub fn parse_request(arguments: &[Bytes]) -> Result<Request, Reply> {
    parse_request_owned(arguments.to_vec())
}

/// Parses one command, moving the arguments into the request instead of copying them (the
/// server's path: no allocation per argument). The command table (`table.rs`) names the
/// command, checks its arity and picks its parser; a command the server answers itself is
/// unknown here.
pub fn parse_request_owned(mut arguments: Vec<Bytes>) -> Result<Request, Reply> {
    parse_command(&mut arguments).map(|(request, _)| request)
}

/// Parses one command into the engine request that answers it and how the server shapes that
/// request's reply into the command's own (see [`ReplyShape`]). The arguments the request keeps
/// are moved out (left empty); the others stay, so the caller may reuse their buffers.
pub fn parse_command(arguments: &mut [Bytes]) -> Result<(Request, ReplyShape), Reply> {
    let count = arguments.len();
    let Some((name, rest)) = arguments.split_first_mut() else {
        return Err(Reply::error("ERR empty command"));
    };
    let name: &[u8] = name;
    let mut lowered = [0u8; COMMAND_NAME_BYTES_MAX];
    let lower = lowercase_name(name, &mut lowered);
    let Some(spec) = super::table::lookup(lower) else {
        return Err(unknown_command(name, rest));
    };
    if !spec.arity_allows(count) && !matches!(spec.handler, super::table::Handler::Server(_)) {
        return Err(wrong_arguments(lower));
    }
    match spec.handler {
        super::table::Handler::Engine(parser) => Ok((parser(lower, rest)?, ReplyShape::AsIs)),
        super::table::Handler::Shaped(parser) => parser(lower, rest),
        super::table::Handler::Server(_) => Err(unknown_command(name, rest)),
    }
}

pub(super) fn setnx(name: &[u8], rest: &mut [Bytes]) -> Result<(Request, ReplyShape), Reply> {
    let [key, value] = exact::<2>(name, rest)?;
    Ok((Request::Set { key, value, condition: SetCondition::IfAbsent }, ReplyShape::SetAsInteger))
}

pub(super) fn type_of(name: &[u8], rest: &mut [Bytes]) -> Result<(Request, ReplyShape), Reply> {
    Ok((Request::Exists { keys: vec![one_key(name, rest)?] }, ReplyShape::ExistsAsType))
}

pub(super) fn touch(name: &[u8], rest: &mut [Bytes]) -> Result<(Request, ReplyShape), Reply> {
    Ok((Request::Exists { keys: keys_at_least_one(name, rest)? }, ReplyShape::AsIs))
}

pub(super) fn getrange(name: &[u8], rest: &mut [Bytes]) -> Result<(Request, ReplyShape), Reply> {
    let [key, start, end] = exact::<3>(name, rest)?;
    let start = parse_integer(&start).ok_or_else(not_an_integer)?;
    let end = parse_integer(&end).ok_or_else(not_an_integer)?;
    Ok((Request::Get { key }, ReplyShape::Range { start, end }))
}

pub(super) fn get(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::Get { key: one_key(name, rest)? })
}

pub(super) fn del(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::Del { keys: keys_at_least_one(name, rest)? })
}

pub(super) fn exists(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::Exists { keys: keys_at_least_one(name, rest)? })
}

pub(super) fn mget(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::MGet { keys: keys_at_least_one(name, rest)? })
}

pub(super) fn incr(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::IncrBy { key: one_key(name, rest)?, delta: 1 })
}

pub(super) fn decr(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::IncrBy { key: one_key(name, rest)?, delta: -1 })
}

pub(super) fn incrby(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    parse_incrby(name, rest, false)
}

pub(super) fn decrby(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    parse_incrby(name, rest, true)
}

pub(super) fn append(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, value] = exact::<2>(name, rest)?;
    Ok(Request::Append { key, value })
}

pub(super) fn strlen(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::StrLen { key: one_key(name, rest)? })
}

pub(super) fn dbsize(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    exact::<0>(name, rest)?;
    Ok(Request::DbSize)
}

pub(super) fn ping(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    match rest {
        [] => Ok(Request::Ping { message: None }),
        [message] => Ok(Request::Ping { message: Some(std::mem::take(message)) }),
        _ => Err(wrong_arguments(name)),
    }
}

pub(super) fn set(_name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    parse_set(rest)
}

pub(super) fn getset(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, value] = exact::<2>(name, rest)?;
    Ok(Request::GetSet { key, value, condition: SetCondition::Always })
}

pub(super) fn getdel(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::GetDel { key: one_key(name, rest)? })
}

/// SETRANGE key offset value: a negative offset is refused before the key is looked at.
pub(super) fn setrange(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, offset, value] = exact::<3>(name, rest)?;
    let offset = parse_integer(&offset).ok_or_else(not_an_integer)?;
    let offset = u64::try_from(offset).map_err(|_| Reply::error("ERR offset is out of range"))?;
    Ok(Request::SetRange { key, offset, value })
}

pub(super) fn keys(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::Keys { pattern: one_key(name, rest)? })
}

pub(super) fn watch(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::Watch { keys: keys_at_least_one(name, rest)? })
}

pub(super) fn unwatch(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    exact::<0>(name, rest)?;
    Ok(Request::Unwatch)
}

pub(super) fn rename(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [source, destination] = exact::<2>(name, rest)?;
    Ok(Request::Rename { source, destination, only_if_absent: name == b"renamenx" })
}

/// COPY source destination [DB 0] [REPLACE]: only database 0 exists.
pub(super) fn copy(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [source, destination, options @ ..] = rest else { return Err(wrong_arguments(name)) };
    let mut replace = false;
    let mut options = options.iter();
    while let Some(option) = options.next() {
        match option.to_ascii_lowercase().as_slice() {
            b"replace" => replace = true,
            b"db" => match options.next().map(|database| parse_integer(database)) {
                Some(Some(0)) => {}
                Some(Some(_)) => return Err(Reply::error("ERR DB index is out of range")),
                Some(None) => return Err(not_an_integer()),
                None => return Err(Reply::error("ERR syntax error")),
            },
            _ => return Err(Reply::error("ERR syntax error")),
        }
    }
    Ok(Request::Copy { source: std::mem::take(source), destination: std::mem::take(destination), replace })
}

pub(super) fn randomkey(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    exact::<0>(name, rest)?;
    Ok(Request::RandomKey)
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type], with Redis's errors: the cursor is read
/// as C's `strtoul` reads it (so `-1` is the largest cursor), COUNT must be at least 1, and an
/// option without its argument, or an unknown one, is a syntax error.
pub(super) fn scan(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [cursor, options @ ..] = rest else { return Err(wrong_arguments(name)) };
    let cursor = parse_cursor(cursor).ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let (mut pattern, mut count, mut only_type) = (None, SCAN_COUNT_DEFAULT, None);
    for pair in options.chunks_mut(2) {
        let [option, argument] = pair else { return Err(Reply::error("ERR syntax error")) };
        match option.to_ascii_lowercase().as_slice() {
            b"match" => pattern = Some(std::mem::take(argument)),
            b"count" => {
                let value = parse_integer(argument).ok_or_else(not_an_integer)?;
                count = u64::try_from(value)
                    .ok()
                    .filter(|count| *count >= 1)
                    .ok_or_else(|| Reply::error("ERR syntax error"))?;
            }
            b"type" => only_type = Some(std::mem::take(argument)),
            _ => return Err(Reply::error("ERR syntax error")),
        }
    }
    Ok(Request::Scan { cursor, pattern, count, only_type })
}

/// SCAN's default COUNT, as Redis's.
pub const SCAN_COUNT_DEFAULT: u64 = 10;

/// A cursor as C's `strtoul(text, &end, 10)` reads it, with Redis's checks: no leading space,
/// nothing after the digits, no overflow. An optional sign; `-n` wraps around, and an empty
/// text is 0, as in Redis.
fn parse_cursor(text: &[u8]) -> Option<u64> {
    if text.first().is_some_and(u8::is_ascii_whitespace) {
        return None;
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        Some((b'+', digits)) => (false, digits),
        _ => (false, text),
    };
    if digits.is_empty() {
        // strtoul converts nothing: the end pointer stays at the start, which is the end only
        // for an empty text.
        return text.is_empty().then_some(0);
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative { value.wrapping_neg() } else { value })
}

pub(super) fn msetnx(_name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::MSetNx { pairs: parse_pairs(rest, b"msetnx")? })
}

pub(super) fn mset(_name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::MSet { pairs: parse_pairs(rest, b"mset")? })
}

pub(super) fn flush(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    parse_flush(name, rest)
}

/// Command names longer than this match nothing (the longest known is far shorter).
pub const COMMAND_NAME_BYTES_MAX: usize = 24;

/// `name` in lower case, in `buffer` (no allocation per command); a name too long for it comes
/// back as an empty slice, which no command has.
pub fn lowercase_name<'a>(name: &[u8], buffer: &'a mut [u8; COMMAND_NAME_BYTES_MAX]) -> &'a [u8] {
    let Some(lowered) = buffer.get_mut(..name.len()) else { return &[] };
    for (low, byte) in lowered.iter_mut().zip(name) {
        *low = byte.to_ascii_lowercase();
    }
    lowered
}

/// Redis's text for an unknown command, built as Redis builds it: the name cut at 128 bytes,
/// then each argument quoted while the list is under 128 bytes, each cut at a NUL byte (C's
/// `%.*s`) and at the room left; CR and LF become spaces. Bytes that are not UTF-8 show as
/// U+FFFD (a reply's text is a `String`), the one difference from Redis.
pub fn unknown_command(name: &[u8], rest: &[Bytes]) -> Reply {
    const QUOTED_BYTES_MAX: usize = 128;
    let c_string = |bytes: &[u8], limit: usize| -> Vec<u8> {
        let end = bytes.iter().position(|byte| *byte == 0).unwrap_or(bytes.len()).min(limit);
        bytes[..end].to_vec()
    };
    let mut arguments: Vec<u8> = Vec::new();
    for argument in rest {
        if arguments.len() >= QUOTED_BYTES_MAX {
            break;
        }
        arguments.push(b'\'');
        arguments.extend(c_string(argument, QUOTED_BYTES_MAX - arguments.len() + 1));
        arguments.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend(c_string(name, QUOTED_BYTES_MAX));
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend(arguments);
    for byte in &mut text {
        if *byte == b'\r' || *byte == b'\n' {
            *byte = b' ';
        }
    }
    Reply::Error(String::from_utf8_lossy(&text).into_owned())
}

fn wrong_arguments(name: &[u8]) -> Reply {
    Reply::Error(format!("ERR wrong number of arguments for '{}' command", String::from_utf8_lossy(name)))
}

fn exact<const N: usize>(name: &[u8], rest: &mut [Bytes]) -> Result<[Bytes; N], Reply> {
    if rest.len() != N {
        return Err(wrong_arguments(name));
    }
    Ok(std::array::from_fn(|index| std::mem::take(&mut rest[index])))
}

fn one_key(name: &[u8], rest: &mut [Bytes]) -> Result<Bytes, Reply> {
    let [key] = exact::<1>(name, rest)?;
    Ok(key)
}

fn keys_at_least_one(name: &[u8], rest: &mut [Bytes]) -> Result<Vec<Bytes>, Reply> {
    if rest.is_empty() {
        return Err(wrong_arguments(name));
    }
    Ok(rest.iter_mut().map(std::mem::take).collect())
}

fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

/// The expiry options SET and GETEX share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeOption {
    Ex,
    Px,
    ExAt,
    PxAt,
    /// KEEPTTL for SET, PERSIST for GETEX.
    KeepOrPersist,
}

impl TimeOption {
    fn from_name(name: &[u8], command_is_set: bool) -> Option<TimeOption> {
        Some(match name {
            b"ex" => TimeOption::Ex,
            b"px" => TimeOption::Px,
            b"exat" => TimeOption::ExAt,
            b"pxat" => TimeOption::PxAt,
            b"keepttl" if command_is_set => TimeOption::KeepOrPersist,
            b"persist" if !command_is_set => TimeOption::KeepOrPersist,
            _ => return None,
        })
    }

    /// EX, PX, EXAT and PXAT take a number; SET checks it as Redis's
    /// `getExpireMillisecondsOrReply` does: an integer, above 0, seconds within range.
    fn time(self, argument: &[u8], name: &str) -> Result<ExpiryTime, Reply> {
        let number = parse_integer(argument).ok_or_else(not_an_integer)?;
        let seconds = matches!(self, TimeOption::Ex | TimeOption::ExAt);
        if number <= 0 || seconds && number > i64::MAX / 1000 {
            return Err(Reply::Error(format!("ERR invalid expire time in '{name}' command")));
        }
        let milliseconds = if seconds { number * 1000 } else { number };
        Ok(match self {
            TimeOption::Ex | TimeOption::Px => ExpiryTime::In(milliseconds),
            _ => ExpiryTime::At(milliseconds),
        })
    }
}

/// SET's and GETEX's options, as Redis's `parseExtendedStringArgumentsOrReply` reads them: an
/// option conflicting with one already given (another time option, NX with XX) is a syntax
/// error, and a repeated one is not (the last wins). Returns the time option and its argument.
fn parse_string_options<'a>(
    options: &'a [Bytes],
    command_is_set: bool,
    condition: &mut SetCondition,
    get: &mut bool,
) -> Result<Option<(TimeOption, Option<&'a [u8]>)>, Reply> {
    let mut time: Option<(TimeOption, Option<&[u8]>)> = None;
    let mut index = 0;
    while index < options.len() {
        let lowered = options[index].to_ascii_lowercase();
        let wanted = match lowered.as_slice() {
            b"nx" if command_is_set => Some(SetCondition::IfAbsent),
            b"xx" if command_is_set => Some(SetCondition::IfPresent),
            b"get" if command_is_set => {
                *get = true;
                None
            }
            name => {
                let option = TimeOption::from_name(name, command_is_set).ok_or_else(syntax_error)?;
                if time.is_some_and(|(given, _)| given != option) {
                    return Err(syntax_error());
                }
                let argument = if option == TimeOption::KeepOrPersist {
                    None
                } else {
                    index += 1;
                    Some(options.get(index).ok_or_else(syntax_error)?.as_slice())
                };
                time = Some((option, argument));
                None
            }
        };
        if let Some(wanted) = wanted {
            if *condition != SetCondition::Always && *condition != wanted {
                return Err(syntax_error());
            }
            *condition = wanted;
        }
        index += 1;
    }
    Ok(time)
}

fn parse_set(rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, value, options @ ..] = rest else {
        return Err(wrong_arguments(b"set"));
    };
    let mut condition = SetCondition::Always;
    let mut get = false;
    let time = parse_string_options(options, true, &mut condition, &mut get)?;
    let expiry = match time {
        None => None,
        Some((TimeOption::KeepOrPersist, _)) => Some(SetExpiry::Keep),
        Some((option, argument)) => Some(SetExpiry::At(option.time(argument.expect("a time option's number"), "set")?)),
    };
    let (key, value) = (std::mem::take(key), std::mem::take(value));
    Ok(match (expiry, get) {
        (Some(expiry), get) => Request::SetExpiring { key, value, condition, expiry, get, name: "set" },
        (None, true) => Request::GetSet { key, value, condition },
        (None, false) => Request::Set { key, value, condition },
    })
}

/// SETEX key seconds value, PSETEX key milliseconds value.
pub(super) fn setex(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, time, value] = exact::<3>(name, rest)?;
    let (option, name) = if name == b"setex" { (TimeOption::Ex, "setex") } else { (TimeOption::Px, "psetex") };
    let expiry = SetExpiry::At(option.time(&time, name)?);
    Ok(Request::SetExpiring { key, value, condition: SetCondition::Always, expiry, get: false, name })
}

/// GETEX key [EX|PX|EXAT|PXAT time | PERSIST]: the time's number is checked only if the key
/// exists, as in Redis, so a bad one travels in the request.
pub(super) fn getex(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, options @ ..] = rest else { return Err(wrong_arguments(name)) };
    let (mut condition, mut get) = (SetCondition::Always, false);
    let change = match parse_string_options(options, false, &mut condition, &mut get)? {
        None => None,
        Some((TimeOption::KeepOrPersist, _)) => Some(GetExChange::Persist),
        Some((option, argument)) => Some(match option.time(argument.expect("a time option's number"), "getex") {
            Ok(time) => GetExChange::At(time),
            Err(Reply::Error(text)) if text.starts_with("ERR invalid") => GetExChange::InvalidTime,
            Err(_) => GetExChange::NotInteger,
        }),
    };
    Ok(Request::GetEx { key: std::mem::take(key), change })
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX|XX|GT|LT …]: the options first, then the
/// number, as Redis's `expireGenericCommand` checks them.
pub(super) fn expire(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, time, options @ ..] = rest else { return Err(wrong_arguments(name)) };
    let condition = parse_expire_options(options)?;
    let (name, seconds, absolute): (&'static str, bool, bool) = match name {
        b"expire" => ("expire", true, false),
        b"pexpire" => ("pexpire", false, false),
        b"expireat" => ("expireat", true, true),
        _ => ("pexpireat", false, true),
    };
    let number = parse_integer(time).ok_or_else(not_an_integer)?;
    let invalid = || Reply::Error(format!("ERR invalid expire time in '{name}' command"));
    let milliseconds = if seconds { number.checked_mul(1000).ok_or_else(invalid)? } else { number };
    let time = if absolute { ExpiryTime::At(milliseconds) } else { ExpiryTime::In(milliseconds) };
    Ok(Request::Expire { key: std::mem::take(key), time, condition, name })
}

/// EXPIRE's flags: an unknown one is named in the error; the combinations are checked after.
fn parse_expire_options(options: &[Bytes]) -> Result<ExpireCondition, Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        match option.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                // As C's `%s` prints it (cut at a NUL byte), with CR and LF as spaces, as Redis's
                // error replies have them.
                let end = option.iter().position(|byte| *byte == 0).unwrap_or(option.len());
                let shown: Vec<u8> =
                    option[..end].iter().map(|byte| if matches!(byte, b'\r' | b'\n') { b' ' } else { *byte }).collect();
                return Err(Reply::Error(format!("ERR Unsupported option {}", String::from_utf8_lossy(&shown))));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Reply::error("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(Reply::error("ERR GT and LT options at the same time are not compatible"));
    }
    // XX with GT or LT: the time must exist and be later (earlier), which GT (LT) alone implies
    // for GT and adds for LT.
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::IfNone,
        (_, _, true, _) => ExpireCondition::IfLater,
        (_, true, _, true) => ExpireCondition::IfEarlierExisting,
        (_, _, _, true) => ExpireCondition::IfEarlier,
        (_, true, ..) => ExpireCondition::IfSome,
        _ => ExpireCondition::Always,
    })
}

pub(super) fn incrbyfloat(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let [key, increment] = exact::<2>(name, rest)?;
    Ok(Request::IncrByFloat { key, increment })
}

pub(super) fn persist(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    Ok(Request::Persist { key: one_key(name, rest)? })
}

pub(super) fn ttl(name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    let key = one_key(name, rest)?;
    let (milliseconds, absolute) = match name {
        b"ttl" => (false, false),
        b"pttl" => (true, false),
        b"expiretime" => (false, true),
        _ => (true, true),
    };
    Ok(Request::Ttl { key, milliseconds, absolute })
}

fn parse_pairs(rest: &mut [Bytes], name: &[u8]) -> Result<Vec<(Bytes, Bytes)>, Reply> {
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(wrong_arguments(name));
    }
    let pairs =
        rest.chunks_exact_mut(2).map(|pair| (std::mem::take(&mut pair[0]), std::mem::take(&mut pair[1]))).collect();
    Ok(pairs)
}

fn parse_incrby(name: &[u8], rest: &mut [Bytes], negate: bool) -> Result<Request, Reply> {
    let [key, delta] = exact::<2>(name, rest)?;
    let delta = parse_integer(&delta).ok_or_else(not_an_integer)?;
    let delta =
        if negate { delta.checked_neg().ok_or_else(|| Reply::error("ERR decrement would overflow"))? } else { delta };
    Ok(Request::IncrBy { key, delta })
}

fn parse_flush(_name: &[u8], rest: &mut [Bytes]) -> Result<Request, Reply> {
    match rest {
        [] => Ok(Request::FlushAll),
        [mode] if matches!(mode.to_ascii_lowercase().as_slice(), b"sync" | b"async") => Ok(Request::FlushAll),
        // Anything else, one argument or more, is Redis's syntax error.
        _ => Err(Reply::error("ERR syntax error")),
    }
}

pub(crate) fn not_an_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// Parses a decimal integer exactly as Redis's `string2ll` does: no spaces, no `+`, no leading
/// zeros, at most 20 characters, within `i64`.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    if negative && digits == b"0" {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    text.parse::<i64>().ok()
}
