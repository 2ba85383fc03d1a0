//! The Raft log and `HardState` as keys of the replica's log engine (its own volume, as TiKV
//! keeps its Raft log apart from its key-value data). The engine gives them what it gives any
//! key: checksums, torn-write recovery, mirror copies, group commit, and a durable reply.
//!
//! Keys: `raft/hard-state` holds the protobuf-encoded `HardState`; `raft/entry/` followed by
//! the entry's index as 8 big-endian bytes holds the protobuf-encoded `Entry`; after a
//! truncation, `raft/first-index` holds the first entry kept (8 bytes, little-endian).
//!
//! A Ready's entries and hard state go in EXECs (one batch each, all or none) of at most
//! `chunk_bytes` of values, the hard state in the last: batches become durable in log order, so
//! a crash leaves a prefix of them. Entries a new leader overwrote are deleted in the same
//! EXECs; where a crash leaves older entries after newer ones, the load drops them (a Raft log's
//! terms never decrease).

use protobuf::Message as _;
use quill_core::command::SetCondition;
use quill_core::Request;
use raft::eraftpb::{Entry, HardState};

pub const HARD_STATE_KEY: &[u8] = b"raft/hard-state";
/// The log's first entry after a truncation (8 bytes, little-endian): entries before it are
/// gone, and this one's term is the log's anchor (raft-rs's snapshot metadata).
pub const FIRST_INDEX_KEY: &[u8] = b"raft/first-index";
/// Entries deleted per request at most: a request is one batch, and a batch holds a bounded
/// number of tombstones (about 45 bytes each; 128 fit the smallest batches the simulator draws).
const DELETES_PER_REQUEST_MAX: usize = 128;
const ENTRY_PREFIX: &[u8] = b"raft/entry/";

pub fn entry_key(index: u64) -> Vec<u8> {
    let mut key = ENTRY_PREFIX.to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The index an entry key names; `None` for other keys.
pub fn entry_index(key: &[u8]) -> Option<u64> {
    let suffix = key.strip_prefix(ENTRY_PREFIX)?;
    Some(u64::from_be_bytes(suffix.try_into().ok()?))
}

/// The requests that make `entries` and `hard_state` durable, then delete the entries from
/// `stale_from` to `stale_to` (inclusive) that they replace. A crash between them leaves
/// stale entries of a lower term after the new ones, which the next load drops.
pub fn persist_requests(
    entries: &[Entry],
    hard_state: Option<&HardState>,
    stale: Option<(u64, u64)>,
    chunk_bytes: usize,
) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bytes = 0usize;
    for entry in entries {
        let value = entry.write_to_bytes().expect("an entry encodes");
        if bytes + value.len() > chunk_bytes && !pairs.is_empty() {
            requests.push(exec(std::mem::take(&mut pairs)));
            bytes = 0;
        }
        bytes += value.len();
        pairs.push((entry_key(entry.index), value));
    }
    if let Some(hard_state) = hard_state {
        pairs.push((HARD_STATE_KEY.to_vec(), hard_state.write_to_bytes().expect("a hard state encodes")));
    }
    if !pairs.is_empty() {
        requests.push(exec(pairs));
    }
    if let Some((from, to)) = stale {
        // In EXECs too: the persist path reads every reply as an EXEC's.
        let deletes = delete_requests(from..=to);
        requests.extend(deletes.into_iter().map(|delete| Request::Exec { commands: vec![delete] }));
    }
    requests
}

