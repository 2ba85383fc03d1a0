//! The replicas' bus: Raft messages over TCP on each replica's client port + 10,000 (Redis
//! Cluster's convention). A message is a 4-byte little-endian length and the protobuf-encoded
//! raft-rs `Message`. Links are best effort, as Raft assumes: a failed link drops what it held
//! and connects again later; a peer that sends garbage is disconnected.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use quill_replica::Message;

/// A message larger than this is refused (raft-rs's messages are bounded by the replica's
/// `max_size_per_msg` and request size).
const FRAME_BYTES_MAX: usize = 64 << 20;
/// Bytes queued for one peer at most; beyond it new messages are dropped (Raft resends).
const UNSENT_BYTES_MAX: usize = 64 << 20;
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

struct Outgoing {
    address: SocketAddr,
    stream: Option<TcpStream>,
    unsent: Vec<u8>,
    retry_at: Instant,
}

struct Incoming {
    stream: TcpStream,
    received: Vec<u8>,
}

pub struct Bus {
    listener: TcpListener,
    outgoing: BTreeMap<u64, Outgoing>,
    incoming: Vec<Incoming>,
    pub messages_dropped: u64,
}

impl Bus {
    pub fn new(listener: TcpListener, peers: &[(u64, SocketAddr)]) -> std::io::Result<Bus> {
        listener.set_nonblocking(true)?;
        let outgoing = peers
            .iter()
            .map(|(id, address)| {
                (*id, Outgoing { address: *address, stream: None, unsent: Vec::new(), retry_at: Instant::now() })
            })
            .collect();
        Ok(Bus { listener, outgoing, incoming: Vec::new(), messages_dropped: 0 })
    }

    pub fn send(&mut self, message: &Message) {
        let Some(link) = self.outgoing.get_mut(&message.to) else { return };
        let bytes = message.write_to_bytes().expect("a message encodes");
        if link.unsent.len() + bytes.len() > UNSENT_BYTES_MAX {
            self.messages_dropped += 1;
            return;
        }
        link.unsent.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        link.unsent.extend_from_slice(&bytes);
    }

    /// Connects links that are down (when their delay has passed) and writes what the sockets
    /// take.
    pub fn flush(&mut self, now: Instant) {
        for link in self.outgoing.values_mut() {
            if link.stream.is_none() && now >= link.retry_at && !link.unsent.is_empty() {
                link.retry_at = now + RECONNECT_DELAY;
                // A short blocking connect on loopback; a peer that is down refuses at once.
                match TcpStream::connect_timeout(&link.address, Duration::from_millis(50)) {
                    Ok(stream) if stream.set_nonblocking(true).is_ok() => {
                        let _ = stream.set_nodelay(true);
                        link.stream = Some(stream);
                    }
                    _ => {
                        // The peer is unreachable: what waited for it is stale by the time it
                        // comes back (Raft resends what matters).
                        link.unsent.clear();
                    }
                }
            }
            let Some(stream) = link.stream.as_mut() else { continue };
            while !link.unsent.is_empty() {
                match stream.write(&link.unsent) {
                    Ok(0) => break,
                    Ok(written) => _ = link.unsent.drain(..written),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        link.stream = None;
                        link.unsent.clear();
                        break;
                    }
                }
            }
        }
    }

    /// Descriptors to poll: the listener, incoming links (read), outgoing links with bytes
    /// (write).
    pub fn poll_descriptors(&self) -> Vec<libc::pollfd> {
        let mut fds = vec![libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        for link in &self.incoming {
            fds.push(libc::pollfd { fd: link.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        for link in self.outgoing.values() {
            if let Some(stream) = &link.stream {
                let events = if link.unsent.is_empty() { libc::POLLIN } else { libc::POLLIN | libc::POLLOUT };
                fds.push(libc::pollfd { fd: stream.as_raw_fd(), events, revents: 0 });
            }
        }
        fds
    }

    /// Accepts new links and reads every incoming one: the messages that arrived whole.
    pub fn receive(&mut self, messages: &mut Vec<Message>) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) if stream.set_nonblocking(true).is_ok() => {
                    let _ = stream.set_nodelay(true);
                    self.incoming.push(Incoming { stream, received: Vec::new() });
                }
                Ok(_) => continue,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut buffer = [0u8; 64 * 1024];
        self.incoming.retain_mut(|link| read_link(link, &mut buffer, messages));
        // Outgoing links carry nothing back: a read that sees the peer close drops the link.
        for link in self.outgoing.values_mut() {
            let Some(stream) = link.stream.as_mut() else { continue };
            match stream.read(&mut buffer) {
                Ok(0) => link.stream = None,
                Ok(_) => {}
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => link.stream = None,
            }
        }
    }
}

/// Reads what the link has; false when it closed or sent garbage.
fn read_link(link: &mut Incoming, buffer: &mut [u8], messages: &mut Vec<Message>) -> bool {
    loop {
        match link.stream.read(buffer) {
            Ok(0) => return false,
            Ok(count) => link.received.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    let mut offset = 0;
    while link.received.len() - offset >= 4 {
        let length = u32::from_le_bytes(link.received[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        if length > FRAME_BYTES_MAX {
            return false;
        }
        if link.received.len() - offset - 4 < length {
            break;
        }
        match Message::parse_from_bytes(&link.received[offset + 4..offset + 4 + length]) {
            Ok(message) => messages.push(message),
            Err(_) => return false,
        }
        offset += 4 + length;
    }
    link.received.drain(..offset);
    true
}
