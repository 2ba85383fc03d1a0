//! The simulated network: requests encoded as RESP (multibulk, or inline where Redis allows),
//! delivered to the server in pieces split at random boundaries, and replies parsed back.

use quill_core::command::{ExpireCondition, ExpiryTime, GetExChange, SetCondition, SetExpiry};
use quill_core::{Reply, Request};

/// The arguments a client sends for `request` (the inverse of `parse_request`).
pub fn arguments(request: &Request) -> Vec<Vec<u8>> {
    // (SET NX/XX are sent as SET key value NX|XX, as parse_request reads them.)
    let word = |text: &str| text.as_bytes().to_vec();
    let mut out = vec![word(request.name())];
    match request {
        Request::Get { key } | Request::StrLen { key } => out.push(key.clone()),
        Request::Set { key, value, condition } => {
            out.extend([key.clone(), value.clone()]);
            match condition {
                SetCondition::Always => {}
                SetCondition::IfAbsent => out.push(word("NX")),
                SetCondition::IfPresent => out.push(word("XX")),
            }
        }
        Request::Del { keys } | Request::Exists { keys } | Request::MGet { keys } => out.extend(keys.iter().cloned()),
        Request::MSet { pairs } => {
            for (key, value) in pairs {
                out.extend([key.clone(), value.clone()]);
            }
        }
        Request::IncrBy { key, delta } => out.extend([key.clone(), delta.to_string().into_bytes()]),
        Request::Append { key, value } | Request::IncrByFloat { key, increment: value } => {
            out.extend([key.clone(), value.clone()])
        }
        Request::Ping { message } => out.extend(message.iter().cloned()),
        Request::DbSize | Request::FlushAll => {}
        Request::GetSet { key, value, condition } => match condition {
            SetCondition::Always => out.extend([key.clone(), value.clone()]),
            // Sent as SET key value NX|XX GET, which parse_request reads as this request.
            SetCondition::IfAbsent | SetCondition::IfPresent => {
                let option = if *condition == SetCondition::IfAbsent { "NX" } else { "XX" };
                out = vec![word("SET"), key.clone(), value.clone(), word(option), word("GET")];
            }
        },
        Request::GetDel { key } => out.push(key.clone()),
        Request::SetRange { key, offset, value } => {
            out.extend([key.clone(), offset.to_string().into_bytes(), value.clone()])
        }
        Request::Scan { cursor, pattern, count, only_type } => {
            out.push(cursor.to_string().into_bytes());
            if let Some(pattern) = pattern {
                out.extend([word("MATCH"), pattern.clone()]);
            }
            out.extend([word("COUNT"), count.to_string().into_bytes()]);
            if let Some(kind) = only_type {
                out.extend([word("TYPE"), kind.clone()]);
            }
        }
        Request::Keys { pattern } => out.push(pattern.clone()),
        Request::RandomKey => {}
        // Never sent over a connection (transfers.rs): MULTI/EXEC belong to the server.
        Request::Watch { keys } => out.extend(keys.iter().cloned()),
        Request::Exec { .. } | Request::Unwatch => {}
        Request::Rename { source, destination, .. } => out.extend([source.clone(), destination.clone()]),
        Request::Copy { source, destination, replace } => {
            out.extend([source.clone(), destination.clone()]);
            if *replace {
                out.push(word("REPLACE"));
            }
        }
        Request::MSetNx { pairs } => {
            for (key, value) in pairs {
                out.extend([key.clone(), value.clone()]);
            }
        }
        Request::SetExpiring { .. } => out = set_expiring_arguments(request),
        Request::Expire { key, time, condition, name } => {
            let seconds = matches!(*name, "expire" | "expireat");
            let (ExpiryTime::In(milliseconds) | ExpiryTime::At(milliseconds)) = time;
            let number = if seconds { milliseconds / 1000 } else { *milliseconds };
            out.extend([key.clone(), number.to_string().into_bytes()]);
            out.extend(match condition {
                ExpireCondition::Always => vec![],
                ExpireCondition::IfNone => vec![word("NX")],
                ExpireCondition::IfSome => vec![word("XX")],
                ExpireCondition::IfLater => vec![word("GT")],
                ExpireCondition::IfEarlier => vec![word("LT")],
                ExpireCondition::IfEarlierExisting => vec![word("XX"), word("LT")],
            });
        }
        Request::Persist { key } | Request::Ttl { key, .. } => out.push(key.clone()),
        Request::GetEx { key, change } => {
            out.push(key.clone());
            match change {
                None => {}
                Some(GetExChange::Persist) => out.push(word("PERSIST")),
                Some(GetExChange::At(time)) => out.extend(time_option(*time)),
                Some(GetExChange::NotInteger) => out.extend([word("PX"), word("soon")]),
                Some(GetExChange::InvalidTime) => out.extend([word("PX"), word("0")]),
            }
        }
    }
    out
}

