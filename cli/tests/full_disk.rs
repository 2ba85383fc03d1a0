//! A full disk, and back: the case a user hit. On a 16 MiB volume with `quill serve`'s defaults,
//! 4 KB SETs run until `OOM disk full`; then DELs of half the keys must succeed and SETs must be
//! accepted again (compaction frees what the deletes made garbage), before and after a restart.

mod support;

use support::{start_sized, QuillServer};

const VOLUME_BYTES: u64 = 16 << 20;
const VALUE_BYTES: usize = 4_000;
/// More SETs than 16 MiB can hold: the fill must meet the full disk before this.
const FILL_SETS_MAX: usize = 8_000;
const PIPELINE: usize = 32;

fn connect(server: &QuillServer) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).expect("url");
    client.get_connection().expect("connect")
}

fn value(index: usize, round: usize) -> Vec<u8> {
    let mut value = format!("{round}:{index}:").into_bytes();
    value.resize(VALUE_BYTES, b'v');
    value
}

/// SETs `key{index}` from `first` on, a pipeline at a time, until one is refused with OOM;
/// returns how many were acknowledged. Any other error fails the test.
fn fill(connection: &mut redis::Connection, first: usize, round: usize) -> usize {
    let mut acknowledged = 0;
    for start in (first..first + FILL_SETS_MAX).step_by(PIPELINE) {
        let mut pipe = redis::pipe();
        for index in start..start + PIPELINE {
            pipe.cmd("SET").arg(format!("key{index}")).arg(value(index, round));
        }
        match pipe.query::<()>(connection) {
            Ok(()) => acknowledged += PIPELINE,
            Err(error) if error.code() == Some("OOM") => {
                // The pipeline stopped at the full disk: count the SETs before it that landed,
                // and make the numbering dense again (the caller deletes by index).
                return acknowledged + stored_prefix(connection, start, round);
            }
            Err(error) => panic!("a SET failed: {error}"),
        }
    }
    panic!("{FILL_SETS_MAX} SETs of {VALUE_BYTES} bytes never filled a {VOLUME_BYTES}-byte volume");
}

/// How many keys from `start` on hold their round's value, with no gap, in one pipeline; the
/// ones after the first gap are deleted, so the keys acknowledged are exactly a prefix.
fn stored_prefix(connection: &mut redis::Connection, start: usize, round: usize) -> usize {
    let mut stored = 0;
    for index in start..start + PIPELINE {
        let key = format!("key{index}");
        let got: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(connection).expect("GET");
        if got.as_deref() == Some(value(index, round).as_slice()) && stored == index - start {
            stored += 1;
        } else if got.is_some() {
            let _: i64 = redis::cmd("DEL").arg(&key).query(connection).expect("DEL");
        }
    }
    stored
}

/// DELs every second key of `0..count`; each must delete exactly one key.
fn delete_half(connection: &mut redis::Connection, count: usize) -> usize {
    let mut deleted = 0;
    for index in (0..count).step_by(2) {
        let removed: i64 = redis::cmd("DEL").arg(format!("key{index}")).query(connection).expect("DEL on a full disk");
        assert_eq!(removed, 1, "key{index} was acknowledged, so DEL removes it");
        deleted += 1;
    }
    deleted
}

fn check_survivors(connection: &mut redis::Connection, count: usize, round: usize) {
    for index in (1..count).step_by(2) {
        let got: Option<Vec<u8>> = redis::cmd("GET").arg(format!("key{index}")).query(connection).expect("GET");
        assert_eq!(got, Some(value(index, round)), "key{index} holds its acknowledged value");
    }
}

#[test]
fn deletes_on_a_full_disk_give_their_space_back_to_sets() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("full.quill");
    let server = start_sized(&path, VOLUME_BYTES, &[]);
    let mut connection = connect(&server);
    let filled = fill(&mut connection, 0, 0);
    assert!(filled > 1_000, "16 MiB holds more than {filled} values of 4 KB");
    let deleted = delete_half(&mut connection, filled);
    // Half the data gone: at least a third of it must fit again (reserves and compaction's slack
    // take the rest), and the disk must fill again before the SETs run out.
    let refilled = fill(&mut connection, FILL_SETS_MAX, 1);
    assert!(refilled * 3 >= deleted, "only {refilled} SETs after {deleted} DELs");
    check_survivors(&mut connection, filled, 0);
    drop(connection);
    drop(server);

    let server = start_sized(&path, VOLUME_BYTES, &[]);
    let mut connection = connect(&server);
    check_survivors(&mut connection, filled, 0);
    let freed: i64 = redis::cmd("DEL")
        .arg((0..refilled).map(|index| format!("key{}", FILL_SETS_MAX + index)).collect::<Vec<_>>())
        .query(&mut connection)
        .expect("DEL after a restart on a full disk");
    assert_eq!(freed as usize, refilled);
    let again = fill(&mut connection, 2 * FILL_SETS_MAX, 2);
    assert!(again * 3 >= refilled, "only {again} SETs after a restart and {refilled} DELs");
}
