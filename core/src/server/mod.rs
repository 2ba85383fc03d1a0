//! The Redis-protocol server, sans-I/O: connections' bytes in, the engine's I/O and the
//! connections' reply bytes out. A socket loop (in `quill-io-real`) or the simulator drives it.
//!
//! **Inputs**: [`Server::connect`], [`Server::receive`] (bytes read from a connection),
//! [`Server::disconnect`], [`Server::complete`] (an I/O completion), [`Server::tick`].
//! **Outputs**, drained after every input in this order: [`Server::poll_io`] until `None`, then
//! [`Server::poll_output`] (bytes to write to a connection) until `None`, then
//! [`Server::poll_close`] (connections to close once their output is written) until `None`.
//! No drain feeds the engine: commands a connection held back while its output piled up run at
//! the next input, and [`Server::poll_timeout`] asks for a `tick` now when there are any.
//! [`Server::wants_input`] says whether to keep reading a connection (backpressure).

mod admin;
mod clients;
mod connection;
mod info;
mod transaction;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::engine::{ClientId, Engine};
use crate::io::{IoCompletion, IoRequest};
use crate::resp::Limits;
use connection::Connection;

/// The first client id for [`Server::submit_direct`].
pub const DIRECT_CLIENT_BASE: ClientId = 1 << 48;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// With a password, every command but AUTH, HELLO and QUIT is refused until AUTH.
    pub requirepass: Option<Vec<u8>>,
    pub limits: Limits,
    /// Connections at most; more are refused with Redis's error.
    pub clients_max: usize,
    /// A connection's unsent replies at most, in bytes; beyond it the connection is closed.
    pub output_bytes_max: usize,
    /// Stop reading a connection while its unsent replies exceed this many bytes.
    pub output_bytes_pause: usize,
    /// Commands one connection may have in the engine at once; more wait in its buffer.
    pub commands_in_flight_max: usize,
    /// Close a connection idle this long (milliseconds of the `tick` clock; `None`: never).
    pub idle_timeout_ms: Option<u64>,
    /// Redis's protected mode: with no password, only loopback peers are served; others get
    /// [`PROTECTED_MODE_DENIED`] and are closed.
    pub protected_mode: bool,
}

/// What a non-loopback peer gets in protected mode (Redis's `-DENIED` text, reworded).
pub const PROTECTED_MODE_DENIED: &str = "DENIED QuillKV is running in protected mode because protected mode is enabled and no password is set. \
In this mode connections are only accepted from the loopback interface. To accept connections from other hosts, restart \
quill serve with a password (--requirepass-file PATH, or --requirepass), or, on a network you trust, with --protected-mode no.";

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            requirepass: None,
            limits: Limits::default(),
            clients_max: 10_000,
            output_bytes_max: 64 << 20,
            output_bytes_pause: 1 << 20,
            commands_in_flight_max: 1024,
            idle_timeout_ms: None,
            protected_mode: true,
        }
    }
}

/// Counters for INFO.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    pub connections_received: u64,
    pub connections_rejected: u64,
    pub commands_processed: u64,
    pub protocol_errors: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

pub struct Server {
    engine: Engine,
    config: ServerConfig,
    connections: BTreeMap<ClientId, Connection>,
    client_id_next: ClientId,
    /// Connections with bytes to send, in the order they got them.
    output_ready: VecDeque<ClientId>,
    output_queued: BTreeSet<ClientId>,
    /// Connections whose output was drained: commands held back by their backlog run at the
    /// next input (a drain never feeds the engine), and `poll_timeout` asks for it now.
    resume: BTreeSet<ClientId>,
    closes: VecDeque<ClientId>,
    /// Argument buffers lent to each command in turn (see `Arguments::copy_into`).
    argument_scratch: Vec<Vec<u8>>,
    /// Replies to clients that submitted requests directly, not over a connection.
    direct_replies: VecDeque<(ClientId, crate::Reply)>,
    now: u64,
    started_at: u64,
    stats: ServerStats,
    /// Wall-clock time, Unix milliseconds (TIME, LASTSAVE); see [`Server::set_unix_time_ms`].
    unix_time_ms: u64,
    /// LASTSAVE: when the last checkpoint completed (or the server started), Unix seconds.
    last_save_unix_s: u64,
    checkpoints_seen: u64,
    shutdown: Option<Shutdown>,
}

/// A SHUTDOWN a client asked for: the driver stops serving and exits, after the clean-shutdown
/// checkpoint or without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    Checkpoint,
    NoCheckpoint,
}

impl Server {
    pub fn new(engine: Engine, mut config: ServerConfig) -> Server {
        assert!(config.commands_in_flight_max > 0);
        // A bulk string larger than the engine accepts is refused by the parser already.
        config.limits.bulk_bytes_max = config.limits.bulk_bytes_max.min(engine.value_bytes_max());
        Server {
            engine,
            config,
            connections: BTreeMap::new(),
            client_id_next: 1,
            output_ready: VecDeque::new(),
            output_queued: BTreeSet::new(),
            resume: BTreeSet::new(),
            closes: VecDeque::new(),
            argument_scratch: Vec::new(),
            direct_replies: VecDeque::new(),
            now: 0,
            started_at: 0,
            stats: ServerStats::default(),
            unix_time_ms: 0,
            last_save_unix_s: 0,
            checkpoints_seen: 0,
            shutdown: None,
        }
    }

