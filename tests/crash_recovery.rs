//! Crash test: a writer process acknowledges keys on stdout; it is SIGKILLed at random moments,
//! and after each restart every acknowledged key must be present with its exact value.
//!
//! The writer is this test binary re-executed with `QUILL_CRASH_WRITER` set (see
//! `crash_writer_child`), so no extra binary is needed.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quill_io_real::{Db, DbOptions, IoChoice};
use support::value_for;

const WRITER_ENV: &str = "QUILL_CRASH_WRITER";
const ROUNDS: u64 = 5;
const WRITER_THREADS: u64 = 8;
/// Keys per writer thread: small, so later writes and rounds overwrite earlier ones.
const KEYS_PER_THREAD: u64 = 300;

/// One write by the writer: its round and its index in its thread's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Write {
    round: u64,
    index: u64,
}

fn key_for(thread: u64, index: u64) -> String {
    format!("k{thread}-{}", index % KEYS_PER_THREAD)
}

fn value_of(thread: u64, write: Write) -> Vec<u8> {
    let length = ((write.index * 37 + thread * 11) % 5000) as usize;
    value_for(key_for(thread, write.index).as_bytes(), write.round * 1_000_000 + write.index, length)
}

/// The child side: each thread writes its keys in sequence until killed, printing `ack ROUND
/// THREAD INDEX` only after the SET returned (it is durable then).
#[test]
fn crash_writer_child() {
    let Ok(spec) = std::env::var(WRITER_ENV) else { return };
    let (path, round, io) = parse_spec(&spec);
    let options = DbOptions { create_size_bytes: Some(256 << 20), io, ..DbOptions::default() };
    let db = Arc::new(Db::open(&path, options).expect("writer opens the volume"));
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let writers: Vec<_> = (0..WRITER_THREADS)
        .map(|thread| {
            let (db, stdout) = (Arc::clone(&db), Arc::clone(&stdout));
            std::thread::spawn(move || {
                for index in 0u64.. {
                    let write = Write { round, index };
                    db.set(key_for(thread, index).as_bytes(), &value_of(thread, write)).expect("set");
                    let mut out = stdout.lock().expect("stdout");
                    writeln!(out, "ack {round} {thread} {index}").expect("print");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for writer in writers {
        let _ = writer.join();
    }
}

fn parse_spec(spec: &str) -> (PathBuf, u64, IoChoice) {
    let mut parts = spec.splitn(3, '|');
    let round = parts.next().and_then(|text| text.parse().ok()).expect("round");
    let io = if parts.next() == Some("sync") { IoChoice::Sync } else { IoChoice::Uring };
    (PathBuf::from(parts.next().expect("path")), round, io)
}

/// Each key's write that must be visible: the last acknowledged or observed one.
type Model = BTreeMap<String, (u64, Write)>;

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(WRITER_ENV).is_ok() {
        return;
    }
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("crash.qkv");
    let mut random = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |time| time.as_nanos() as u64) | 1;
    eprintln!("crash test random seed {random}");
    let mut model = Model::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let kill_after = Duration::from_millis(200 + random % 600);
        let io = if round % 2 == 0 { "uring" } else { "sync" };
        let lines = run_writer_and_kill(&path, round, io, kill_after);
        let in_flight = apply_acks(&mut model, round, &lines);
        if let Err(message) = verify(&path, &mut model, &in_flight) {
            // Keep the volume and the acknowledgements for a post-mortem.
            let kept = directory.keep();
            std::fs::write(kept.join(format!("acks-round-{round}.txt")), lines.join("\n")).expect("save the acks");
            panic!("round {round}: {message} (volume kept in {})", kept.display());
        }
        eprintln!(
            "round {round} ({io}): killed after {kill_after:?}, {} acks, {} keys verified",
            lines.len(),
            model.len()
        );
    }
    assert!(model.len() > 10, "the writer acknowledged too little to test anything");
    assert!(started.elapsed() < Duration::from_secs(60), "the crash test is meant to stay short");
}

fn run_writer_and_kill(path: &Path, round: u64, io: &str, kill_after: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_writer_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, format!("{round}|{io}|{}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        // Only complete lines count: a line cut by the kill was never fully acknowledged.
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The test harness may print its own text in front of the first line.
            .filter_map(|line| line.find("ack ").map(|start| line[start..].to_string()))
            .collect::<Vec<_>>()
    });
    std::thread::sleep(kill_after);
    // SAFETY: a signal to our own child, which has not been waited for yet.
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(killed, 0, "SIGKILL the writer");
    let status = child.wait().expect("wait for the writer");
    assert!(!status.success(), "the writer must die by the signal, not exit: {status:?}");
    reader.join().expect("stdout reader")
}

/// Records the round's acknowledgements; returns each thread's write that may have been in
/// flight at the kill (a thread prints before it starts its next write, so there is one).
fn apply_acks(model: &mut Model, round: u64, lines: &[String]) -> Vec<(String, u64, Write)> {
    let mut next_index = vec![0u64; WRITER_THREADS as usize];
    for line in lines {
        let fields: Vec<u64> = line.split_whitespace().skip(1).map(|field| field.parse().expect("number")).collect();
        let [ack_round, thread, index] = fields[..] else { panic!("bad ack line {line:?}") };
        assert_eq!(ack_round, round, "an ack from another round");
        model.insert(key_for(thread, index), (thread, Write { round, index }));
        next_index[thread as usize] = index + 1;
    }
    (0..WRITER_THREADS)
        .map(|thread| {
            let index = next_index[thread as usize];
            (key_for(thread, index), thread, Write { round, index })
        })
        .collect()
}

/// Reopens the volume (recovery runs) and checks every key: its value is the modelled write, or
/// the write that was in flight for it at the kill — which, once seen, must stay.
fn verify(path: &Path, model: &mut Model, in_flight: &[(String, u64, Write)]) -> Result<(), String> {
    let options = DbOptions { io: IoChoice::Sync, cache_bytes_max: Some(0), ..DbOptions::default() };
    let db = Db::open(path, options).map_err(|error| format!("recovery after SIGKILL failed: {error}"))?;
    let mut keys: Vec<String> = model.keys().cloned().collect();
    keys.extend(in_flight.iter().map(|(key, _, _)| key.clone()));
    keys.dedup();
    for key in keys {
        let value = db.get(key.as_bytes()).map_err(|error| format!("get {key}: {error}"))?;
        let mut allowed: Vec<(u64, Write)> = model.get(&key).copied().into_iter().collect();
        allowed
            .extend(in_flight.iter().filter(|(other, _, _)| *other == key).map(|(_, thread, write)| (*thread, *write)));
        match value {
            None if model.contains_key(&key) => {
                return Err(format!("key {key}: acknowledged {:?} but missing", model[&key]))
            }
            None => {}
            Some(value) => match allowed.iter().find(|(thread, write)| value_of(*thread, *write) == value) {
                Some(&seen) => _ = model.insert(key, seen),
                None => {
                    return Err(format!(
                        "key {key}: a value of {} bytes that is none of the allowed writes {allowed:?}",
                        value.len()
                    ))
                }
            },
        }
    }
    db.close().map_err(|error| error.to_string())
}
