//! Engine scenarios on real temporary files, through both drivers.

mod support;

use std::sync::Arc;

use quill_io_real::{CommandError, CommandErrorKind, Db, DbError, DbOptions, IoChoice};
use support::{create, drivers, reopen, value_for, volume_path};

#[test]
fn set_get_survive_a_restart() {
    let directory = tempfile::tempdir().expect("temp dir");
    for io in drivers() {
        let path = volume_path(directory.path(), &format!("restart-{io:?}"));
        let db = create(&path, io, 16 << 20);
        db.set(b"alpha", b"one").expect("set");
        db.set(b"beta", b"two").expect("set");
        assert!(db.del(b"beta").expect("del"));
        assert_eq!(db.incr_by(b"counter", 5).expect("incr"), 5);
        assert_eq!(db.get(b"alpha").expect("get"), Some(b"one".to_vec()));
        db.close().expect("close");

        let db = reopen(&path, io);
        assert_eq!(db.get(b"alpha").expect("get"), Some(b"one".to_vec()));
        assert_eq!(db.get(b"beta").expect("get"), None);
        assert!(!db.exists(b"beta").expect("exists"));
        assert_eq!(db.incr_by(b"counter", 1).expect("incr"), 6);
        assert_eq!(db.db_size().expect("dbsize"), 2);
    }
}

#[test]
fn big_and_empty_values_round_trip() {
    let directory = tempfile::tempdir().expect("temp dir");
    let lengths = [0usize, 1, 4095, 4096, 4097, 100_000, 1024 * 1024];
    for io in drivers() {
        let path = volume_path(directory.path(), &format!("big-{io:?}"));
        let db = create(&path, io, 64 << 20);
        for &length in &lengths {
            let key = format!("big-{length}");
            db.set(key.as_bytes(), &value_for(key.as_bytes(), 0, length)).expect("set");
        }
        drop(db);
        // No cache: every GET reads the record from disk and verifies it.
        let options = DbOptions { io, cache_bytes_max: Some(0), ..DbOptions::default() };
        let db = Db::open(&path, options).expect("reopen");
        for &length in &lengths {
            let key = format!("big-{length}");
            let value = db.get(key.as_bytes()).expect("get").expect("present");
            assert_eq!(value, value_for(key.as_bytes(), 0, length), "value of {length} bytes");
        }
        let too_big = vec![0u8; 1024 * 1024 + 1];
        assert!(matches!(
            db.set(b"too-big", &too_big),
            Err(DbError::Command(CommandError { kind: CommandErrorKind::TooLarge, .. }))
        ));
    }
}

#[test]
fn many_keys_from_many_threads() {
    let directory = tempfile::tempdir().expect("temp dir");
    for io in drivers() {
        let path = volume_path(directory.path(), &format!("many-{io:?}"));
        let db = Arc::new(create(&path, io, 64 << 20));
        let threads: Vec<_> = (0..8u64)
            .map(|thread| {
                let db = Arc::clone(&db);
                std::thread::spawn(move || {
                    // Async calls: many requests in flight from one thread, grouped into batches.
                    let futures: Vec<_> = (0..500u64)
                        .map(|index| {
                            let key = format!("t{thread}-k{index}");
                            db.set_async(key.as_bytes(), &value_for(key.as_bytes(), 1, 64))
                        })
                        .collect();
                    for future in futures {
                        futures::executor::block_on(future).expect("set");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread");
        }
        assert_eq!(db.db_size().expect("dbsize"), 4000);
        drop(db);
        let options = DbOptions { io, cache_bytes_max: Some(0), ..DbOptions::default() };
        let db = Db::open(&path, options).expect("reopen");
        for thread in 0..8u64 {
            let keys: Vec<String> = (0..500u64).map(|index| format!("t{thread}-k{index}")).collect();
            let gets: Vec<_> = keys.iter().map(|key| db.get_async(key.as_bytes())).collect();
            for (key, get) in keys.iter().zip(gets) {
                let value = futures::executor::block_on(get).expect("get");
                assert_eq!(value, Some(value_for(key.as_bytes(), 1, 64)), "{key}");
            }
        }
    }
}

#[test]
fn foreign_files_are_refused_and_never_overwritten() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("notes.txt");
    let content = vec![b'x'; 3 << 20];
    std::fs::write(&path, &content).expect("write a user file");
    let options = DbOptions { create_size_bytes: Some(16 << 20), reformat: true, ..DbOptions::default() };
    let error = Db::open(&path, options).err().expect("refused");
    assert!(error.to_string().contains("not a QuillKV volume"), "{error}");
    assert_eq!(std::fs::read(&path).expect("read back"), content);

    let missing = directory.path().join("missing.qkv");
    assert!(Db::open(&missing, DbOptions::default()).is_err(), "no size: no file is created");
    assert!(!missing.exists());
}

#[test]
fn reports_the_driver_in_use() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = create(&volume_path(directory.path(), "driver"), IoChoice::Sync, 8 << 20);
    assert_eq!(db.driver_name(), "sync");
    let db_uring = create(&volume_path(directory.path(), "driver-uring"), IoChoice::Uring, 8 << 20);
    let expected = if quill_io_real::uring_available().is_ok() { "io_uring" } else { "sync" };
    assert_eq!(db_uring.driver_name(), expected);
}

#[test]
fn a_write_batch_applies_whole_or_is_refused_whole() {
    let directory = tempfile::tempdir().expect("temp dir");
    for io in drivers() {
        let path = volume_path(directory.path(), &format!("batch-{io:?}"));
        let db = create(&path, io, 16 << 20);
        db.set(b"gone", b"x").expect("set");
        use quill_io_real::WriteOp;
        db.write_batch(&[WriteOp::Put(b"a", b"1"), WriteOp::Delete(b"gone"), WriteOp::Put(b"a", b"2")]).expect("batch");
        let too_big = vec![0u8; 1024 * 1024 + 1];
        let refused = db.write_batch(&[WriteOp::Put(b"b", b"1"), WriteOp::Put(b"c", &too_big)]);
        assert!(
            matches!(refused, Err(DbError::Command(CommandError { kind: CommandErrorKind::TooLarge, .. }))),
            "{refused:?}"
        );
        db.close().expect("close");
        let db = reopen(&path, io);
        assert_eq!(db.get_many(&[b"a".as_slice(), b"gone", b"b"]).expect("get"), [Some(b"2".to_vec()), None, None]);
        let mut keys: Vec<Vec<u8>> = db.keys().collect::<Result<_, _>>().expect("keys");
        keys.sort();
        assert_eq!(keys, [b"a".to_vec()], "nothing of the refused batch");
    }
}
