//! The expiry commands' effects (SET with an expiry option, SETEX, PSETEX, EXPIRE and its
//! family, PERSIST, GETEX) over a key's current state, and TTL's reply; Redis 7.0's semantics.
//! Active expiry (deleting keys whose time has come) is in `active_expiry.rs`.

use std::sync::Arc;

use super::commands::Change;
use crate::command::{ExpireCondition, ExpiryTime, GetExChange, Reply, Request, SetCondition, SetExpiry};

/// A key's state as a command sees it: its value (`None`: absent, or expired) and expiry time.
#[derive(Clone, Copy)]
pub(in crate::engine) struct Current<'a> {
    pub value: Option<&'a [u8]>,
    pub expires_at_ms: Option<u64>,
}

fn invalid_expire_time(name: &str) -> Reply {
    Reply::error(format!("ERR invalid expire time in '{name}' command"))
}

/// The Unix time `time` names, with the command running at `now_ms`.
fn resolve(time: ExpiryTime, now_ms: u64, name: &str) -> Result<i64, Reply> {
    time.resolve(now_ms).ok_or_else(|| invalid_expire_time(name))
}

/// The effect and reply of an expiry command (the requests `is_expiry_command` accepts).
pub(in crate::engine) fn compute_expiry_command(
    request: &Request,
    current: Current<'_>,
    now_ms: u64,
) -> Result<(Change, Reply), Reply> {
    let old_value = || Reply::Bulk(current.value.map(<[u8]>::to_vec));
    let keep = |expires_at_ms| Change::Put(Arc::from(current.value.expect("present")), expires_at_ms);
    match request {
        Request::SetExpiring { value, condition, expiry, get, name, .. } => {
            let expires_at_ms = match expiry {
                SetExpiry::Keep => current.value.and(current.expires_at_ms),
                SetExpiry::At(time) => Some(positive_time(resolve(*time, now_ms, name)?, name)?),
            };
            let allowed = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => current.value.is_none(),
                SetCondition::IfPresent => current.value.is_some(),
            };
            let reply = match (get, allowed) {
                (true, _) => old_value(),
                (false, true) => Reply::ok(),
                (false, false) => Reply::Bulk(None),
            };
            let change =
                if allowed { Change::Put(Arc::from(value.as_slice()), expires_at_ms) } else { Change::Unchanged };
            Ok((change, reply))
        }
        Request::Expire { time, condition, name, .. } => {
            // The time is checked before the key is looked at, as in Redis.
            let when = resolve(*time, now_ms, name)?;
            if current.value.is_none() {
                return Ok((Change::Unchanged, Reply::Integer(0)));
            }
            if !expire_allowed(*condition, current.expires_at_ms, when) {
                return Ok((Change::Unchanged, Reply::Integer(0)));
            }
            // A time already past deletes the key, as Redis's `checkAlreadyExpired` does.
            let change = if when <= now_ms as i64 { Change::Delete } else { keep(Some(when as u64)) };
            Ok((change, Reply::Integer(1)))
        }
        Request::Persist { .. } => match (current.value, current.expires_at_ms) {
            (Some(_), Some(_)) => Ok((keep(None), Reply::Integer(1))),
            _ => Ok((Change::Unchanged, Reply::Integer(0))),
        },
        Request::GetEx { change, .. } => {
            let Some(_) = current.value else { return Ok((Change::Unchanged, Reply::Bulk(None))) };
            let change = match change {
                None => Change::Unchanged,
                Some(GetExChange::Persist) if current.expires_at_ms.is_none() => Change::Unchanged,
                Some(GetExChange::Persist) => keep(None),
                Some(GetExChange::NotInteger) => return Err(crate::command::parse::not_an_integer()),
                Some(GetExChange::InvalidTime) => return Err(invalid_expire_time("getex")),
                Some(GetExChange::At(time)) => {
                    let when = positive_time(resolve(*time, now_ms, "getex")?, "getex")?;
                    if when <= now_ms {
                        Change::Delete
                    } else {
                        keep(Some(when))
                    }
                }
            };
            Ok((change, old_value()))
        }
        _ => unreachable!("only expiry commands"),
    }
}

/// SET's and GETEX's times must come out positive (Redis checks the sum, which overflowing
/// turns negative).
fn positive_time(when: i64, name: &str) -> Result<u64, Reply> {
    u64::try_from(when).ok().filter(|when| *when > 0).ok_or_else(|| invalid_expire_time(name))
}

