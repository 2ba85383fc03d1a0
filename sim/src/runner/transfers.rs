//! Transactions: each client owns two counters, `t{client}.a` and `t{client}.b`, and moves
//! amounts between them with `EXEC [INCRBY a x, INCRBY b -x]`, or swaps them with `EXEC [RENAME a
//! c, RENAME b a, RENAME c b]` (each RENAME may find its key missing), so their sum is always 0. EXEC's
//! reply must show a sum of 0, and so must every MGET of the pair, after any crash: a
//! transaction whose writes a crash split (one survived, the other not) breaks it. Sent to the
//! engine directly, not over simulated connections (MULTI/EXEC are the server's; its tests
//! cover them).

use quill_core::command::SetCondition;
use quill_core::{Reply, Request};
use rand::Rng;

use crate::runner::{Outstanding, Sim};

/// The pair of keys a client moves amounts between, and the key a swap passes through.
fn pair(client: usize) -> [Vec<u8>; 3] {
    [format!("t{client}.a").into_bytes(), format!("t{client}.b").into_bytes(), format!("t{client}.c").into_bytes()]
}

/// Whether `key` is a transfer key.
pub fn is_transfer_key(key: &[u8]) -> bool {
    key.first() == Some(&b't')
}

/// Whether the request is judged here: an EXEC, or a read of transfer keys.
pub fn is_transfer_request(request: &Request) -> bool {
    match request {
        Request::Exec { commands } => commands.iter().any(|command| match command {
            Request::IncrBy { key, .. } | Request::Rename { source: key, .. } => is_transfer_key(key),
            _ => false,
        }),
        Request::MGet { keys } => keys.iter().any(|key| is_transfer_key(key)),
        Request::Copy { source, .. } => is_transfer_key(source),
        Request::Get { key } => is_transfer_key(key),
        _ => false,
    }
}

/// Parses a counter's value (nil: 0).
fn amount(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Bulk(None) => Some(0),
        Reply::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Reply::Integer(value) => Some(*value),
        _ => None,
    }
}

/// The two amounts of an MGET of the pair (empty if the reply is not one).
fn pair_read(reply: &Reply) -> Vec<Option<i64>> {
    match reply {
        Reply::Array(Some(pair)) if pair.len() == 2 => pair.iter().map(amount).collect(),
        _ => Vec::new(),
    }
}

impl Sim {
    /// Now and then, a register SET becomes a transfer or a read of the client's pair.
    pub(crate) fn transfer_variant(&mut self, client: usize, request: Request) -> Request {
        // Not while the client's own WATCH waits for its EXEC: this EXEC would end that watch.
        let state = &self.clients[client];
        let eligible = matches!(request, Request::Set { .. })
            && !self.knobs.network
            && self.knobs.index_bytes_max >= quill_core::engine::INDEX_BYTES_LIMIT
            && state.follow_up.is_none()
            && state.watched.is_none();
        if !eligible || !self.variants.chosen() {
            return request;
        }
        let [from, to, through] = pair(client);
        if self.variants.rng.gen_bool(0.4) {
            return Request::MGet { keys: vec![from, to] };
        }
        if self.variants.rng.gen_bool(0.1) {
            // Alone, not in an EXEC: the one-command path of RENAME and COPY.
            return Request::Copy { source: from, destination: through, replace: true };
        }
        if self.variants.rng.gen_bool(0.25) {
            let rename = |source: &Vec<u8>, destination: &Vec<u8>| Request::Rename {
                source: source.clone(),
                destination: destination.clone(),
                only_if_absent: false,
            };
            // Read before and after: the pair must come back swapped.
            let read = Request::MGet { keys: vec![from.clone(), to.clone()] };
            let commands = vec![read.clone(), rename(&from, &through), rename(&to, &from), rename(&through, &to), read];
            return Request::Exec { commands };
        }
        let amount = self.variants.rng.gen_range(1..=100);
        let set = |key: &Vec<u8>, value: &[u8], condition| Request::Set {
            key: key.clone(),
            value: value.to_vec(),
            condition,
        };
        // Then the pair read inside the transaction, and the passing key written and deleted
        // again (so every command kind that names keys runs inside some EXEC).
        let commands = vec![
            Request::IncrBy { key: from.clone(), delta: amount },
            Request::Ping { message: None },
            Request::IncrBy { key: to.clone(), delta: -amount },
            Request::MGet { keys: vec![from.clone(), to] },
            Request::MSet { pairs: vec![(through.clone(), b"1".to_vec())] },
            set(&through, b"2", SetCondition::IfPresent),
            set(&through, b"3", SetCondition::IfAbsent),
            Request::Copy { source: from.clone(), destination: through.clone(), replace: true },
            Request::Copy { source: from, destination: through.clone(), replace: false },
            Request::Get { key: through.clone() },
            Request::Del { keys: vec![through.clone(), through] },
        ];
        Request::Exec { commands }
    }