    /// Wall-clock time, in Unix milliseconds: an input like `tick`'s monotonic time, for the
    /// commands that report the time of day (TIME, LASTSAVE) and for expiry (the engine's
    /// `set_unix_time_ms`). The driver passes it before `tick`; the simulator passes virtual
    /// time. The first call also stands for the start.
    pub fn set_unix_time_ms(&mut self, unix_ms: u64) {
        if self.last_save_unix_s == 0 {
            self.last_save_unix_s = unix_ms / 1000;
        }
        self.unix_time_ms = unix_ms;
        self.engine.set_unix_time_ms(unix_ms);
    }

    /// A client sent SHUTDOWN: stop serving, write the checkpoint if it says so, and exit.
    pub fn shutdown_requested(&self) -> Option<Shutdown> {
        self.shutdown
    }

    /// Asks the engine for an index checkpoint now (a clean shutdown); drain `poll_io` after.
    pub fn checkpoint_now(&mut self) {
        self.engine.checkpoint_now();
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// A new connection from the loopback interface (the simulator's clients, tests).
    pub fn connect(&mut self) -> ClientId {
        self.connect_from(core::net::SocketAddr::from((core::net::Ipv4Addr::LOCALHOST, 0)))
    }

    /// A new connection from `peer`. Beyond the client limit it gets Redis's error and is
    /// closed at once; so is a non-loopback peer in protected mode with no password.
    pub fn connect_from(&mut self, peer: core::net::SocketAddr) -> ClientId {
        let id = self.client_id_next;
        self.client_id_next += 1;
        self.stats.connections_received += 1;
        let mut connection = Connection::new(self.config.limits, self.now, peer);
        connection.authenticated = self.config.requirepass.is_none();
        self.connections.insert(id, connection);
        if self.connections.len() > self.config.clients_max {
            self.stats.connections_rejected += 1;
            self.push_local(id, crate::Reply::error("ERR max number of clients reached"));
            self.close_after_output(id);
        } else if self.protected_mode_denies(peer.ip()) {
            self.stats.connections_rejected += 1;
            self.push_local(id, crate::Reply::error(PROTECTED_MODE_DENIED));
            self.close_after_output(id);
        }
        id
    }

    /// Whether protected mode turns `peer` away: on, no password, and not a loopback address
    /// (an IPv4 address mapped into IPv6 counts as the IPv4 one).
    pub fn protected_mode_denies(&self, peer: core::net::IpAddr) -> bool {
        self.config.protected_mode && self.config.requirepass.is_none() && !peer.to_canonical().is_loopback()
    }

    /// Bytes read from a connection.
    pub fn receive(&mut self, client: ClientId, bytes: &[u8]) {
        self.resume_drained();
        let now = self.now;
        let Some(connection) = self.connections.get_mut(&client) else { return };
        if connection.closing {
            return;
        }
        self.stats.bytes_received += bytes.len() as u64;
        connection.decoder.feed(bytes);
        connection.last_active = now;
        self.process_commands(client);
        self.drain_engine();
    }

    /// The connection has gone (closed by the peer, or closed after `poll_close`).
    pub fn disconnect(&mut self, client: ClientId) {
        if self.connections.remove(&client).is_some() {
            self.engine.disconnect(client);
            self.drain_engine();
        }
    }

    pub fn complete(&mut self, completion: IoCompletion) {
        self.resume_drained();
        self.engine.complete(completion);
        self.drain_engine();
    }

    /// Input: an index partition back from the driver (see `Engine::complete_index_work`).
    pub fn complete_index_work(&mut self, work: crate::IndexWork) {
        self.resume_drained();
        self.engine.complete_index_work(work);
        self.drain_engine();
    }

    /// Output: a large buffer the engine is done with (see `Engine::poll_spare_buffer`).
    pub fn poll_spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.engine.poll_spare_buffer()
    }

    /// Output: index work recovery hands out (see `Engine::poll_index_work`).
    pub fn poll_index_work(&mut self) -> Option<crate::IndexWork> {
        self.engine.poll_index_work()
    }

