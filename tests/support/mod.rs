//! Helpers shared by the real-I/O tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use quill_io_real::{Db, DbOptions, IoChoice};

/// The drivers to run a scenario under. io_uring may be unavailable in a CI sandbox: then the
/// `Uring` choice falls back to the portable driver inside `quill-io-real`, and this says so.
pub fn drivers() -> Vec<IoChoice> {
    if let Err(error) = quill_io_real::uring_available() {
        eprintln!("io_uring unavailable here ({error}): the io_uring runs fall back to the sync driver");
    }
    vec![IoChoice::Uring, IoChoice::Sync]
}

pub fn volume_path(directory: &Path, name: &str) -> PathBuf {
    directory.join(format!("{name}.qkv"))
}

pub fn create(path: &Path, io: IoChoice, size_bytes: u64) -> Db {
    let options = DbOptions { create_size_bytes: Some(size_bytes), io, ..DbOptions::default() };
    Db::open(path, options).expect("create the volume")
}

pub fn reopen(path: &Path, io: IoChoice) -> Db {
    Db::open(path, DbOptions { io, ..DbOptions::default() }).expect("reopen the volume")
}

/// A value derived from the key and a round, so a wrong or stale value is noticed.
pub fn value_for(key: &[u8], round: u64, length: usize) -> Vec<u8> {
    let mut state =
        round.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key.iter().fold(7u64, |hash, &byte| hash * 31 + byte as u64);
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
