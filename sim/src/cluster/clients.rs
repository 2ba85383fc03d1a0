//! The cluster's clients: each sends one request at a time to some replica, follows MOVED to
//! the leader, retries what certainly did not happen, and records what it saw for the checker.

use std::collections::BTreeMap;

use quill_core::Reply;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::model::KeyOperation;
use crate::linearizability::Entry;

/// Keys that take every operation (registers that also append).
pub const REGISTER_KEYS: usize = 4;
/// Keys that only grow (APPENDs, single or in pairs inside one EXEC): transactions' atomicity is
/// read off them.
pub const APPEND_KEYS: usize = 3;

/// What a client asks.
#[derive(Clone, Debug)]
pub enum ClientOperation {
    Set {
        key: String,
        value: Vec<u8>,
    },
    Get {
        key: String,
    },
    Append {
        key: String,
        token: Vec<u8>,
    },
    Del {
        key: String,
    },
    /// EXEC of APPEND of one token to two keys.
    PairAppend {
        keys: [String; 2],
        token: Vec<u8>,
    },
    /// EXEC of GET of two keys.
    PairRead {
        keys: [String; 2],
    },
}

impl ClientOperation {
    pub fn commands(&self) -> (Vec<Vec<Vec<u8>>>, bool) {
        let word = |text: &str| text.as_bytes().to_vec();
        match self {
            ClientOperation::Set { key, value } => (vec![vec![word("SET"), word(key), value.clone()]], false),
            ClientOperation::Get { key } => (vec![vec![word("GET"), word(key)]], false),
            ClientOperation::Append { key, token } => (vec![vec![word("APPEND"), word(key), token.clone()]], false),
            ClientOperation::Del { key } => (vec![vec![word("DEL"), word(key)]], false),
            ClientOperation::PairAppend { keys, token } => {
                (keys.iter().map(|key| vec![word("APPEND"), word(key), token.clone()]).collect(), true)
            }
            ClientOperation::PairRead { keys } => (keys.iter().map(|key| vec![word("GET"), word(key)]).collect(), true),
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, ClientOperation::Get { .. } | ClientOperation::PairRead { .. })
    }

    /// Draws the next operation of `client` (its `number`th).
    pub fn draw(rng: &mut ChaCha8Rng, client: usize, number: u64) -> ClientOperation {
        let register = |rng: &mut ChaCha8Rng| format!("r{}", rng.gen_range(0..REGISTER_KEYS));
        let append_key = |rng: &mut ChaCha8Rng| format!("a{}", rng.gen_range(0..APPEND_KEYS));
        let token = format!("c{client}.{number};").into_bytes();
        match rng.gen_range(0..100) {
            0..=24 => ClientOperation::Set { key: register(rng), value: token },
            25..=44 => ClientOperation::Get { key: register(rng) },
            45..=54 => ClientOperation::Append { key: register(rng), token },
            55..=59 => ClientOperation::Del { key: register(rng) },
            60..=69 => ClientOperation::Get { key: append_key(rng) },
            70..=74 => ClientOperation::Append { key: append_key(rng), token },
            75..=89 => {
                let first = rng.gen_range(0..APPEND_KEYS);
                let second = (first + rng.gen_range(1..APPEND_KEYS)) % APPEND_KEYS;
                ClientOperation::PairAppend { keys: [format!("a{first}"), format!("a{second}")], token }
            }
            _ => {
                let first = rng.gen_range(0..APPEND_KEYS);
                let second = (first + rng.gen_range(1..APPEND_KEYS)) % APPEND_KEYS;
                ClientOperation::PairRead { keys: [format!("a{first}"), format!("a{second}")] }
            }
        }
    }
}

/// How a reply ends an attempt.
pub enum Verdict {
    /// The operation's result: it happened, with this reply.
    Done(Reply),
    /// Certainly not done: send it again (to `Some(replica)`, or to any).
    Retry(Option<u64>),
    /// It may or may not have happened.
    Unknown,
    /// Certainly not done, and not worth retrying (a read refused).
    Refused,
}

/// Reads a reply the cluster gave instead of a result (see quill-replica's contract).
pub fn classify(reply: Reply) -> Result<Verdict, String> {
    let Reply::Error(text) = &reply else { return Ok(Verdict::Done(reply)) };
    if let Some(rest) = text.strip_prefix("MOVED ") {
        let target = rest.rsplit_once(' ').map(|(_, address)| address);
        let replica = target.and_then(|address| address.strip_prefix("replica-")).and_then(|id| id.parse().ok());
        return match replica {
            Some(id) => Ok(Verdict::Retry(Some(id))),
            None => Err(format!("a MOVED reply names no replica: {text}")),
        };
    }
    if text.starts_with("CLUSTERDOWN") || text.starts_with("TRYAGAIN not committed") {
        return Ok(Verdict::Retry(None));
    }
    if text.starts_with("TRYAGAIN outcome unknown") {
        return Ok(Verdict::Unknown);
    }
    Err(format!("an unexpected error reply: {text}"))
}

