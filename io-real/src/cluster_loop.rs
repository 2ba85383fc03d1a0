//! `quill serve --node-id N --peers …`: one replica of a QuillKV cluster. One thread runs the
//! sans-I/O [`Front`] (RESP connections and the replica: its two engines and raft-rs) over
//! non-blocking sockets, the replicas' bus and one storage driver per volume. Raft's clock
//! ticks every `RAFT_TICK_MS`: an election after about a second without a leader.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quill_core::{Config, Engine, IoCompletion};
use quill_replica::{Front, Replica, ReplicaConfig, Volume as ReplicaVolume};

use crate::cluster_bus::Bus;
use crate::driver::{open_driver, Driver, IoChoice};
use crate::peer::{Peer, Received};
use crate::server_loop::ServeError;
use crate::volume::{random_volume_id, Volume, VolumeState};

/// Raft's tick: 10 ticks without a leader's word start an election, heartbeats every 2.
pub const RAFT_TICK_MS: u64 = 100;
const IDLE_WAIT_MS: i32 = 10;

pub struct ClusterServeOptions {
    pub node_id: u64,
    /// Every replica's client address, this one's included.
    pub peers: Vec<(u64, SocketAddr)>,
    pub io: IoChoice,
}

struct Loop {
    front: Front,
    drivers: [Box<dyn Driver>; 2],
    listener: TcpListener,
    connections: BTreeMap<u64, Peer>,
    bus: Bus,
    started: Instant,
    raft_tick_at: Instant,
    buffer: Vec<u8>,
    plaintext: Vec<u8>,
    completions: Vec<IoCompletion>,
    messages: Vec<quill_replica::Message>,
}

fn index(volume: ReplicaVolume) -> usize {
    match volume {
        ReplicaVolume::Log => 0,
        ReplicaVolume::State => 1,
    }
}

/// Serves one replica until `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn serve_replica(
    log_volume: &Volume,
    state_volume: &Volume,
    log_config: Config,
    state_config: Config,
    options: ClusterServeOptions,
    listener: TcpListener,
    bus_listener: TcpListener,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(),
) -> Result<(), ServeError> {
    let open = |volume: &Volume, config: Config| -> Result<Engine, ServeError> {
        Ok(match volume.state {
            VolumeState::Blank => Engine::format(config, random_volume_id()?),
            VolumeState::Formatted => Engine::open(config),
        })
    };
    let mut replica_config = ReplicaConfig::new(options.node_id, options.peers.iter().map(|(id, _)| *id).collect());
    replica_config.addresses = options.peers.iter().map(|(id, address)| (*id, address.to_string())).collect();
    replica_config.request_bytes_max = replica_config.request_bytes_max.min(state_config.value_bytes_max);
    let replica = Replica::new(replica_config, open(log_volume, log_config)?, open(state_volume, state_config)?);
    let bus_peers: Vec<(u64, SocketAddr)> = options
        .peers
        .iter()
        .filter(|(id, _)| *id != options.node_id)
        .map(|(id, address)| (*id, SocketAddr::new(address.ip(), address.port() + 10_000)))
        .collect();
    listener.set_nonblocking(true)?;
    let mut state = Loop {
        front: Front::new(replica, quill_core::resp::Limits::default()),
        drivers: [open_driver(options.io, log_volume.file.clone()), open_driver(options.io, state_volume.file.clone())],
        listener,
        connections: BTreeMap::new(),
        bus: Bus::new(bus_listener, &bus_peers)?,
        started: Instant::now(),
        raft_tick_at: Instant::now(),
        buffer: vec![0; 64 * 1024],
        plaintext: Vec::new(),
        completions: Vec::new(),
        messages: Vec::new(),
    };
    state.drain();
    on_ready();
    let mut last_role = None;
    while !stop.load(Ordering::Relaxed) {
        state.turn()?;
        let replica = state.front.replica();
        let role = (replica.role(), replica.leader_id(), replica.term());
        if last_role != Some(role) {
            tracing::info!("replica {}: {:?}, leader {}, term {}", options.node_id, role.0, role.1, role.2);
            if let Some(reason) = replica.halt_reason() {
                tracing::error!("replica {} halted: {reason}; restart it to recover", options.node_id);
            }
            last_role = Some(role);
        }
    }
    Ok(())
}

