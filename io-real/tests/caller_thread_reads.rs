//! `Db::get` on the caller's thread, from the published cache: linearizable against writers on
//! other threads. A reader that starts after a write was acknowledged never sees an older value,
//! and never a DEL'd one; with a cache too small to hold everything, evictions keep it right.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quill_io_real::{Db, DbOptions, IoChoice};

const ROUNDS: u64 = 400;
const READERS: usize = 4;

fn version(value: Option<Vec<u8>>) -> Option<u64> {
    value.map(|bytes| String::from_utf8(bytes).expect("UTF-8").parse().expect("a version"))
}

fn run(cache_bytes_max: usize) {
    let directory = tempfile::tempdir().expect("temp dir");
    let options = DbOptions {
        create_size_bytes: Some(16 << 20),
        io: IoChoice::Sync,
        cache_bytes_max: Some(cache_bytes_max),
        ..DbOptions::default()
    };
    let db = Arc::new(Db::open(directory.path().join("view.qkv"), options).expect("open"));
    // `acknowledged`: the last version whose SET returned; u64::MAX once the final DEL returned.
    let acknowledged = Arc::new(AtomicU64::new(0));
    // Set before the DEL is sent: a reader may see the key gone only from then on.
    let deleting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    db.set(b"hot", b"0").expect("set");
    for filler in 0..64u32 {
        db.set(format!("filler{filler}").as_bytes(), &[b'f'; 200]).expect("set a filler");
    }
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (db, acknowledged, deleting) = (Arc::clone(&db), Arc::clone(&acknowledged), Arc::clone(&deleting));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                loop {
                    let floor = acknowledged.load(Ordering::SeqCst);
                    let seen = version(db.get(b"hot").expect("get"));
                    reads += 1;
                    if floor == u64::MAX {
                        assert_eq!(seen, None, "a GET after the DEL was acknowledged saw a value");
                        return reads;
                    }
                    match seen {
                        Some(seen) => {
                            assert!(seen >= floor, "read version {seen} after version {floor} was acknowledged")
                        }
                        None => assert!(deleting.load(Ordering::SeqCst), "the key vanished before its DEL was sent"),
                    }
                }
            })
        })
        .collect();
    for round in 1..=ROUNDS {
        db.set(b"hot", round.to_string().as_bytes()).expect("set");
        acknowledged.store(round, Ordering::SeqCst);
        if round % 50 == 0 {
            // Churn the cache: others' values push the hot key out of a small cache.
            for filler in 0..64u32 {
                db.get(format!("filler{filler}").as_bytes()).expect("get a filler");
            }
        }
    }
    deleting.store(true, Ordering::SeqCst);
    db.del(b"hot").expect("del");
    acknowledged.store(u64::MAX, Ordering::SeqCst);
    let reads: u64 = readers.into_iter().map(|reader| reader.join().expect("reader")).sum();
    assert!(reads > ROUNDS, "the readers ran alongside the writer ({reads} reads)");
}

#[test]
fn caller_thread_reads_never_go_back_in_time() {
    run(64 << 20);
}

#[test]
fn caller_thread_reads_stay_right_through_evictions() {
    run(4 << 10);
}
