//! A tiny in-memory driver for the engine's tests: a disk with a durable and a volatile image,
//! I/Os completed in an order the test chooses, and a crash that keeps only synced writes.

#![allow(dead_code)]

use quill_core::{Config, Engine, IoCompletion, IoError, IoKind, IoRequest, Reply, Request};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct MemDisk {
    pub durable: Vec<u8>,
    pub volatile: Vec<u8>,
    /// Writes completed since the last sync: (offset, length).
    pub unsynced: Vec<(usize, usize)>,
}

impl MemDisk {
    pub fn new(bytes: usize) -> MemDisk {
        MemDisk { durable: vec![0; bytes], volatile: vec![0; bytes], unsynced: Vec::new() }
    }

    /// A crash: unsynced writes are lost.
    pub fn crash(&mut self) {
        self.volatile = self.durable.clone();
        self.unsynced.clear();
    }

    pub fn perform_public(&mut self, kind: &IoKind) -> Result<Vec<u8>, IoError> {
        self.perform(kind)
    }

    fn perform(&mut self, kind: &IoKind) -> Result<Vec<u8>, IoError> {
        match kind {
            IoKind::Read { offset_bytes, length_bytes } => {
                let start = *offset_bytes as usize;
                Ok(self.volatile[start..start + *length_bytes as usize].to_vec())
            }
            IoKind::Write { offset_bytes, data } => {
                let start = *offset_bytes as usize;
                self.volatile[start..start + data.len()].copy_from_slice(data);
                self.unsynced.push((start, data.len()));
                Ok(Vec::new())
            }
            IoKind::WriteDurable { offset_bytes, data } => {
                let start = *offset_bytes as usize;
                self.volatile[start..start + data.len()].copy_from_slice(data);
                self.durable[start..start + data.len()].copy_from_slice(data);
                Ok(Vec::new())
            }
            IoKind::Sync => {
                for (start, length) in self.unsynced.drain(..) {
                    self.durable[start..start + length].copy_from_slice(&self.volatile[start..start + length]);
                }
                Ok(Vec::new())
            }
        }
    }
}

/// Fails the next I/O of a kind instead of performing it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailNext {
    Nothing,
    Write,
    Sync,
}

pub struct Harness {
    pub engine: Engine,
    pub disk: MemDisk,
    pub config: Config,
    pub in_flight: Vec<IoRequest>,
    pub replies: Vec<(u64, Reply)>,
    pub rng: ChaCha8Rng,
    pub fail_next: FailNext,
}

pub const VOLUME_BYTES: usize = 4 << 20;

pub fn small_config() -> Config {
    let mut config = Config::for_volume_bytes(VOLUME_BYTES as u64);
    config.batch_blocks_max = 64;
    config.cache_bytes_max = 1 << 20;
    config
}

impl Harness {
    pub fn format(config: Config, seed: u64) -> Harness {
        let disk = MemDisk::new(config.volume_blocks as usize * 4096);
        let engine = Engine::format(config.clone(), 0x5eed_0000 + seed);
        let mut harness = Harness {
            engine,
            disk,
            config,
            in_flight: Vec::new(),
            replies: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            fail_next: FailNext::Nothing,
        };
        harness.run_until_idle();
        assert!(harness.engine.is_ready(), "format finishes");
        harness
    }

    /// Crashes (losing unsynced writes and in-flight I/O) and reopens.
    pub fn crash_and_reopen(&mut self) {
        self.disk.crash();
        self.in_flight.clear();
        self.replies.clear();
        self.engine = Engine::open(self.config.clone());
        self.run_until_idle();
    }

    pub fn submit(&mut self, client: u64, request: Request) {
        self.engine.submit(client, request);
        self.drain();
    }

    pub fn drain(&mut self) {
        while let Some(request) = self.engine.poll_io() {
            self.in_flight.push(request);
        }
        while let Some(reply) = self.engine.poll_reply() {
            self.replies.push(reply);
        }
    }

    /// Completes one in-flight I/O, chosen at random; with none in flight, ticks if the engine
    /// asks to (the end of a driver's loop turn).
    pub fn complete_one(&mut self) -> bool {
        if self.in_flight.is_empty() {
            if let Some(now) = self.engine.poll_timeout() {
                self.engine.tick(now);
                self.drain();
                return true;
            }
            return false;
        }
        let index = self.rng.gen_range(0..self.in_flight.len());
        let request = self.in_flight.swap_remove(index);
        let result = match (self.fail_next, &request.kind) {
            (FailNext::Write, IoKind::Write { .. } | IoKind::WriteDurable { .. }) | (FailNext::Sync, IoKind::Sync) => {
                self.fail_next = FailNext::Nothing;
                Err(IoError::Eio)
            }
            _ => self.disk.perform(&request.kind),
        };
        self.engine.complete(IoCompletion { token: request.token, result });
        self.drain();
        true
    }

    pub fn run_until_idle(&mut self) {
        self.drain();
        for _ in 0..1_000_000 {
            if !self.complete_one() {
                return;
            }
        }
        panic!(
            "the engine did not go idle: {}; {:?}; {:?}",
            self.engine.debug_state(),
            self.engine.stats(),
            self.engine.space()
        );
    }

    /// Submits one request, runs to idle and returns its reply.
    pub fn call(&mut self, client: u64, request: Request) -> Reply {
        self.submit(client, request);
        self.run_until_idle();
        let position = self.replies.iter().position(|(id, _)| *id == client).expect("a reply came");
        self.replies.remove(position).1
    }

    pub fn take_replies(&mut self, client: u64) -> Vec<Reply> {
        let (mine, others): (Vec<_>, Vec<_>) = self.replies.drain(..).partition(|(id, _)| *id == client);
        self.replies = others;
        mine.into_iter().map(|(_, reply)| reply).collect()
    }
}

pub fn get(key: &str) -> Request {
    Request::Get { key: key.as_bytes().to_vec() }
}

pub fn set(key: &str, value: &[u8]) -> Request {
    Request::Set {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        condition: quill_core::command::SetCondition::Always,
    }
}

pub fn bulk(value: &[u8]) -> Reply {
    Reply::Bulk(Some(value.to_vec()))
}