impl Loop {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn turn(&mut self) -> Result<(), ServeError> {
        let storage_busy = self.drivers.iter().any(|driver| driver.pending() > 0);
        let wait_ms = if storage_busy { 0 } else { IDLE_WAIT_MS };
        let socket_events = self.poll_sockets(wait_ms)?;
        self.accept();
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        for id in ids {
            self.read_from(id);
        }
        self.bus.receive(&mut self.messages);
        for message in std::mem::take(&mut self.messages) {
            self.front.replica_mut().step(message);
        }
        let now = Instant::now();
        while now >= self.raft_tick_at {
            self.raft_tick_at += Duration::from_millis(RAFT_TICK_MS);
            self.front.replica_mut().raft_tick();
        }
        let now_ms = self.now_ms();
        self.front.replica_mut().tick(now_ms, crate::clock::unix_time_ms());
        self.drain();
        // Block on storage only when the sockets had nothing this turn (on the log's driver
        // first: its writes hold up Raft's messages).
        let mut waited = socket_events;
        for driver in 0..2 {
            let wait = !waited && self.drivers[driver].pending() > 0;
            waited |= wait;
            self.run_driver(driver, wait)?;
        }
        self.bus.flush(Instant::now());
        Ok(())
    }

    /// Whether any socket had an event.
    fn poll_sockets(&mut self, timeout_ms: i32) -> Result<bool, ServeError> {
        let mut fds = vec![libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        for peer in self.connections.values() {
            let events = if peer.wants_write() { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
            fds.push(libc::pollfd { fd: peer.descriptor(), events, revents: 0 });
        }
        fds.extend(self.bus.poll_descriptors());
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call's duration.
        let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if result < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            return Err(std::io::Error::last_os_error().into());
        }
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        for (id, fd) in ids.iter().zip(&fds[1..]) {
            if fd.revents & libc::POLLOUT != 0 {
                self.flush(*id);
            }
        }
        Ok(fds.iter().any(|fd| fd.revents != 0))
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let id = self.front.connect();
                    self.connections.insert(id, Peer::plain(stream));
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn read_from(&mut self, id: u64) {
        for _ in 0..16 {
            let Some(peer) = self.connections.get_mut(&id) else { return };
            self.plaintext.clear();
            match peer.receive(&mut self.buffer, &mut self.plaintext) {
                Received::Closed => {
                    self.connections.remove(&id);
                    self.front.disconnect(id);
                    return;
                }
                Received::Nothing => return,
                Received::Bytes { drained } => {
                    let bytes = std::mem::take(&mut self.plaintext);
                    self.front.receive(id, &bytes);
                    self.plaintext = bytes;
                    self.drain();
                    if drained {
                        return;
                    }
                }
            }
        }
    }

    fn flush(&mut self, id: u64) {
        let Some(peer) = self.connections.get_mut(&id) else { return };
        if peer.flush().is_err() {
            self.connections.remove(&id);
            self.front.disconnect(id);
        } else if !peer.wants_write() && peer.close_when_flushed {
            self.connections.remove(&id);
        }
    }

    /// The replica's outputs: I/O to the drivers, messages to the bus, replies to sockets.
    fn drain(&mut self) {
        self.front.collect();
        let replica = self.front.replica_mut();
        while let Some((volume, request)) = replica.poll_io() {
            self.drivers[index(volume)].push(request);
        }
        while let Some(message) = replica.poll_message() {
            self.bus.send(&message);
        }
        while let Some((id, bytes)) = self.front.poll_output() {
            let Some(peer) = self.connections.get_mut(&id) else { continue };
            if peer.send(&bytes).is_err() {
                self.connections.remove(&id);
                self.front.disconnect(id);
            }
        }
        while let Some(id) = self.front.poll_close() {
            match self.connections.get_mut(&id) {
                Some(peer) if peer.wants_write() => peer.close_when_flushed = true,
                _ => _ = self.connections.remove(&id),
            }
        }
    }

    fn run_driver(&mut self, driver: usize, wait: bool) -> Result<(), ServeError> {
        self.drivers[driver].run(wait, &mut self.completions)?;
        let volume = if driver == 0 { ReplicaVolume::Log } else { ReplicaVolume::State };
        for completion in std::mem::take(&mut self.completions) {
            self.front.replica_mut().complete(volume, completion);
            self.drain();
        }
        Ok(())
    }
}
