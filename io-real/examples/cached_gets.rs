//! Cached GETs through `Db` from 32 threads, with and without caller-thread reads (the
//! published cache), side by side, three alternating rounds: a benchmark, not a test.
//! `cargo run --release -p quill-io-real --example cached_gets`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quill_io_real::{Db, DbOptions};

const KEYS: u64 = 10_000;
const THREADS: usize = 32;
const SECONDS: f64 = 2.0;

fn gets_per_second(caller_thread_reads: bool) -> f64 {
    let directory = std::env::temp_dir().join(format!("quill-cached-gets-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temp directory");
    let path = directory.join("gets.qkv");
    let _ = std::fs::remove_file(&path);
    let options = DbOptions { create_size_bytes: Some(256 << 20), caller_thread_reads, ..DbOptions::default() };
    let db = Arc::new(Db::open(&path, options).expect("open"));
    for key in 0..KEYS {
        db.set(&key.to_le_bytes(), &[b'v'; 100]).expect("load");
    }
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = (0..THREADS as u64)
        .map(|thread| {
            let (db, stop, done) = (Arc::clone(&db), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut key = thread * 7919;
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    key = (key + 104_729) % KEYS;
                    assert!(db.get(&key.to_le_bytes()).expect("get").is_some());
                    count += 1;
                }
                done.fetch_add(count, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(SECONDS));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a reader");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    drop(db);
    let _ = std::fs::remove_dir_all(&directory);
    rate
}

fn main() {
    let (mut engine_thread, mut caller_thread) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        engine_thread.push(gets_per_second(false));
        caller_thread.push(gets_per_second(true));
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (before, after) = (median(&mut engine_thread), median(&mut caller_thread));
    println!("cached GETs/s, {THREADS} threads, {KEYS} keys x 100 B, medians of 3 alternating rounds:");
    println!("  through the engine thread: {before:.0} ({engine_thread:.0?})");
    println!("  on the caller's thread:    {after:.0} ({caller_thread:.0?})");
    println!("  ratio: {:.1}x", after / before);
}
