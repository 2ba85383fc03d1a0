//! Allocations per command on the server's hot path, counted by a wrapping global allocator:
//! 1,000 steady-state GETs (cached values) and 1,000 durable SETs, pipelined 16 at a time over
//! one connection, through the sans-I/O `Server` and `Engine` over an in-memory volume.
//! A benchmark, not a test: `cargo run --release -p quill-core --example allocations`
//! (`scripts/allocations.sh` prints it beside the figure in docs/benchmarks.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use quill_core::server::{Server, ServerConfig};
use quill_core::{Config, Engine, IoCompletion, IoKind};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract passes through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(pointer, layout) }
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const VOLUME_BYTES: u64 = 64 << 20;
const KEYS: usize = 1_000;
const PIPELINE: usize = 16;

/// The server over a volume in memory; every I/O completes at once, durably.
struct Rig {
    server: Server,
    disk: Vec<u8>,
    output: Vec<u8>,
    now: u64,
}

impl Rig {
    fn new() -> Rig {
        let mut config = Config::for_volume_bytes(VOLUME_BYTES);
        config.write_through = true;
        let engine = Engine::format(config, 0x5eed);
        let mut rig = Rig {
            server: Server::new(engine, ServerConfig::default()),
            disk: vec![0; VOLUME_BYTES as usize],
            output: Vec::with_capacity(1 << 20),
            now: 0,
        };
        rig.settle();
        rig
    }

    /// Performs I/O and ends loop turns until nothing is pending; collects output bytes.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            if let Some(request) = self.server.poll_io() {
                let result = match &request.kind {
                    IoKind::Read { offset_bytes, length_bytes } => {
                        let start = *offset_bytes as usize;
                        Ok(self.disk[start..start + *length_bytes as usize].to_vec())
                    }
                    IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                        let start = *offset_bytes as usize;
                        self.disk[start..start + data.len()].copy_from_slice(data);
                        Ok(Vec::new())
                    }
                    IoKind::Sync => Ok(Vec::new()),
                };
                self.server.complete(IoCompletion { token: request.token, result });
                continue;
            }
            while self.server.poll_output_into(&mut self.output).is_some() {}
            if self.server.poll_timeout().is_none() {
                return;
            }
            self.now += 1;
            self.server.tick(self.now);
        }
        panic!("the server never settled");
    }

    /// Sends `requests` in pipelines of 16; returns allocations and bytes allocated meanwhile.
    fn measure(&mut self, client: u64, requests: &[Vec<u8>]) -> (u64, u64) {
        let (allocations, bytes) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
        for pipeline in requests.chunks(PIPELINE) {
            for request in pipeline {
                self.server.receive(client, request);
            }
            self.settle();
            self.output.clear();
        }
        (ALLOCATIONS.load(Ordering::Relaxed) - allocations, BYTES.load(Ordering::Relaxed) - bytes)
    }
}

fn command(arguments: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    quill_core::resp::encode_command(arguments, &mut bytes);
    bytes
}

fn main() {
    let mut rig = Rig::new();
    let client = rig.server.connect();
    let value = vec![b'v'; 100];
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|index| format!("key:{index:06}").into_bytes()).collect();
    let sets: Vec<Vec<u8>> = keys.iter().map(|key| command(&[b"SET", key, &value])).collect();
    let gets: Vec<Vec<u8>> = keys.iter().map(|key| command(&[b"GET", key])).collect();
    rig.measure(client, &sets); // load, and warm the cache and every buffer
    rig.measure(client, &gets);
    let (set_allocations, set_bytes) = rig.measure(client, &sets);
    let (get_allocations, get_bytes) = rig.measure(client, &gets);
    println!(
        "allocations per 1,000 GETs (cached, 100-byte values, -P {PIPELINE}): {get_allocations} ({get_bytes} bytes)"
    );
    println!(
        "allocations per 1,000 durable SETs (100-byte values, -P {PIPELINE}): {set_allocations} ({set_bytes} bytes)"
    );
    let inputs = KEYS as u64;
    println!(
        "per command: GET {:.1}, SET {:.1}",
        get_allocations as f64 / inputs as f64,
        set_allocations as f64 / inputs as f64
    );
}