/// EXPIRE's NX, XX, GT, LT: a key without an expiry time expires never (GT fails, LT holds).
fn expire_allowed(condition: ExpireCondition, expires_at_ms: Option<u64>, when: i64) -> bool {
    match (condition, expires_at_ms) {
        (ExpireCondition::Always, _) => true,
        (ExpireCondition::IfNone, existing) => existing.is_none(),
        (ExpireCondition::IfSome, existing) => existing.is_some(),
        (ExpireCondition::IfLater, None) => false,
        (ExpireCondition::IfLater, Some(existing)) => when > existing as i64,
        (ExpireCondition::IfEarlier, None) => true,
        (ExpireCondition::IfEarlier | ExpireCondition::IfEarlierExisting, Some(existing)) => when < existing as i64,
        (ExpireCondition::IfEarlierExisting, None) => false,
    }
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for one without an expiry time;
/// a remaining time is never negative, and seconds are rounded as Redis rounds them.
pub(in crate::engine) fn ttl_reply(
    exists: bool,
    expires_at_ms: Option<u64>,
    now_ms: u64,
    milliseconds: bool,
    absolute: bool,
) -> Reply {
    let Some(expires_at_ms) = expires_at_ms.filter(|_| exists) else {
        return Reply::Integer(if exists { -1 } else { -2 });
    };
    let time = if absolute { expires_at_ms } else { expires_at_ms.saturating_sub(now_ms) } as i64;
    // Without overflow near i64::MAX (SET … PXAT 9223372036854775807): redis-server answers
    // EXPIRETIME 9223372036854776 there.
    Reply::Integer(if milliseconds { time } else { ((i128::from(time) + 500) / 1000) as i64 })
}

/// Whether the request is one `compute_expiry_command` computes.
pub(in crate::engine) fn is_expiry_command(request: &Request) -> bool {
    matches!(
        request,
        Request::SetExpiring { .. } | Request::Expire { .. } | Request::Persist { .. } | Request::GetEx { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn expire(condition: ExpireCondition, time: ExpiryTime) -> Request {
        Request::Expire { key: b"k".to_vec(), time, condition, name: "pexpire" }
    }

    #[test]
    fn expire_conditions_follow_redis() {
        let value = Some(&b"v"[..]);
        let with = Current { value, expires_at_ms: Some(NOW + 1000) };
        let without = Current { value, expires_at_ms: None };
        let replies = |current, condition, delta| {
            compute_expiry_command(&expire(condition, ExpiryTime::In(delta)), current, NOW).map(|(_, reply)| reply)
        };
        assert_eq!(replies(with, ExpireCondition::IfLater, 2000), Ok(Reply::Integer(1)));
        assert_eq!(replies(with, ExpireCondition::IfLater, 500), Ok(Reply::Integer(0)));
        assert_eq!(replies(without, ExpireCondition::IfLater, 500), Ok(Reply::Integer(0)));
        assert_eq!(replies(without, ExpireCondition::IfEarlier, 500), Ok(Reply::Integer(1)));
        assert_eq!(replies(with, ExpireCondition::IfNone, 500), Ok(Reply::Integer(0)));
        assert_eq!(replies(with, ExpireCondition::IfSome, 500), Ok(Reply::Integer(1)));
        let missing = Current { value: None, expires_at_ms: None };
        assert_eq!(replies(missing, ExpireCondition::Always, 500), Ok(Reply::Integer(0)));
        let (change, _) = compute_expiry_command(&expire(ExpireCondition::Always, ExpiryTime::In(0)), with, NOW)
            .expect("a time already past");
        assert!(matches!(change, Change::Delete), "a time already past deletes the key");
        let overflow = expire(ExpireCondition::Always, ExpiryTime::In(i64::MAX));
        assert_eq!(
            compute_expiry_command(&overflow, with, NOW).map(|(_, reply)| reply),
            Err(Reply::error("ERR invalid expire time in 'pexpire' command"))
        );
    }

    #[test]
    fn ttl_rounds_and_reports_missing_and_persistent_keys() {
        assert_eq!(ttl_reply(false, None, NOW, false, false), Reply::Integer(-2));
        assert_eq!(ttl_reply(true, None, NOW, true, true), Reply::Integer(-1));
        assert_eq!(ttl_reply(true, Some(NOW + 1499), NOW, false, false), Reply::Integer(1));
        assert_eq!(ttl_reply(true, Some(NOW + 1500), NOW, false, false), Reply::Integer(2));
        assert_eq!(ttl_reply(true, Some(NOW + 1500), NOW, true, false), Reply::Integer(1500));
        assert_eq!(ttl_reply(true, Some(NOW + 1500), NOW, true, true), Reply::Integer((NOW + 1500) as i64));
        let latest = i64::MAX as u64;
        assert_eq!(ttl_reply(true, Some(latest), NOW, false, true), Reply::Integer(9_223_372_036_854_776));
    }
}
