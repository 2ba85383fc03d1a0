//! One client connection of `quill serve`: a non-blocking TCP stream, plain or TLS. The loop
//! (and the sans-I/O server behind it) sees plaintext either way: ciphertext is read from the
//! socket into rustls, decrypted, and handed on; replies are queued as plaintext and encrypted
//! on their way out.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// What one read from the socket gave.
pub(crate) enum Received {
    /// Plaintext bytes were appended (possibly none: a TLS handshake record). `drained`: the
    /// read came back short, so the socket had nothing more: reading again now would only
    /// cost a system call that says so (poll reports the socket again when more arrives).
    Bytes { drained: bool },
    /// Nothing to read now.
    Nothing,
    /// The peer closed, or the connection failed (a bad TLS record included).
    Closed,
}

/// Plaintext decrypted per call at most, per read of the TLS layer.
const PLAINTEXT_CHUNK_BYTES: usize = 16 * 1024;
/// Rounds of "hand plaintext to TLS, write records" per flush at most.
const TLS_FLUSH_ROUNDS_MAX: usize = 64;

pub(crate) struct Peer {
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    /// Replies not yet handed to the socket (or to TLS), as plaintext.
    unsent: Vec<u8>,
    /// Close once everything queued has been written.
    pub close_when_flushed: bool,
}

impl Peer {
    pub fn plain(stream: TcpStream) -> Peer {
        Peer { stream, tls: None, unsent: Vec::new(), close_when_flushed: false }
    }

    pub fn tls(stream: TcpStream, config: Arc<rustls::ServerConfig>) -> Result<Peer, rustls::Error> {
        let connection = rustls::ServerConnection::new(config)?;
        Ok(Peer { stream, tls: Some(Box::new(connection)), unsent: Vec::new(), close_when_flushed: false })
    }

    pub fn descriptor(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Plaintext replies waiting for the socket, in bytes.
    pub fn unsent_bytes(&self) -> usize {
        self.unsent.len()
    }

    /// Whether anything waits to be written: replies, or TLS records (a handshake's included).
    pub fn wants_write(&self) -> bool {
        !self.unsent.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    pub fn queue(&mut self, bytes: &[u8]) {
        self.unsent.extend_from_slice(bytes);
    }

    /// Writes `bytes` (after anything still queued); what the socket does not take now is
    /// queued. A plain connection with nothing queued writes straight from `bytes`: no copy.
    /// `Err` if the connection failed.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if self.tls.is_some() || !self.unsent.is_empty() {
            self.queue(bytes);
            return self.flush();
        }
        let written = write_some(&mut self.stream, bytes)?;
        self.queue(&bytes[written..]);
        Ok(())
    }

    /// Reads once from the socket into `buffer`; plaintext goes to `plaintext`.
    pub fn receive(&mut self, buffer: &mut [u8], plaintext: &mut Vec<u8>) -> Received {
        let count = match self.stream.read(buffer) {
            Ok(0) => return Received::Closed,
            Ok(count) => count,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return Received::Nothing
            }
            Err(_) => return Received::Closed,
        };
        let drained = count < buffer.len();
        let Some(tls) = self.tls.as_mut() else {
            plaintext.extend_from_slice(&buffer[..count]);
            return Received::Bytes { drained };
        };
        let mut ciphertext = &buffer[..count];
        while !ciphertext.is_empty() {
            if tls.read_tls(&mut ciphertext).is_err() {
                return Received::Closed;
            }
            if tls.process_new_packets().is_err() {
                // Tell the peer why (the alert rustls queued), then give up on it.
                let _ = tls.write_tls(&mut self.stream);
                return Received::Closed;
            }
            if !decrypted(tls, plaintext) {
                return Received::Closed;
            }
        }
        Received::Bytes { drained }
    }

    /// Writes what the socket takes now. `Err` if the connection failed.
    pub fn flush(&mut self) -> Result<(), ()> {
        let Some(tls) = self.tls.as_mut() else {
            let written = write_some(&mut self.stream, &self.unsent)?;
            self.unsent.drain(..written);
            return Ok(());
        };
        for _ in 0..TLS_FLUSH_ROUNDS_MAX {
            // rustls buffers a bounded amount of plaintext (64 KiB by default); hand it more as
            // its records go out.
            let taken = tls.writer().write(&self.unsent).map_err(|_| ())?;
            self.unsent.drain(..taken);
            if !tls.wants_write() {
                return Ok(());
            }
            match tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(()),
            }
        }
        Ok(())
    }
}

/// Moves the plaintext TLS has decrypted to `plaintext`; false if the connection failed.
fn decrypted(tls: &mut rustls::ServerConnection, plaintext: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; PLAINTEXT_CHUNK_BYTES];
    loop {
        match tls.reader().read(&mut chunk) {
            Ok(0) => return true, // close_notify: the socket's end follows
            Ok(count) => plaintext.extend_from_slice(&chunk[..count]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Writes as much of `bytes` as the socket takes now; returns how much.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> Result<usize, ()> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => break,
            Ok(count) => written += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return Err(()),
        }
    }
    Ok(written)
}
