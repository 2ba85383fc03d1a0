//! The README's embedding example, compiled by `cargo test` so it stays true.

use quill_io_real::{Db, DbOptions, WriteOp};

fn main() -> Result<(), quill_io_real::DbError> {
    let directory = std::env::temp_dir().join(format!("quill-example-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temp directory");
    let path = directory.join("app.qkv");
    // A new data file needs a size; an existing volume opens as it is.
    let options = DbOptions { create_size_bytes: Some(64 << 20), ..DbOptions::default() };
    let db = Db::open(&path, options)?;
    db.set(b"greeting", b"hello")?; // returns once durable
                                    // Cached: answered on this thread.
    assert_eq!(db.get(b"greeting")?, Some(b"hello".to_vec()));
    // Several keys in one atomic, durable commit, and read back together.
    db.set_many(&[(b"a".as_slice(), b"1".as_slice()), (b"b", b"2")])?;
    assert_eq!(db.get_many(&[b"a".as_slice(), b"b"])?, [Some(b"1".to_vec()), Some(b"2".to_vec())]);
    // Puts and deletes together, all or none (one EXEC: one batch).
    db.write_batch(&[WriteOp::Put(b"c", b"3"), WriteOp::Delete(b"a")])?;
    // Every key, by SCAN: each key present throughout comes back exactly once.
    for key in db.keys_matching(b"[bc]") {
        println!("{}", String::from_utf8_lossy(&key?));
    }
    assert_eq!(db.keys().count(), 3); // greeting, b, c
    db.close()?; // writes a checkpoint, so the next open is fast
    std::fs::remove_dir_all(&directory).ok();
    Ok(())
}
