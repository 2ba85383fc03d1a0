//! Measures the in-memory index's cost per key: load N keys (value cache off), let the engine go
//! idle, and count the heap bytes it holds with a counting allocator.
//!
//! `cargo run --release -p quill-core --example index_memory -- 1000000 16`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use quill_core::command::Request;
use quill_core::{Config, Engine, IoCompletion, IoKind};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Performs every I/O against a sparse in-memory volume until the engine is idle.
fn run(engine: &mut Engine, disk: &mut std::collections::BTreeMap<u64, Vec<u8>>) {
    while let Some(request) = engine.poll_io().or_else(|| {
        let now = engine.poll_timeout()?;
        engine.tick(now);
        engine.poll_io()
    }) {
        let result = match request.kind {
            IoKind::Read { offset_bytes, length_bytes } => {
                let mut out = vec![0u8; length_bytes as usize];
                for (index, chunk) in out.chunks_mut(4096).enumerate() {
                    if let Some(block) = disk.get(&(offset_bytes / 4096 + index as u64)) {
                        chunk.copy_from_slice(block);
                    }
                }
                Ok(out)
            }
            IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                for (index, chunk) in data.chunks(4096).enumerate() {
                    disk.insert(offset_bytes / 4096 + index as u64, chunk.to_vec());
                }
                Ok(Vec::new())
            }
            IoKind::Sync => Ok(Vec::new()),
        };
        engine.complete(IoCompletion { token: request.token, result });
        while engine.poll_reply().is_some() {}
    }
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let keys: usize = arguments.get(1).and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let key_bytes: usize = arguments.get(2).and_then(|text| text.parse().ok()).unwrap_or(16);
    let mut config = Config::for_volume_bytes(((keys * (key_bytes + 40)) as u64 + (64 << 20)).next_power_of_two());
    config.cache_bytes_max = 0;
    let mut disk = std::collections::BTreeMap::new();
    let mut engine = Engine::format(config, 1);
    run(&mut engine, &mut disk);
    for chunk_start in (0..keys).step_by(1000) {
        let pairs = (chunk_start..(chunk_start + 1000).min(keys))
            .map(|index| (format!("{index:0width$}", width = key_bytes).into_bytes(), b"v".to_vec()))
            .collect();
        engine.submit(1, Request::MSet { pairs });
        run(&mut engine, &mut disk);
    }
    assert_eq!(engine.key_count(), keys as u64);
    // The engine's heap alone: what dropping it gives back (the simulated disk stays).
    let with_engine = LIVE_BYTES.load(Ordering::Relaxed);
    drop(engine);
    let held = with_engine - LIVE_BYTES.load(Ordering::Relaxed);
    let per_key = held as f64 / keys as f64;
    println!(
        "{keys} keys of {key_bytes} bytes: the engine holds {held} bytes, {per_key:.1} bytes per key, {:.1} bytes per key beyond the key itself",
        per_key - key_bytes as f64
    );
}