/// PX or PXAT and the time in milliseconds (which parse_request reads back exactly).
fn time_option(time: ExpiryTime) -> [Vec<u8>; 2] {
    match time {
        ExpiryTime::In(milliseconds) => [b"PX".to_vec(), milliseconds.to_string().into_bytes()],
        ExpiryTime::At(milliseconds) => [b"PXAT".to_vec(), milliseconds.to_string().into_bytes()],
    }
}

/// SET with an expiry option, SETEX (whole seconds) and PSETEX.
fn set_expiring_arguments(request: &Request) -> Vec<Vec<u8>> {
    let Request::SetExpiring { key, value, condition, expiry, get, name } = request else {
        unreachable!("only SET with an expiry")
    };
    if let (&"setex" | &"psetex", SetExpiry::At(ExpiryTime::In(milliseconds))) = (name, expiry) {
        let number = if *name == "setex" { milliseconds / 1000 } else { *milliseconds };
        return vec![name.as_bytes().to_vec(), key.clone(), number.to_string().into_bytes(), value.clone()];
    }
    let mut out = vec![b"SET".to_vec(), key.clone(), value.clone()];
    match condition {
        SetCondition::Always => {}
        SetCondition::IfAbsent => out.push(b"NX".to_vec()),
        SetCondition::IfPresent => out.push(b"XX".to_vec()),
    }
    match expiry {
        SetExpiry::Keep => out.push(b"KEEPTTL".to_vec()),
        SetExpiry::At(time) => out.extend(time_option(*time)),
    }
    if *get {
        out.push(b"GET".to_vec());
    }
    out
}

/// Encodes as multibulk, or as an inline line when `inline` and every argument is a plain word.
pub fn encode(arguments: &[Vec<u8>], inline: bool, out: &mut Vec<u8>) {
    let plain = |argument: &Vec<u8>| {
        !argument.is_empty() && argument.iter().all(|byte| byte.is_ascii_graphic() && !b"\"'\\".contains(byte))
    };
    // A line the server's inline limit would refuse goes as a multibulk request instead.
    let line_bytes: usize = arguments.iter().map(|argument| argument.len() + 1).sum();
    let fits = line_bytes < quill_core::resp::Limits::default().inline_bytes_max;
    if inline && fits && arguments.iter().all(plain) {
        let line: Vec<&[u8]> = arguments.iter().map(Vec::as_slice).collect();
        out.extend_from_slice(&line.join(&b' '));
        out.extend_from_slice(b"\r\n");
        return;
    }
    quill_core::resp::encode_command(arguments, out);
}

/// Parses one reply from the front of `bytes`: `Ok(None)` if it is incomplete.
pub fn parse_reply(bytes: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = bytes.windows(2).position(|pair| pair == b"\r\n") else { return Ok(None) };
    let line = std::str::from_utf8(&bytes[1..line_end]).map_err(|_| "a reply header that is not UTF-8")?;
    let after = line_end + 2;
    let number = || line.parse::<i64>().map_err(|_| format!("bad number in reply header {line:?}"));
    match bytes.first() {
        Some(b'+') => Ok(Some((Reply::Simple(line.to_string().into()), after))),
        Some(b'-') => Ok(Some((Reply::Error(line.to_string()), after))),
        Some(b':') => Ok(Some((Reply::Integer(number()?), after))),
        Some(b'$') => {
            let length = number()?;
            if length < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let end = after + length as usize;
            if bytes.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((Reply::Bulk(Some(bytes[after..end].to_vec())), end + 2)))
        }
        Some(b'*') => {
            let count = number()?;
            if count < 0 {
                return Ok(Some((Reply::Array(None), after)));
            }
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..count {
                match parse_reply(&bytes[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(format!("a reply starting with {:?}", bytes.first())),
    }
}
