//! Expiry through the embedded `Db` on a real driver: the engine thread wakes at a key's time
//! by itself (its timer, not another request), deletes it, and the deletion is durable.

use std::time::Duration;

use quill_io_real::{Db, DbOptions, Ttl};

fn open(path: &std::path::Path) -> Db {
    Db::open(path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() }).expect("open")
}

#[test]
fn keys_expire_on_time_and_stay_gone_after_a_restart() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("volume.qkv");
    let db = open(&path);
    db.set_with_ttl(b"short", b"value", Duration::from_millis(50)).expect("set");
    db.set_with_ttl(b"long", b"value", Duration::from_secs(3600)).expect("set");
    db.set(b"plain", b"value").expect("set");
    assert_eq!(db.get(b"short").expect("get"), Some(b"value".to_vec()));
    assert!(matches!(db.ttl(b"long").expect("ttl"), Ttl::Expires(left) if left > Duration::from_secs(3590)));
    assert_eq!(db.ttl(b"plain").expect("ttl"), Ttl::Persistent);
    // Nothing is sent meanwhile: active expiry must delete the key on the engine thread's own
    // timer. DBSIZE counts keys until their deletion is written, and is answered before the
    // engine's tick of the turn it arrives in, so a timer that never fired shows as 3.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(db.db_size().expect("dbsize"), 2, "the expired key was deleted with no request to wake the engine");
    assert_eq!(db.get(b"short").expect("get"), None);
    assert_eq!(db.ttl(b"short").expect("ttl"), Ttl::Missing);
    assert!(db.expire(b"plain", Duration::from_secs(7200)).expect("expire"));
    assert!(db.persist(b"long").expect("persist"));
    db.close().expect("close");

    let db = open(&path);
    assert_eq!(db.get(b"short").expect("get"), None);
    assert_eq!(db.ttl(b"long").expect("ttl"), Ttl::Persistent, "PERSIST is durable");
    assert!(matches!(db.ttl(b"plain").expect("ttl"), Ttl::Expires(left) if left > Duration::from_secs(7100)));
    assert!(db.expire(b"plain", Duration::ZERO).expect("expire"), "a zero time deletes");
    assert_eq!(db.get(b"plain").expect("get"), None);
    assert_eq!(db.db_size().expect("dbsize"), 1);
    db.close().expect("close");
}

/// A command runs at the time it arrives, not the time of the engine thread's last turn: after
/// an idle second, a one-second time to live starts now (found reviewing the change).
#[test]
fn a_time_to_live_starts_when_the_command_arrives() {
    let directory = tempfile::tempdir().expect("temp dir");
    let db = open(&directory.path().join("volume.qkv"));
    db.set(b"warm", b"up").expect("set");
    std::thread::sleep(Duration::from_millis(1500));
    db.set_with_ttl(b"key", b"value", Duration::from_secs(1)).expect("set");
    assert_eq!(db.get(b"key").expect("get"), Some(b"value".to_vec()), "a fresh key with a second to live");
    db.close().expect("close");
}