/// Every key's history, as the checker takes it, and the transactions' tokens by key pair.
#[derive(Default)]
pub struct History {
    pub keys: BTreeMap<String, Vec<Entry<KeyOperation>>>,
    pub pair_tokens: BTreeMap<(String, String), Vec<Vec<u8>>>,
    /// The history's logical clock: every call and every return takes the next value.
    pub clock: u64,
    pub acknowledged_writes: u64,
    pub unknown_writes: u64,
}

impl History {
    pub fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn push(&mut self, key: &str, entry: Entry<KeyOperation>) {
        self.keys.entry(key.to_string()).or_default().push(entry);
    }

    /// Notes a transaction before it is sent, so that any read after may meet its token.
    pub fn note_pair(&mut self, operation: &ClientOperation) {
        if let ClientOperation::PairAppend { keys, token } = operation {
            let pair = ordered(keys);
            self.pair_tokens.entry(pair).or_default().push(token.clone());
        }
    }

    /// An operation whose outcome nobody saw: it may take effect at any later time, or never.
    pub fn record_unknown(&mut self, operation: &ClientOperation, call: u64) {
        if !operation.is_write() {
            return;
        }
        self.unknown_writes += 1;
        for (key, operation) in key_operations(operation, None) {
            self.push(&key, Entry { call, ret: u64::MAX, operation, optional: true });
        }
    }

    /// An operation that happened with `reply`. `Err`: a reply the operation cannot have.
    pub fn record_done(&mut self, operation: &ClientOperation, call: u64, reply: Reply) -> Result<(), String> {
        let ret = self.now();
        if operation.is_write() {
            self.acknowledged_writes += 1;
        }
        if let (ClientOperation::PairRead { keys }, Reply::Array(Some(replies))) = (operation, &reply) {
            if let [Reply::Bulk(first), Reply::Bulk(second)] = replies.as_slice() {
                let (first, second) = (first.clone().unwrap_or_default(), second.clone().unwrap_or_default());
                let (tokens_pair, flipped) = (ordered(keys), keys[0] > keys[1]);
                let (a, b) = if flipped { (&second, &first) } else { (&first, &second) };
                let tokens = self.pair_tokens.get(&tokens_pair).cloned().unwrap_or_default();
                super::model::check_pair_read(a, b, &tokens)?;
            }
        }
        for (key, operation) in key_operations(operation, Some(&reply)) {
            self.push(&key, Entry { call, ret, operation, optional: false });
        }
        Ok(())
    }
}

fn ordered(keys: &[String; 2]) -> (String, String) {
    let mut pair = keys.clone();
    pair.sort();
    let [first, second] = pair;
    (first, second)
}

/// The per-key operations a client operation made, with the replies it got (`None`: unknown).
fn key_operations(operation: &ClientOperation, reply: Option<&Reply>) -> Vec<(String, KeyOperation)> {
    let replies: Vec<Option<&Reply>> = match reply {
        Some(Reply::Array(Some(replies))) => replies.iter().map(Some).collect(),
        Some(reply) => vec![Some(reply)],
        None => vec![None, None],
    };
    let integer = |reply: Option<&Reply>| match reply {
        Some(Reply::Integer(value)) => *value,
        _ => -1, // never a valid length or count: the model refuses it if it was observed
    };
    let bulk = |reply: Option<&Reply>| match reply {
        Some(Reply::Bulk(value)) => value.clone(),
        _ => Some(b"<not a bulk reply>".to_vec()),
    };
    match operation {
        ClientOperation::Set { key, value } => vec![(key.clone(), KeyOperation::Set(value.clone()))],
        ClientOperation::Get { key } => vec![(key.clone(), KeyOperation::Get(bulk(replies[0])))],
        ClientOperation::Append { key, token } => {
            vec![(key.clone(), KeyOperation::Append { token: token.clone(), length: integer(replies[0]) })]
        }
        ClientOperation::Del { key } => vec![(key.clone(), KeyOperation::Del(integer(replies[0])))],
        ClientOperation::PairAppend { keys, token } => keys
            .iter()
            .zip(replies.iter().chain(std::iter::repeat(&None)))
            .map(|(key, reply)| (key.clone(), KeyOperation::Append { token: token.clone(), length: integer(*reply) }))
            .collect(),
        ClientOperation::PairRead { keys } => keys
            .iter()
            .zip(replies.iter().chain(std::iter::repeat(&None)))
            .map(|(key, reply)| (key.clone(), KeyOperation::Get(bulk(*reply))))
            .collect(),
    }
}
