//! Exclusive open (issue 10): a data file in use is refused at once, by another `quill serve`,
//! by `quill bench`, by `quill check` and by a second `Db::open` in the same process, and the
//! refusal changes nothing. Real processes throughout: the lock must hold across them.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use quill_io_real::{Db, DbError, DbOptions, LockHolder, VolumeAccess, VolumeError};
use support::{start, QuillServer};

const SIZE: &str = "67108864";

/// Runs `quill ARGS…`, which must exit within 30 s (a refused open must not start serving).
fn quill(args: &[&str], path: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(args)
        .arg("--path")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run quill");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for quill").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("quill {args:?} did not exit: it opened a volume already in use");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    text_of(child.wait_with_output().expect("quill output"))
}

fn text_of(output: Output) -> (i32, String) {
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

/// One RESP command to the server; returns its reply's first line.
fn command(server: &QuillServer, words: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect to quill serve");
    let mut request = format!("*{}\r\n", words.len());
    for word in words {
        request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    stream.write_all(request.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    if line.starts_with('$') && line != "$-1\r\n" {
        line.clear();
        reader.read_line(&mut line).expect("bulk reply");
    }
    line.trim_end().to_string()
}

/// The refusal names the path and the process holding the lock.
fn assert_names_holder(text: &str, path: &Path, server: &QuillServer) {
    let holder = format!("another process (pid {}) has it open", server.child.id());
    assert!(text.contains(&format!("{} is in use", path.display())) && text.contains(&holder), "{text}");
}

#[test]
fn a_second_serve_on_a_running_servers_file_exits_1_and_the_first_goes_on() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("served.qkv");
    let server = start(&path, &[]);
    assert_eq!(command(&server, &["SET", "before", "1"]), "+OK");
    let (code, text) = quill(&["serve", "--io", "sync", "--size", SIZE, "--port", "0"], &path);
    assert_eq!(code, 1, "{text}");
    assert_names_holder(&text, &path, &server);
    assert!(!text.contains("ready"), "the second server must not start: {text}");
    assert_eq!(command(&server, &["SET", "after", "2"]), "+OK", "{}", server.log());
    assert_eq!(command(&server, &["GET", "before"]), "1");
}

#[test]
fn bench_on_a_live_servers_file_exits_1_without_touching_it() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("benched.qkv");
    let server = start(&path, &[]);
    assert_eq!(command(&server, &["SET", "kept", "yes"]), "+OK");
    // --reformat would erase the volume if the open went through.
    let bench = ["bench", "--io", "sync", "--size", SIZE, "--keys", "10", "--duration", "0.1", "--reformat"];
    let (code, text) = quill(&bench, &path);
    assert_eq!(code, 1, "{text}");
    assert_names_holder(&text, &path, &server);
    assert_eq!(command(&server, &["GET", "kept"]), "yes");
    assert_eq!(command(&server, &["DBSIZE"]), ":1");
}

#[test]
fn check_is_refused_beside_a_writer_and_runs_on_an_idle_file() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("checked.qkv");
    let server = start(&path, &[]);
    assert_eq!(command(&server, &["SET", "key", "value"]), "+OK");
    let (code, text) = quill(&["check"], &path);
    assert_eq!(code, 1, "in use (an environment failure): nothing was checked, no corruption claimed:\n{text}");
    assert_names_holder(&text, &path, &server);
    assert!(text.contains("writer") && !text.contains("CORRUPT"), "{text}");
    drop(server); // SIGKILL: the kernel drops the lock with the process
    let (code, text) = quill(&["check"], &path);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("clean") && text.contains("1 keys"), "{text}");
}

#[test]
fn a_second_db_open_in_one_process_gets_the_typed_error() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("embedded.qkv");
    let db = Db::open(&path, DbOptions { create_size_bytes: Some(16 << 20), ..DbOptions::default() }).expect("open");
    db.set(b"key", b"first").expect("set");
    match Db::open(&path, DbOptions::default()) {
        Err(DbError::Volume(VolumeError::Locked { path: locked, access, holder })) => {
            assert_eq!((locked, access, holder), (path.clone(), VolumeAccess::Exclusive, LockHolder::ThisProcess));
        }
        other => panic!("a second Db::open must be refused with VolumeError::Locked, got {:?}", other.err()),
    }
    assert_eq!(db.get(b"key").expect("the first Db goes on"), Some(b"first".to_vec()));
    db.close().expect("close");
    // Closing released the lock. Another test of this binary spawning a process may hold a
    // copy of the descriptor (and so the flock) between its fork and its exec: a short retry.
    let mut reopened = Db::open(&path, DbOptions::default());
    for _ in 0..50 {
        if !matches!(reopened, Err(DbError::Volume(VolumeError::Locked { .. }))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        reopened = Db::open(&path, DbOptions::default());
    }
    let db = reopened.expect("closing released the lock");
    assert_eq!(db.get(b"key").expect("get"), Some(b"first".to_vec()));
}

#[test]
fn db_open_beside_a_running_server_names_its_pid() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("shared.qkv");
    let server = start(&path, &[]);
    match Db::open(&path, DbOptions::default()) {
        Err(DbError::Volume(VolumeError::Locked { holder, .. })) => {
            assert_eq!(holder, LockHolder::Process(server.child.id()));
        }
        other => panic!("Db::open beside quill serve must be refused, got {:?}", other.err()),
    }
}

#[test]
fn a_failed_preallocation_leaves_no_file_behind() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("unsized.qkv");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_quill"));
    serve.args(["serve", "--io", "sync", "--size", SIZE, "--port", "0", "--path"]).arg(&path);
    // SAFETY: only async-signal-safe calls between fork and exec. A 1 MiB file size limit makes
    // the 64 MiB fallocate fail with EFBIG (SIGXFSZ ignored, so it is an error, not a kill).
    unsafe {
        serve.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, text) = text_of(serve.output().expect("run quill serve"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("preallocate"), "{text}");
    assert!(!path.exists(), "the file this start created is removed");
    let server = start(&path, &[]);
    assert_eq!(command(&server, &["SET", "key", "value"]), "+OK", "a later start creates it afresh");
}
