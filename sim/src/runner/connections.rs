//! Network-mode clients: connections to the simulated server, bytes delivered in random
//! pieces, replies parsed from the bytes that come back, connections cut mid-command.

use crate::trace::TraceEvent;
use rand::Rng;

use crate::checker::Status;
use crate::faults::{FaultKind, Outcome};
use crate::runner::{written_keys, Sim};
use quill_core::Request;

impl Sim {
    /// Gives every workload client a fresh connection (at the start and after a crash).
    pub(crate) fn reconnect_all(&mut self) {
        if !self.knobs.network {
            return;
        }
        for client in 0..self.knobs.clients {
            self.reconnect(client);
        }
    }

    /// A fresh connection for `client`, with nothing sent or received on it yet.
    fn reconnect(&mut self, client: usize) {
        let connection = self.server.connect();
        let state = &mut self.clients[client];
        state.connection = Some(connection);
        state.unsent.clear();
        state.received.clear();
        state.expect_close = false;
    }

    /// Each client with bytes to send delivers a random prefix of them, or waits (delay).
    pub(crate) fn deliver_network(&mut self) {
        for client in 0..self.knobs.clients {
            let state = &self.clients[client];
            let (Some(connection), false) = (state.connection, state.unsent.is_empty()) else { continue };
            if self.workload_rng.gen_range(0..3) == 0 {
                continue;
            }
            let length = self.workload_rng.gen_range(1..=state.unsent.len());
            let piece: Vec<u8> = self.clients[client].unsent.drain(..length).collect();
            self.trace.record(self.tick, &[TraceEvent::Deliver.word(), client as u64, length as u64], |line| {
                line.push_str(&format!("client {client} delivers {length} bytes"))
            });
            self.server.receive(connection, &piece);
            self.drain_engine();
            if !self.is_running() {
                return;
            }
        }
    }

    /// Bytes the server wrote to `connection`: parse every complete reply.
    pub(crate) fn on_output(&mut self, connection: u64, bytes: &[u8]) {
        let Some(client) = self.clients.iter().position(|state| state.connection == Some(connection)) else { return };
        self.clients[client].received.extend_from_slice(bytes);
        let buffer = std::mem::take(&mut self.clients[client].received);
        let mut at = 0;
        loop {
            match crate::network::parse_reply(&buffer[at..]) {
                Ok(Some((reply, used))) => {
                    at += used;
                    self.on_reply(client, reply);
                }
                Ok(None) => break,
                Err(error) => {
                    return self.checker.fail("the server sent bytes that are not RESP", b"", "a reply".into(), error);
                }
            }
        }
        self.clients[client].received = buffer[at..].to_vec();
    }

    /// Cuts one client's connection, perhaps mid-command; its requests end unanswered.
    pub(crate) fn disconnect_one(&mut self) {
        let client = self.workload_rng.gen_range(0..self.knobs.clients);
        let Some(connection) = self.clients[client].connection else { return };
        let unsent = self.clients[client].unsent.len();
        self.faults.ledger.inject_resolved(FaultKind::Disconnect, Outcome::Harmless);
        self.trace.record(self.tick, &[TraceEvent::Disconnect.word(), client as u64, unsent as u64], |line| {
            line.push_str(&format!("client {client} disconnects with {unsent} bytes unsent"))
        });
        self.server.disconnect(connection);
        self.abandon_outstanding(client);
        self.reconnect(client);
        self.drain_engine();
    }

    /// The server closed a connection: expected after a protocol error (the client reconnects),
    /// a failure otherwise.
    pub(crate) fn on_close(&mut self, connection: u64) {
        let Some(client) = self.clients.iter().position(|state| state.connection == Some(connection)) else { return };
        if !self.clients[client].expect_close {
            let got = format!("connection {connection} closed");
            return self.checker.fail(
                "the server closed a connection the workload never asked to close",
                b"",
                "open".into(),
                got,
            );
        }
        self.trace.record(self.tick, &[TraceEvent::Reconnect.word(), client as u64], |line| {
            line.push_str(&format!("client {client} reconnects after a protocol error"))
        });
        self.abandon_outstanding(client);
        self.reconnect(client);
    }

    /// The client's requests will never be answered: writes become indeterminate.
    fn abandon_outstanding(&mut self, client: usize) {
        let now = self.checker.now();
        self.abandon_scan(client, false);
        self.forget_watch(client);
        let lost: Vec<crate::runner::Outstanding> = std::mem::take(&mut self.clients[client].outstanding).into();
        let connection = self.clients[client].connection;
        self.domain_requests_lost(&lost, false, connection);
        self.isolation_lost(&lost, false);
        for outstanding in lost {
            if crate::runner::isolation::is_isolation_request(&outstanding.request) {
                continue;
            }
            if crate::runner::domains::domain_request_key(&outstanding.request).is_some() {
                continue;
            }
            if matches!(outstanding.request, Request::FlushAll) {
                self.checker.end_flush(outstanding.op_id, Status::Indeterminate, now);
                continue;
            }
            let keys = written_keys(&outstanding.request);
            if keys.is_empty() || self.judges_history(&outstanding.request) {
                self.checker.end_read(outstanding.invoked);
            }
            for key in keys {
                self.checker.end_write(key, outstanding.op_id, Status::Indeterminate, now);
            }
        }
    }
}
