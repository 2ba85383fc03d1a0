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
    /// Close the connection once everything before this is written (QUIT, protocol errors).
    Close,
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
        }
    }

    pub fn idle(&self, now: u64, timeout: u64) -> bool {
        self.engine_in_flight == 0 && now.saturating_sub(self.last_active) >= timeout
    }

    pub fn push_engine(&mut self, shape: ReplyShape) {
        self.engine_in_flight += 1;
        self.slots.push_back(Slot::Engine(shape, None));
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
        let slot = self.slots.iter_mut().find(|slot| matches!(slot, Slot::Engine(_, None)));
        let Some(Slot::Engine(shape, empty)) = slot else {
            panic!("an engine reply matches a command sent to the engine");
        };
        *empty = Some(shape.apply(reply));
        self.engine_in_flight -= 1;
    }

    /// Encodes the replies at the front that are ready; returns true at a close marker.
    pub fn encode_ready(&mut self) -> bool {
        while let Some(front) = self.slots.front() {
            match front {
                Slot::Engine(_, None) => return false,
                Slot::Close => {
                    self.slots.clear();
                    return true;
                }
                Slot::Engine(_, Some(_)) | Slot::Local(_) => {
                    if let Some(Slot::Engine(_, Some(reply)) | Slot::Local(reply)) = self.slots.pop_front() {
                        encode_reply(&reply, &mut self.output);
                    }
                }
            }
        }
        false
    }
}