fn exec(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Request {
    Request::Exec { commands: vec![Request::MSet { pairs }] }
}

/// DELs of the entries at `indexes`, at most `DELETES_PER_REQUEST_MAX` keys each.
pub fn delete_requests(indexes: impl IntoIterator<Item = u64>) -> Vec<Request> {
    let keys: Vec<Vec<u8>> = indexes.into_iter().map(entry_key).collect();
    keys.chunks(DELETES_PER_REQUEST_MAX).map(|chunk| Request::Del { keys: chunk.to_vec() }).collect()
}

/// The requests that truncate the log before `first` (entries from `old_first`): the new first
/// index first, so that a crash between them leaves entries the next load drops.
pub fn truncate_requests(old_first: u64, first: u64) -> Vec<Request> {
    let mut requests = vec![Request::Set {
        key: FIRST_INDEX_KEY.to_vec(),
        value: first.to_le_bytes().to_vec(),
        condition: SetCondition::Always,
    }];
    requests.extend(delete_requests(old_first..first));
    requests
}

pub fn decode_first_index(value: &[u8]) -> Result<u64, LoadError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| LoadError::BadFirstIndex(value.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the Raft log's first index has {0} bytes, not 8")]
    BadFirstIndex(usize),
    #[error("the Raft log's key {key:?} holds an entry that does not decode: {error}")]
    BadEntry { key: Vec<u8>, error: String },
    #[error("the Raft hard state does not decode: {0}")]
    BadHardState(String),
    #[error("entry key for index {key_index} holds entry {entry_index}")]
    MisplacedEntry { key_index: u64, entry_index: u64 },
}

pub fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, LoadError> {
    let entry = Entry::parse_from_bytes(value)
        .map_err(|error| LoadError::BadEntry { key: key.to_vec(), error: error.to_string() })?;
    let key_index = entry_index(key).expect("an entry key");
    if entry.index != key_index {
        return Err(LoadError::MisplacedEntry { key_index, entry_index: entry.index });
    }
    Ok(entry)
}

pub fn decode_hard_state(value: &[u8]) -> Result<HardState, LoadError> {
    HardState::parse_from_bytes(value).map_err(|error| LoadError::BadHardState(error.to_string()))
}

/// The usable log from the entries found (sorted by index): contiguous from `first` (1, or the
/// first index a truncation kept), terms never decreasing. What precedes `first`, and what
/// follows a gap or a lower term, is a crash's leftover; its indexes are returned for deletion.
pub fn usable_prefix(entries: Vec<Entry>, first: u64) -> (Vec<Entry>, Vec<u64>) {
    let mut usable: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut leftover = Vec::new();
    let mut broken = false;
    for entry in entries {
        let fits = !broken
            && match usable.last() {
                None => entry.index == first,
                Some(last) => entry.index == last.index + 1 && entry.term >= last.term,
            };
        if fits {
            usable.push(entry);
        } else {
            // Before `first`: a truncation's leftover, which breaks nothing after it.
            broken |= entry.index >= first;
            leftover.push(entry.index);
        }
    }
    (usable, leftover)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    #[test]
    fn a_lower_term_or_a_gap_ends_the_usable_log() {
        let (usable, leftover) = usable_prefix(vec![entry(1, 1), entry(2, 2), entry(3, 1), entry(4, 2)], 1);
        assert_eq!(usable.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(leftover, vec![3, 4]);
        let (usable, leftover) = usable_prefix(vec![entry(1, 1), entry(3, 1)], 1);
        assert_eq!(usable.len(), 1);
        assert_eq!(leftover, vec![3]);
        let (usable, leftover) = usable_prefix(vec![entry(2, 1)], 1);
        assert!(usable.is_empty());
        assert_eq!(leftover, vec![2]);
        // Entries a truncation left behind (a crash between its writes) do not cut the log
        // after them: the bug cluster seed 76 of 5 replicas found.
        let (usable, leftover) = usable_prefix(vec![entry(3, 1), entry(4, 1), entry(5, 1), entry(6, 2)], 5);
        assert_eq!(usable.iter().map(|e| e.index).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(leftover, vec![3, 4]);
    }

    #[test]
    fn a_truncation_names_its_first_index_before_it_deletes() {
        let requests = truncate_requests(1, 2_050);
        assert!(
            matches!(&requests[0], Request::Set { key, value, .. } if key == FIRST_INDEX_KEY && decode_first_index(value).unwrap() == 2_050)
        );
        let deleted: Vec<u64> = requests[1..]
            .iter()
            .flat_map(|request| match request {
                Request::Del { keys } => keys.iter().map(|key| entry_index(key).unwrap()).collect::<Vec<_>>(),
                _ => panic!("a DEL"),
            })
            .collect();
        assert_eq!(deleted, (1..2_050).collect::<Vec<_>>());
        assert_eq!(requests.len(), 1 + 2_049usize.div_ceil(DELETES_PER_REQUEST_MAX));
    }

    #[test]
    fn entries_are_chunked_and_the_hard_state_goes_last() {
        let entries: Vec<Entry> =
            (1..=5).map(|index| Entry { index, term: 1, data: vec![7; 100].into(), ..Default::default() }).collect();
        let hard_state = HardState { term: 1, vote: 2, commit: 3, ..Default::default() };
        let requests = persist_requests(&entries, Some(&hard_state), Some((6, 300)), 250);
        // Entries in chunks of at most 250 bytes, the hard state with the last, then the stale
        // entries' deletes in bounded EXECs.
        assert_eq!(requests.len(), 3 + 295usize.div_ceil(DELETES_PER_REQUEST_MAX));
        let Request::Exec { commands } = &requests[2] else { panic!("an EXEC") };
        let Request::MSet { pairs } = &commands[0] else { panic!("an MSET") };
        assert_eq!(pairs.last().unwrap().0, HARD_STATE_KEY);
        let deleted: usize = requests[3..]
            .iter()
            .map(|request| match request {
                Request::Exec { commands } => match &commands[..] {
                    [Request::Del { keys }] => {
                        assert!(keys.len() <= DELETES_PER_REQUEST_MAX);
                        keys.len()
                    }
                    other => panic!("a DEL alone, not {other:?}"),
                },
                other => panic!("an EXEC, not {other:?}"),
            })
            .sum();
        assert_eq!(deleted, 295);
        let decoded = decode_entry(&pairs[0].0, &pairs[0].1).unwrap();
        assert_eq!(decoded.index, 5);
    }
}
