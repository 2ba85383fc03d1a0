//! `quill serve`'s network loop: one thread runs the sans-I/O [`Server`] (RESP connections and
//! the engine) over non-blocking TCP sockets and the storage driver.
//!
//! Why not sockets on io_uring too: the loop waits in `poll(2)` on the sockets and runs the
//! storage driver (io_uring or pread/pwrite) between waits; when storage I/O is in flight it
//! polls sockets without blocking and then waits on the driver only if no socket had work. One
//! thread, one engine, no locks; the engine's batching (group commit, many reads in flight)
//! comes from the sans-I/O core either way.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use quill_core::server::{Server, ServerConfig};
use quill_core::{Config, Engine, IoCompletion};

use crate::driver::{open_driver, Driver, IoChoice};
use crate::index_workers::{IndexWorkHost, IndexWorkers};
use crate::peer::{Peer, Received};
use crate::volume::{random_volume_id, Volume, VolumeState};
use crate::DriverError;

/// Bytes read from one connection per loop turn at most, so one client cannot starve others.
const READ_BYTES_PER_TURN_MAX: usize = 1 << 20;
/// How long `poll(2)` sleeps when nothing is in flight, in milliseconds.
const IDLE_WAIT_MS: i32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not open the volume: {0}")]
    Open(quill_core::OpenError),
    #[error("storage driver failed: {0}")]
    Driver(#[from] DriverError),
    #[error("socket error: {0}")]
    Socket(#[from] std::io::Error),
}

/// Where `quill serve` listens: plain TCP, TLS, or both.
pub struct Listeners {
    pub plain: Option<TcpListener>,
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

struct Loop {
    server: Server,
    driver: Box<dyn Driver>,
    /// Each listener, with the TLS configuration its connections use (none: plain).
    listeners: Vec<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    peers: BTreeMap<u64, Peer>,
    /// Stop reading a connection while this many reply bytes wait for it (backpressure), and
    /// close it beyond `output_bytes_max` (a reader too slow for its own replies).
    output_bytes_pause: usize,
    output_bytes_max: usize,
    plaintext: Vec<u8>,
    completions: Vec<IoCompletion>,
    read_buffer: Vec<u8>,
    output: Vec<u8>,
    started: Instant,
    /// What the log last said about the engine, so each change is logged once.
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    compaction: Option<quill_core::CompactionState>,
    read_only: bool,
}

/// Serves until `stop` is set. The volume is formatted if blank, else recovered, first; then
/// `on_ready` runs, once, before the first connection is served.
pub fn serve(
    volume: &Volume,
    config: Config,
    io: IoChoice,
    server_config: ServerConfig,
    listeners: Listeners,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(),
) -> Result<(), ServeError> {
    let engine = match volume.state {
        VolumeState::Blank => Engine::format(config, random_volume_id()?),
        VolumeState::Formatted => Engine::open(config),
    };
    let mut all = Vec::new();
    all.extend(listeners.plain.map(|listener| (listener, None)));
    all.extend(listeners.tls.map(|(listener, config)| (listener, Some(config))));
    for (listener, _) in &all {
        listener.set_nonblocking(true)?;
    }
    let mut state = Loop {
        output_bytes_pause: server_config.output_bytes_pause,
        output_bytes_max: server_config.output_bytes_max,
        server: Server::new(engine, server_config),
        driver: open_driver(io, volume.file.clone()),
        listeners: all,
        peers: BTreeMap::new(),
        plaintext: Vec::with_capacity(64 * 1024),
        completions: Vec::new(),
        read_buffer: vec![0; 64 * 1024],
        output: Vec::with_capacity(64 * 1024),
        started: Instant::now(),
        seen: Seen::default(),
    };
    let formatting = volume.state == VolumeState::Blank;
    state.open_engine()?;
    state.log_open(formatting, volume);
    on_ready();
    while !stop.load(Ordering::Relaxed) && state.server.shutdown_requested().is_none() {
        state.turn()?;
        state.log_changes();
    }
    if state.server.shutdown_requested() == Some(quill_core::server::Shutdown::NoCheckpoint) {
        tracing::info!("shutting down (SHUTDOWN NOSAVE): no checkpoint; the next start scans the log");
        return Ok(());
    }
    tracing::info!("shutting down: writing an index checkpoint so the next start need not scan the log");
    let started = Instant::now();
    state.checkpoint_before_exit()?;
    let stats = state.server.engine().stats();
    tracing::info!(
        checkpoints_written = stats.checkpoints_written,
        "shutdown checkpoint done in {} ms",
        started.elapsed().as_millis()
    );
    Ok(())
}

impl Loop {
    /// Says how the volume opened: formatted, or recovered from a checkpoint or a full scan.
    fn log_open(&self, formatted: bool, volume: &Volume) {
        let engine = self.server.engine();
        let elapsed_ms = self.started.elapsed().as_millis();
        let path = volume.path.display();
        if formatted {
            tracing::info!("formatted {path} ({} bytes) in {elapsed_ms} ms", volume.size_bytes);
            return;
        }
        let stats = engine.stats();
        let from = if stats.checkpoint_loaded { "from a checkpoint" } else { "by a full scan of the log" };
        tracing::info!(
            batches_replayed = stats.recovered_batches,
            bytes_read = stats.recovery_bytes_read,
            keys = engine.key_count(),
            batches_repaired = stats.batches_repaired,
            "recovered {path} {from} in {elapsed_ms} ms"
        );
        if let Some(reason) = &stats.checkpoint_rejected {
            tracing::warn!("the checkpoint was not usable ({reason}); the whole log was scanned instead");
        }
        if let Some(block) = stats.truncated_at_block {
            tracing::debug!("the log's valid batches end at block {block}");
        }
    }

    /// Logs compaction pausing or halting, and a switch to read-only, once each.
    fn log_changes(&mut self) {
        let engine = self.server.engine();
        let compaction = engine.compaction_state();
        if self.seen.compaction != Some(compaction) {
            match compaction {
                quill_core::CompactionState::Paused => tracing::info!(
                    "compaction paused: a whole lap of the log gained nothing; it resumes when writes make garbage"
                ),
                quill_core::CompactionState::Halted => {
                    tracing::error!("compaction halted at data it could not read; writes may soon be refused (OOM)")
                }
                _ => tracing::debug!("compaction {compaction:?}"),
            }
            self.seen.compaction = Some(compaction);
        }
        if let Some(reason) = engine.read_only_reason().filter(|_| !self.seen.read_only) {
            tracing::error!("the engine is read-only from now on: {reason}; restart to recover");
            self.seen.read_only = true;
        }
    }

    fn open_engine(&mut self) -> Result<(), ServeError> {
        self.drain();
        let mut index_workers = IndexWorkers::default();
        while !self.server.engine().is_ready() {
            if let Some(error) = self.server.engine().open_error() {
                return Err(ServeError::Open(error.clone()));
            }
            let waiting_on_workers = self.driver.pending() == 0 && index_workers.out() > 0;
            if !waiting_on_workers {
                self.run_driver(true)?;
            }
            index_workers.exchange(self, waiting_on_workers);
        }
        self.driver.forget_spare_buffers();
        Ok(())
    }

    /// A clean shutdown writes an index checkpoint, so the next start reads it instead of the
    /// whole log. Connections are not served meanwhile.
    fn checkpoint_before_exit(&mut self) -> Result<(), ServeError> {
        self.server.checkpoint_now();
        self.drain();
        while self.server.engine().checkpoint_in_progress() && self.server.engine().read_only_reason().is_none() {
            self.server.tick(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
            self.drain();
            self.run_driver(true)?;
        }
        Ok(())
    }

    /// The engine's monotonic clock: milliseconds since the loop started.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// One turn: wait for sockets (briefly if storage I/O is in flight), serve them, run storage.
    fn turn(&mut self) -> Result<(), ServeError> {
        let storage_busy = self.driver.pending() > 0;
        // The engine's next timer (now, or a key's expiry time) bounds the wait.
        let now_ms = self.now_ms();
        let wanted_in_ms = self.server.poll_timeout().map(|at| at.saturating_sub(now_ms));
        let wait_ms = match (storage_busy, wanted_in_ms) {
            (true, _) => 0,
            (false, Some(wanted)) => wanted.min(IDLE_WAIT_MS as u64) as i32,
            (false, None) => IDLE_WAIT_MS,
        };
        let (listener_ready, ready) = self.poll_sockets(wait_ms)?;
        // Requests run at the time they arrive: expiry compares against it.
        self.server.set_unix_time_ms(crate::clock::unix_time_ms());
        let socket_events = listener_ready || !ready.is_empty();
        // Only when a listener has a connection waiting: an accept that finds none is a wasted
        // system call per turn.
        if listener_ready {
            self.accept_all();
        }
        for (id, readable, writable) in ready {
            if readable {
                self.read_from(id);
            }
            if writable {
                self.flush(id);
            }
        }
        // The turn's requests are in: a group commit waiting for them is sealed now.
        self.server.set_unix_time_ms(crate::clock::unix_time_ms());
        self.server.tick(self.now_ms());
        self.drain();
        // Block on storage only when the sockets had nothing to do this turn.
        self.run_driver(storage_busy && !socket_events)?;
        self.drain();
        Ok(())
    }

    /// `poll(2)` on the listeners and every connection; returns whether a listener has a
    /// connection waiting, and (id, readable, writable) per connection with events.
    fn poll_sockets(&mut self, timeout_ms: i32) -> Result<(bool, Vec<(u64, bool, bool)>), ServeError> {
        let mut fds: Vec<libc::pollfd> = self
            .listeners
            .iter()
            .map(|(listener, _)| libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        let listener_count = fds.len();
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in &ids {
            let peer = &self.peers[id];
            let mut events = 0;
            if self.wants_input(*id) {
                events |= libc::POLLIN;
            }
            if peer.wants_write() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd { fd: peer.descriptor(), events, revents: 0 });
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call's duration.
        let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if result < 0 {
            let error = std::io::Error::last_os_error();
            return if error.kind() == ErrorKind::Interrupted { Ok((false, Vec::new())) } else { Err(error.into()) };
        }
        let hangup = libc::POLLHUP | libc::POLLERR;
        let listener_ready = fds[..listener_count].iter().any(|fd| fd.revents != 0);
        let ready = ids
            .iter()
            .zip(&fds[listener_count..])
            .filter(|(_, fd)| fd.revents != 0)
            .map(|(id, fd)| (*id, fd.revents & (libc::POLLIN | hangup) != 0, fd.revents & libc::POLLOUT != 0))
            .collect();
        Ok((listener_ready, ready))
    }

    fn accept_all(&mut self) {
        for index in 0..self.listeners.len() {
            self.accept_from(index);
        }
    }

    fn accept_from(&mut self, index: usize) {
        loop {
            let (listener, tls) = &self.listeners[index];
            match listener.accept() {
                Ok((stream, address)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let peer = match tls {
                        None => Peer::plain(stream),
                        Some(config) => match Peer::tls(stream, Arc::clone(config)) {
                            Ok(peer) => peer,
                            Err(error) => {
                                tracing::warn!("a TLS connection from {address} could not start: {error}");
                                continue;
                            }
                        },
                    };
                    // The server decides (protected mode, the client limit); it sees the address.
                    let id = self.server.connect_from(address);
                    self.peers.insert(id, peer);
                    self.drain();
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                // EMFILE and the like: leave the rest in the backlog for a later turn.
                Err(_) => return,
            }
        }
    }

    /// Whether to read from a connection: the server wants input, and its replies are not
    /// piling up unsent (a slow reader).
    fn wants_input(&self, id: u64) -> bool {
        self.server.wants_input(id)
            && self.peers.get(&id).is_some_and(|peer| peer.unsent_bytes() < self.output_bytes_pause)
    }

    fn read_from(&mut self, id: u64) {
        let mut total = 0;
        while total < READ_BYTES_PER_TURN_MAX && self.wants_input(id) {
            let Some(peer) = self.peers.get_mut(&id) else { return };
            self.plaintext.clear();
            match peer.receive(&mut self.read_buffer, &mut self.plaintext) {
                Received::Closed => return self.drop_peer(id),
                Received::Nothing => return,
                Received::Bytes { drained } => {
                    total += self.plaintext.len().max(1);
                    // A TLS handshake may have records to send back.
                    if peer.wants_write() {
                        self.flush(id);
                    }
                    if !self.plaintext.is_empty() {
                        self.server.receive(id, &self.plaintext);
                    }
                    if drained {
                        return;
                    }
                }
            }
        }
    }

    fn drop_peer(&mut self, id: u64) {
        self.peers.remove(&id);
        self.server.disconnect(id);
    }

    /// Moves the server's outputs to the driver and the sockets.
    fn drain(&mut self) {
        while let Some(request) = self.server.poll_io() {
            self.driver.push(request);
        }
        loop {
            self.output.clear();
            let Some(id) = self.server.poll_output_into(&mut self.output) else { break };
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            if peer.send(&self.output).is_err() {
                self.drop_peer(id);
                continue;
            }
            if !peer.wants_write() && peer.close_when_flushed {
                self.peers.remove(&id);
                continue;
            }
            if self.peers.get(&id).is_some_and(|peer| peer.unsent_bytes() > self.output_bytes_max) {
                tracing::warn!(
                    "closing client {id}: more than {} bytes of replies it does not read",
                    self.output_bytes_max
                );
                self.drop_peer(id);
            }
        }
        while let Some(id) = self.server.poll_close() {
            match self.peers.get_mut(&id) {
                Some(peer) if peer.wants_write() => peer.close_when_flushed = true,
                _ => _ = self.peers.remove(&id),
            }
        }
    }

    fn flush(&mut self, id: u64) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if peer.flush().is_err() {
            return self.drop_peer(id);
        }
        if !peer.wants_write() && peer.close_when_flushed {
            self.peers.remove(&id);
        }
    }

    fn run_driver(&mut self, wait: bool) -> Result<(), ServeError> {
        let wait = wait && self.driver.pending() > 0;
        self.driver.run(wait, &mut self.completions)?;
        let mut completions = std::mem::take(&mut self.completions);
        for completion in completions.drain(..) {
            self.server.complete(completion);
            self.drain();
        }
        self.completions = completions;
        while let Some(buffer) = self.server.poll_spare_buffer() {
            self.driver.recycle(buffer);
        }
        Ok(())
    }
}

impl IndexWorkHost for Loop {
    fn poll_index_work(&mut self) -> Option<quill_core::IndexWork> {
        self.server.poll_index_work()
    }

    fn complete_index_work(&mut self, work: quill_core::IndexWork) {
        self.server.complete_index_work(work);
        self.drain();
    }
}