    /// The end of the loop turn, with the time in milliseconds (see [`crate::engine::Engine::tick`]);
    /// closes connections idle past the timeout.
    pub fn tick(&mut self, now: u64) {
        if self.started_at == 0 && self.now == 0 {
            self.started_at = now;
        }
        self.now = now;
        self.resume_drained();
        self.engine.tick(now);
        self.drain_engine();
        let Some(timeout) = self.config.idle_timeout_ms else { return };
        let idle: Vec<ClientId> = self
            .connections
            .iter()
            .filter(|(_, connection)| !connection.closing && connection.idle(now, timeout))
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close_after_output(id);
        }
    }

    pub fn poll_io(&mut self) -> Option<IoRequest> {
        self.engine.poll_io()
    }

    /// When the engine wants [`Server::tick`] next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.resume.is_empty() {
            return Some(self.now);
        }
        self.engine.poll_timeout()
    }

    /// Bytes to write to a connection, all of its pending output at once.
    pub fn poll_output(&mut self) -> Option<(ClientId, Vec<u8>)> {
        let mut bytes = Vec::new();
        let id = self.poll_output_into(&mut bytes)?;
        Some((id, bytes))
    }

    /// Like [`Server::poll_output`], but appends the bytes to `into` and keeps the connection's
    /// buffer (and its capacity) for the next replies: no allocation per flush.
    pub fn poll_output_into(&mut self, into: &mut Vec<u8>) -> Option<ClientId> {
        while let Some(id) = self.output_ready.pop_front() {
            self.output_queued.remove(&id);
            let Some(connection) = self.connections.get_mut(&id) else { continue };
            if connection.output.is_empty() {
                continue;
            }
            into.extend_from_slice(&connection.output);
            self.stats.bytes_sent += connection.output.len() as u64;
            connection.output.clear();
            self.after_output_drained(id);
            return Some(id);
        }
        None
    }

    /// A connection to close now that its output has been handed out.
    pub fn poll_close(&mut self) -> Option<ClientId> {
        let id = self.closes.pop_front()?;
        self.connections.remove(&id);
        self.engine.disconnect(id);
        Some(id)
    }

    /// Whether to keep reading from the connection: not while its replies pile up unsent.
    pub fn wants_input(&self, client: ClientId) -> bool {
        self.connections
            .get(&client)
            .is_some_and(|connection| !connection.closing && connection.output.len() < self.config.output_bytes_pause)
    }

    /// Submits a request for a client that is not a connection (an embedded caller, the
    /// simulator's verifier); its reply comes out of [`Server::poll_direct_reply`]. Direct client
    /// ids must not collide with connection ids, which count up from 1: use
    /// [`DIRECT_CLIENT_BASE`] and above.
    pub fn submit_direct(&mut self, client: ClientId, request: crate::Request) {
        self.resume_drained();
        assert!(client >= DIRECT_CLIENT_BASE, "direct client ids start at DIRECT_CLIENT_BASE");
        self.engine.submit(client, request);
        self.drain_engine();
    }

    /// The engine's next cache change (with `Config::publish_cache`); drain before replies.
    pub fn poll_cache_change(&mut self) -> Option<crate::engine::CacheChange> {
        self.engine.poll_cache_change()
    }

    pub fn poll_direct_reply(&mut self) -> Option<(ClientId, crate::Reply)> {
        self.direct_replies.pop_front()
    }

    /// Replies drained from the engine go to their connections, in order.
    fn drain_engine(&mut self) {
        let written = self.engine.stats().checkpoints_written;
        if written != self.checkpoints_seen {
            self.checkpoints_seen = written; // LASTSAVE: a checkpoint completed
            self.last_save_unix_s = self.unix_time_ms / 1000;
        }
        while let Some((client, reply)) = self.engine.poll_reply() {
            if client >= DIRECT_CLIENT_BASE {
                self.direct_replies.push_back((client, reply));
                continue;
            }
            // The engine was told of every connection that closed: it drops their replies.
            let connection = self.connections.get_mut(&client).expect("a reply for a connection that is gone");
            connection.engine_reply(reply);
            self.flush_ready(client);
            self.process_commands(client);
        }
    }

    /// Moves answered commands' replies, in order, to the connection's output.
    fn flush_ready(&mut self, client: ClientId) {
        let Some(connection) = self.connections.get_mut(&client) else { return };
        let closes = connection.encode_ready();
        let has_output = !connection.output.is_empty();
        let overflow = connection.output.len() > self.config.output_bytes_max;
        if has_output && self.output_queued.insert(client) {
            self.output_ready.push_back(client);
        }
        if closes || overflow {
            self.close_after_output(client);
        }
    }

    fn after_output_drained(&mut self, client: ClientId) {
        self.resume.insert(client);
    }

    /// Runs the commands of connections whose output a drain emptied (see `resume`).
    fn resume_drained(&mut self) {
        if self.resume.is_empty() {
            return;
        }
        // Popped, not taken: the set keeps its node (no allocation per drain). Processing a
        // connection's commands never drains output, so nothing is added meanwhile.
        for _ in 0..self.resume.len() {
            let Some(client) = self.resume.pop_first() else { break };
            self.process_commands(client);
        }
        debug_assert!(self.resume.is_empty(), "every drained connection resumed");
        self.drain_engine();
    }

    fn close_after_output(&mut self, client: ClientId) {
        let Some(connection) = self.connections.get_mut(&client) else { return };
        if !connection.closing {
            connection.closing = true;
            self.closes.push_back(client);
        }
        if !connection.output.is_empty() && self.output_queued.insert(client) {
            self.output_ready.push_back(client);
        }
    }

    fn push_local(&mut self, client: ClientId, reply: crate::Reply) {
        if let Some(connection) = self.connections.get_mut(&client) {
            connection.push_local(reply);
        }
        self.flush_ready(client);
    }
}
