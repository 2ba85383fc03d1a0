//! `quill check` on a clean volume, on a volume with one corrupted byte, and on bad usage; and a
//! GET of the corrupted record answering an error, never a wrong value.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use quill_core::BLOCK_BYTES;
use quill_io_real::{
    config_for_volume, open_volume, CommandErrorKind, Db, DbError, DbOptions, EngineRunner, IoChoice, VolumeOptions,
};

const KEYS: u64 = 50;
const CORRUPTED_KEY: u64 = 10;

fn key(index: u64) -> Vec<u8> {
    format!("key-{index}").into_bytes()
}

fn value(index: u64) -> Vec<u8> {
    format!("value-{index}-").repeat(20).into_bytes()
}

fn quill_check(path: &Path) -> (i32, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_quill")).args(["check", "--path"]).arg(path).output().expect("run quill");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// The record's absolute byte offset and length, from the durable index.
fn record_location(path: &Path, wanted: &[u8]) -> (u64, u32) {
    let volume = open_volume(path, &VolumeOptions::default()).expect("open volume");
    let runner = EngineRunner::start(&volume, config_for_volume(&volume, Some(0)), IoChoice::Sync).expect("engine");
    let (_, location) = runner.engine().durable_index().find(|(key, _)| *key == wanted).expect("key is indexed");
    (location.offset_bytes, location.record_bytes)
}

#[test]
fn a_corrupted_byte_is_reported_and_never_returned_as_a_value() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("corrupt.qkv");
    let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() }).expect("create");
    // One SET at a time: one batch each, so valid batches follow the one we corrupt.
    for index in 0..KEYS {
        db.set(&key(index), &value(index)).expect("set");
    }
    db.close().expect("close");
    let (code, text) = quill_check(&path);
    assert_eq!(code, 0, "a clean volume checks clean:\n{text}");
    assert!(text.contains("clean") && text.contains(&format!("{KEYS} keys")), "{text}");

    let (offset, record_bytes) = record_location(&path, &key(CORRUPTED_KEY));
    let options = DbOptions { cache_bytes_max: Some(0), ..DbOptions::default() };
    let db = Db::open(&path, options).expect("reopen");
    // Bit rot under a running database: flip the value's last byte on disk.
    let file = OpenOptions::new().read(true).write(true).open(&path).expect("open the data file");
    let target = offset + u64::from(record_bytes) - 1;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, target).expect("read the byte");
    file.write_all_at(&[byte[0] ^ 0x5a], target).expect("corrupt the byte");
    file.sync_all().expect("sync");

    match db.get(&key(CORRUPTED_KEY)) {
        Err(DbError::Command(error)) => assert_eq!(error.kind, CommandErrorKind::DataCorrupt, "{error}"),
        other => panic!("a corrupted record must give an error reply, got {other:?}"),
    }
    assert_eq!(db.get(&key(CORRUPTED_KEY + 1)).expect("get"), Some(value(CORRUPTED_KEY + 1)));
    db.close().expect("close");

    let (code, text) = quill_check(&path);
    assert_eq!(code, 1, "corruption exits 1:\n{text}");
    let block = offset / BLOCK_BYTES as u64;
    assert!(text.contains("CORRUPT") && text.contains(&format!("block {block}")), "names the location:\n{text}");
}

#[test]
fn a_missing_file_exits_1_and_usage_errors_exit_2() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (code, text) = quill_check(&directory.path().join("missing.qkv"));
    assert_eq!(code, 1, "a missing file is an environment failure: {text}");
    assert!(text.contains("does not exist") && !text.contains("size"), "check has no --size: {text}");
    let status = Command::new(env!("CARGO_BIN_EXE_quill")).arg("check").output().expect("run quill").status;
    assert_eq!(status.code(), Some(2));
}

#[test]
fn a_foreign_file_is_not_a_clean_volume() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("notes.txt");
    std::fs::write(&path, vec![b'x'; 2 << 20]).expect("write");
    let (code, text) = quill_check(&path);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a QuillKV volume"), "{text}");
}