    /// Every key the request (or its EXEC's commands) names counts among the keys ever written
    /// (DBSIZE, SCAN and the final reads): transfer and shared keys, judged by models of their own.
    pub(crate) fn know_keys(&mut self, request: &Request) {
        let commands = match request {
            Request::Exec { commands } => commands.as_slice(),
            single => std::slice::from_ref(single),
        };
        for command in commands {
            command.any_key(|key| {
                if !self.checker.keys.contains_key(key) {
                    self.checker.keys.insert(key.to_vec(), Default::default());
                }
                false // every key
            });
        }
    }

    /// Judges a reply to a transfer or to a read of transfer keys.
    pub(crate) fn on_transfer_reply(&mut self, outstanding: &Outstanding, reply: &Reply, responded: u64) {
        let invoked = outstanding.invoked;
        self.checker.end_read(invoked);
        let (what, sum) = match (&outstanding.request, reply) {
            (_, Reply::Error(text)) => {
                if self.classify_error(text, &outstanding.request, invoked, responded).is_none() {
                    let what = "an error reply no injected fault explains";
                    self.checker.fail(what, b"t", "a transfer's reply".into(), text.clone());
                }
                return;
            }
            (Request::Exec { commands }, Reply::Array(Some(items)))
                if items.len() == 5 && matches!(commands[1], Request::Rename { .. }) =>
            {
                let moved = |item: &Reply| *item == Reply::ok() || *item == Reply::error("ERR no such key");
                let (before, after) = (pair_read(&items[0]), pair_read(&items[4]));
                let swapped = before.len() == 2 && after == [before[1], before[0]];
                let sum = before.iter().try_fold(0i64, |sum, part| Some(sum + (*part)?));
                ("a swap's replies", sum.filter(|_| swapped && items[1..4].iter().all(moved)))
            }
            (Request::Exec { .. }, Reply::Array(Some(items))) if items.len() == 11 => {
                let parts = [amount(&items[0]), amount(&items[2])];
                let sum = parts.iter().try_fold(0i64, |sum, part| Some(sum + (*part)?));
                // GET of the copy: `a`'s value as INCRBY left it.
                let copied = parts[0].map(|value| Reply::Bulk(Some(value.to_string().into_bytes())));
                let tail = [Reply::ok(), Reply::ok(), Reply::Bulk(None), Reply::Integer(1), Reply::Integer(0)];
                let consistent = pair_read(&items[3]) == parts
                    && items[4..9] == tail
                    && Some(&items[9]) == copied.as_ref()
                    && items[10] == Reply::Integer(1);
                ("a transfer's replies", sum.filter(|_| consistent))
            }
            (Request::MGet { .. }, Reply::Array(Some(items))) if items.len() == 2 => {
                ("a transfer pair read by MGET", items.iter().try_fold(0i64, |sum, item| Some(sum + amount(item)?)))
            }
            // A copy of `a` (absent: nothing copied) onto the passing key, which the pair's sum
            // leaves out.
            (Request::Copy { .. }, Reply::Integer(0 | 1)) => ("a copy's reply", Some(0)),
            // The final verification reads every key alone: any integer.
            (Request::Get { .. }, value) => ("a transfer key's value", amount(value).map(|_| 0)),
            (_, other) => {
                let got = format!("{other:?}");
                return self.checker.fail("a transfer reply of the wrong shape", b"t", "[a, PONG, b]".into(), got);
            }
        };
        if sum != Some(0) {
            let got = format!("{reply:?}");
            let what = format!("{what} do not sum to 0 or disagree (a transaction split, or a command in it wrong)");
            self.checker.fail(what, b"t", "0".into(), got);
        }
    }

    /// Transfer keys' room, for the disk-full and index bounds: two per client.
    pub(crate) fn transfer_bytes_upper(&self) -> (u64, u64) {
        let keys = self.checker.keys.keys().filter(|key| is_transfer_key(key));
        let (mut live, mut index) = (0, 0);
        for key in keys {
            live += (quill_core::format::RECORD_HEADER_BYTES + key.len() + 20) as u64;
            index += quill_core::engine::index_entry_bytes(key.len());
        }
        (live, index)
    }
}
