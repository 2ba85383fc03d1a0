//! What the cluster's replies are judged against: each key is one object (a register that also
//! appends), checked for linearizability over the whole cluster's history with the simulator's
//! Wing–Gong search; and transactions' atomicity, from reads of two keys in one EXEC.

use crate::linearizability::{self, Entry, Model, Verdict};

/// One operation on one key, with its reply when the client saw it.
#[derive(Clone)]
pub enum KeyOperation {
    Set(Vec<u8>),
    Get(Option<Vec<u8>>),
    /// APPEND of a unique token; the length it replied.
    Append {
        token: Vec<u8>,
        length: i64,
    },
    /// DEL; how many keys it deleted.
    Del(i64),
}

impl std::fmt::Debug for KeyOperation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self {
            KeyOperation::Set(value) => write!(formatter, "SET {}", text(value)),
            KeyOperation::Get(value) => write!(formatter, "GET -> {:?}", value.as_deref().map(text)),
            KeyOperation::Append { token, length } => write!(formatter, "APPEND {} -> {length}", text(token)),
            KeyOperation::Del(count) => write!(formatter, "DEL -> {count}"),
        }
    }
}

pub struct KeyModel;

impl Model for KeyModel {
    type State = Option<Vec<u8>>;
    type Operation = KeyOperation;

    fn step(&self, state: &Self::State, operation: &KeyOperation, observed: bool) -> Vec<Self::State> {
        let (next, fits) = match operation {
            KeyOperation::Set(value) => (Some(value.clone()), true),
            KeyOperation::Get(value) => (state.clone(), value == state),
            KeyOperation::Append { token, length } => {
                let mut value = state.clone().unwrap_or_default();
                value.extend_from_slice(token);
                let fits = value.len() as i64 == *length;
                (Some(value), fits)
            }
            KeyOperation::Del(count) => (None, *count == i64::from(state.is_some())),
        };
        if observed && !fits {
            return Vec::new();
        }
        vec![next]
    }
}

/// Checks one key's history; `Err` describes the violation.
pub fn check_key(key: &str, history: &[Entry<KeyOperation>]) -> Result<bool, String> {
    match linearizability::check(&KeyModel, None, history) {
        Verdict::Linearizable => Ok(true),
        Verdict::Undecided => Ok(false),
        Verdict::Violation { stuck, prefix } => {
            let entry = &history[stuck];
            Err(format!(
                "not linearizable on key {key}: after {prefix} of {} operations no order explains {:?} \
                 (called at {}, returned at {}{})",
                history.len(),
                entry.operation,
                entry.call,
                entry.ret,
                if entry.optional { ", outcome unknown" } else { "" }
            ))
        }
    }
}

/// A transaction's tokens: each was appended to both keys of its pair in one EXEC, so a read of
/// both keys in one EXEC sees each in both or in neither.
pub fn check_pair_read(first: &[u8], second: &[u8], tokens: &[Vec<u8>]) -> Result<(), String> {
    for token in tokens {
        let in_first = contains(first, token);
        let in_second = contains(second, token);
        if in_first != in_second {
            return Err(format!(
                "transaction {} is half-applied: an EXEC read saw it in {} but not in {}",
                String::from_utf8_lossy(token),
                if in_first { "the first key" } else { "the second key" },
                if in_first { "the second" } else { "the first" },
            ));
        }
    }
    Ok(())
}

fn contains(value: &[u8], token: &[u8]) -> bool {
    // Tokens end with ';' and contain none: a match is a whole token.
    value.split_inclusive(|byte| *byte == b';').any(|piece| piece == token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(call: u64, ret: u64, operation: KeyOperation) -> Entry<KeyOperation> {
        Entry { call, ret, operation, optional: false }
    }

    #[test]
    fn a_lost_acknowledged_append_and_a_stale_read_are_caught() {
        let lost = vec![
            entry(1, 2, KeyOperation::Append { token: b"a;".to_vec(), length: 2 }),
            entry(3, 4, KeyOperation::Get(None)),
        ];
        assert!(check_key("k", &lost).is_err());
        let stale = vec![
            entry(1, 2, KeyOperation::Set(b"1".to_vec())),
            entry(3, 4, KeyOperation::Set(b"2".to_vec())),
            entry(5, 6, KeyOperation::Get(Some(b"1".to_vec()))),
        ];
        assert!(check_key("k", &stale).is_err());
        let concurrent = vec![
            entry(1, 4, KeyOperation::Set(b"2".to_vec())),
            entry(2, 3, KeyOperation::Get(None)),
            entry(5, 6, KeyOperation::Get(Some(b"2".to_vec()))),
        ];
        assert_eq!(check_key("k", &concurrent), Ok(true));
        let mut unknown = entry(1, u64::MAX, KeyOperation::Append { token: b"x;".to_vec(), length: 0 });
        unknown.optional = true;
        assert_eq!(check_key("k", &[unknown.clone(), entry(2, 3, KeyOperation::Get(Some(b"x;".to_vec())))]), Ok(true));
        assert_eq!(check_key("k", &[unknown, entry(2, 3, KeyOperation::Get(None))]), Ok(true));
    }

    #[test]
    fn a_half_applied_transaction_is_caught() {
        let tokens = vec![b"t1;".to_vec(), b"t2;".to_vec()];
        assert!(check_pair_read(b"t1;t2;", b"t1;t2;", &tokens).is_ok());
        assert!(check_pair_read(b"", b"", &tokens).is_ok());
        assert!(check_pair_read(b"t1;", b"t1;t2;", &tokens).is_err());
    }
}
