//! One connection: its decoder, its replies in command order, its output buffer.

use std::collections::VecDeque;

use crate::command::{Reply, ReplyShape};
use crate::resp::{encode_reply, Decoder, Limits};

/// A command's place in the reply order.
enum Slot {
    /// Sent to the engine; its reply comes from there, in order, and takes this shape.
    Engine(ReplyShape, Option<Reply>),
    /// Answered by the server itself.
    Local(Reply),
    /// An EXEC sent to the engine: its reply array, merged with the replies of the queued
    /// commands the parser refused.
    Transaction(Vec<TransactionPart>, Option<Reply>),
    /// Close the connection once everything before this is written (QUIT, protocol errors).
    Close,
}

/// One command queued between MULTI and EXEC.
pub enum TransactionPart {
    /// Sent to the engine within the EXEC; its reply takes this shape.
    Engine(ReplyShape),
    /// Refused by the parser (a syntax error in its arguments): this is its reply in EXEC's.
    Refused(Reply),
}

/// A MULTI under way: the commands queued, and whether one was refused at once (EXEC then
/// answers EXECABORT).
#[derive(Default)]
pub struct Transaction {
    pub parts: Vec<TransactionPart>,
    pub requests: Vec<crate::command::Request>,
    pub failed: bool,
}

pub struct Connection {
    pub decoder: Decoder,
    slots: VecDeque<Slot>,
    /// Commands sent to the engine and not answered yet.
    pub engine_in_flight: usize,
    pub output: Vec<u8>,
    pub authenticated: bool,
    pub name: Option<Vec<u8>>,
    pub closing: bool,
    /// No more commands are parsed (after QUIT or a protocol error).
    pub stopped: bool,
    pub last_active: u64,
    /// For CLIENT LIST: the peer, when the connection began (ms of the `tick` clock), and the
    /// last command's name (from the command table: no allocation per command).
    pub peer: core::net::SocketAddr,
    pub created: u64,
    pub last_command: &'static str,
    /// Between MULTI and EXEC or DISCARD.
    pub transaction: Option<Transaction>,
}

impl Connection {
    pub fn new(limits: Limits, now: u64, peer: core::net::SocketAddr) -> Connection {
        Connection {
            decoder: Decoder::new(limits),
            slots: VecDeque::new(),
            engine_in_flight: 0,
            output: Vec::new(),
            authenticated: false,
            name: None,
            closing: false,
            stopped: false,
            last_active: now,
            peer,
            created: now,
            last_command: "NULL",
            transaction: None,
        }
    }

    pub fn idle(&self, now: u64, timeout: u64) -> bool {
        self.engine_in_flight == 0 && now.saturating_sub(self.last_active) >= timeout
    }

    /// Whether a command's reply may go straight to the output: no reply is owed ahead of it,
    /// and it is not queued in a transaction or refused for want of AUTH.
    pub fn answers_at_once(&self) -> bool {
        self.authenticated && self.transaction.is_none() && self.slots.is_empty() && !self.stopped
    }

    pub fn push_engine(&mut self, shape: ReplyShape) {
        self.engine_in_flight += 1;
        self.slots.push_back(Slot::Engine(shape, None));
    }

    /// An EXEC goes to the engine; `parts` say how its reply array becomes EXEC's.
    pub fn push_transaction(&mut self, parts: Vec<TransactionPart>) {
        self.engine_in_flight += 1;
        self.slots.push_back(Slot::Transaction(parts, None));
    }

    pub fn push_local(&mut self, reply: Reply) {
        self.slots.push_back(Slot::Local(reply));
    }

    pub fn push_close(&mut self) {
        self.stopped = true;
        self.slots.push_back(Slot::Close);
    }

    /// The engine answers in the order commands were submitted: fill the oldest open slot.
    pub fn engine_reply(&mut self, reply: Reply) {
        let slot =
            self.slots.iter_mut().find(|slot| matches!(slot, Slot::Engine(_, None) | Slot::Transaction(_, None)));
        match slot {
            Some(Slot::Engine(shape, empty)) => *empty = Some(shape.apply(reply)),
            Some(Slot::Transaction(parts, empty)) => *empty = Some(merge_transaction_reply(parts, reply)),
            _ => panic!("an engine reply matches a command sent to the engine"),
        }
        self.engine_in_flight -= 1;
    }

    /// Encodes the replies at the front that are ready; returns true at a close marker.
    pub fn encode_ready(&mut self) -> bool {
        while let Some(front) = self.slots.front() {
            match front {
                Slot::Engine(_, None) | Slot::Transaction(_, None) => return false,
                Slot::Close => {
                    self.slots.clear();
                    return true;
                }
                Slot::Engine(_, Some(_)) | Slot::Transaction(_, Some(_)) | Slot::Local(_) => {
                    if let Some(Slot::Engine(_, Some(reply)) | Slot::Transaction(_, Some(reply)) | Slot::Local(reply)) =
                        self.slots.pop_front()
                    {
                        encode_reply(&reply, &mut self.output);
                    }
                }
            }
        }
        false
    }
}

/// EXEC's reply: the engine's array, one element per command it ran, each in its command's
/// shape, with the parser's refusals in their places. An error (the whole EXEC refused, say
/// READONLY) passes through.
fn merge_transaction_reply(parts: &[TransactionPart], reply: Reply) -> Reply {
    let Reply::Array(Some(items)) = reply else { return reply };
    let mut items = items.into_iter();
    let merged = parts
        .iter()
        .map(|part| match part {
            TransactionPart::Engine(shape) => shape.apply(items.next().expect("one reply per command run")),
            TransactionPart::Refused(reply) => reply.clone(),
        })
        .collect();
    debug_assert!(items.next().is_none(), "no reply left over");
    Reply::Array(Some(merged))
}
