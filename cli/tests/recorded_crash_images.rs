//! Crash images of real runs: `Db` on a real file, through io_uring and the portable driver,
//! with a recording driver capturing every write and sync; then every legal crash image of that
//! history (bounded: points spread over the run, images sampled above a bound) is rebuilt,
//! recovered by the engine and checked against the acknowledged writes.

use std::sync::Arc;

use quill_core::history::HistoryEvent;
use quill_io_real::{Db, DbOptions, IoChoice, IoRecorder};
use quill_sim::crash_images::CrashImageBounds;
use quill_sim::history::check_history;

const THREADS: usize = 4;
const KEYS_PER_THREAD: usize = 6;
const WRITES_PER_THREAD: usize = 60;

/// Writers on disjoint keys (one writer per key, as the checker needs), each value unique.
fn recorded_run(io: IoChoice) -> IoRecorder {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("recorded.qkv");
    let recorder = IoRecorder::new();
    let options =
        DbOptions { create_size_bytes: Some(8 << 20), io, recorder: Some(recorder.clone()), ..DbOptions::default() };
    let db = Arc::new(Db::open(&path, options).expect("open a fresh volume"));
    let writers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (db, recorder) = (Arc::clone(&db), recorder.clone());
            std::thread::spawn(move || {
                for write in 0..WRITES_PER_THREAD {
                    let key = format!("t{thread}k{}", write % KEYS_PER_THREAD).into_bytes();
                    let value = format!("t{thread} write {write} {}", "v".repeat(write * 7)).into_bytes();
                    recorder.invoked(&key, &value);
                    db.set(&key, &value).expect("a durable SET");
                    recorder.acknowledged(&key, &value);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    Arc::into_inner(db).expect("the only handle").close().expect("a clean close");
    recorder
}

fn check(io: IoChoice) {
    let history = recorded_run(io).history();
    let bounds = CrashImageBounds { points_max: 80, images_per_point_max: 64 };
    let report = check_history(&history, bounds);
    eprintln!("{io:?}: {report:?}");
    assert_eq!(report.counts.first_failure.as_ref().map(|failure| failure.what.clone()), None);
    assert_eq!(report.acknowledged, (THREADS * WRITES_PER_THREAD) as u64);
    assert!(report.writes > 10 && report.counts.points_total > 10, "a real history was recorded: {report:?}");
    assert!(report.counts.images_checked >= report.counts.points_checked, "every point had images: {report:?}");
    assert_eq!(report.counts.images_failed, 0);
}

#[test]
fn every_crash_image_of_a_recorded_io_uring_run_recovers() {
    check(IoChoice::Uring);
}

#[test]
fn every_crash_image_of_a_recorded_portable_run_recovers() {
    check(IoChoice::Sync);
}

/// The checker can fail: the same real history, edited so that the first write is acknowledged
/// as soon as it is invoked (what an engine that acknowledges before the disk has the write
/// would do), must show a crash image that lost it.
#[test]
fn an_acknowledgement_before_durability_is_caught() {
    let mut history = recorded_run(IoChoice::Sync).history();
    let acknowledged = history
        .events
        .iter()
        .position(|event| matches!(event, HistoryEvent::Acknowledged { .. }))
        .expect("an acknowledgement");
    let event = history.events.remove(acknowledged);
    let HistoryEvent::Acknowledged { key, .. } = &event else { unreachable!() };
    let invoked = history
        .events
        .iter()
        .position(|candidate| matches!(candidate, HistoryEvent::Invoked { key: invoked, .. } if invoked == key))
        .expect("its invocation");
    history.events.insert(invoked + 1, event);
    let bounds = CrashImageBounds { points_max: u64::MAX, images_per_point_max: 4 };
    let report = check_history(&history, bounds);
    assert!(report.counts.images_failed > 0, "the early acknowledgement went unnoticed: {report:?}");
    let what = report.counts.first_failure.expect("a first failure").what;
    assert!(what.contains("recovered None"), "{what}");
}
