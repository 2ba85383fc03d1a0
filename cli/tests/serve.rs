//! `quill serve` with real clients: redis-cli (round trips, binary values, --pipe),
//! redis-benchmark, the `redis` crate, and a kill -9 under write load.
//!
//! redis-cli and redis-benchmark come from Debian's redis-tools; `.ci/run` installs them and sets
//! QUILL_REQUIRE_REDIS_TOOLS=1, which makes their absence a failure instead of a skip.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::start;

fn redis_cli(port: u16, arguments: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default()).expect("write stdin");
    drop(input);
    let output = child.wait_with_output().expect("redis-cli output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn redis_cli_round_trips_binary_values_and_pipes() {
    if !support::redis_tools_present() {
        return;
    }
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start(&directory.path().join("cli.qkv"), &[]);
    assert_eq!(redis_cli(server.port, &["PING"], None), "PONG\n");
    assert_eq!(redis_cli(server.port, &["SET", "greeting", "hello world"], None), "OK\n");
    assert_eq!(redis_cli(server.port, &["GET", "greeting"], None), "hello world\n");
    let binary = b"zero\x00byte\r\nand\xffhigh";
    assert_eq!(redis_cli(server.port, &["-x", "SET", "binary"], Some(binary)), "OK\n");
    assert_eq!(redis_cli(server.port, &["STRLEN", "binary"], None), format!("{}\n", binary.len()));
    let mut pipe = Vec::new();
    for index in 0..1000 {
        let (key, value) = (format!("pipe:{index}"), format!("value-{index}"));
        pipe.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n", key.len(), value.len()).as_bytes(),
        );
    }
    let piped = redis_cli(server.port, &["--pipe"], Some(&pipe));
    assert!(piped.contains("errors: 0, replies: 1000"), "{piped}");
    assert_eq!(redis_cli(server.port, &["GET", "pipe:999"], None), "value-999\n");
    assert_eq!(redis_cli(server.port, &["DBSIZE"], None), "1002\n");
    assert!(redis_cli(server.port, &["INFO", "keyspace"], None).contains("db0:keys=1002"));
    // `redis-cli --scan` walks SCAN's cursor to the end: every key, once.
    let scanned = redis_cli(server.port, &["--scan", "--pattern", "pipe:*"], None);
    let mut keys: Vec<&str> = scanned.lines().collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 1000, "{} lines", scanned.lines().count());
    assert_eq!(scanned.lines().count(), 1000, "no key twice");
}

#[test]
fn shutdown_writes_the_checkpoint_and_exits_and_the_data_is_there_after() {
    if !support::redis_tools_present() {
        return;
    }
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("shutdown.qkv");
    let mut server = start(&path, &[]);
    assert_eq!(redis_cli(server.port, &["SET", "kept", "yes"], None), "OK\n");
    redis_cli(server.port, &["SHUTDOWN"], None);
    let status = server.child.wait().expect("quill serve exits");
    assert!(status.success(), "{status:?}; log: {}", server.log());
    assert!(server.log().contains("shutdown checkpoint done"), "{}", server.log());
    let again = start(&path, &[]);
    assert!(again.log().contains("from a checkpoint"), "{}", again.log());
    assert_eq!(redis_cli(again.port, &["GET", "kept"], None), "yes\n");
}

#[test]
fn redis_benchmark_runs_without_errors() {
    if !support::redis_tools_present() {
        return;
    }
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start(&directory.path().join("bench.qkv"), &[]);
    let output = Command::new("redis-benchmark")
        .args(["-p", &server.port.to_string(), "-t", "set,get,incr,mset,ping", "-n", "2000", "-c", "10", "-P", "4"])
        .args(["-r", "1000", "-d", "100", "--csv"])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    for test in ["SET", "GET", "INCR", "MSET"] {
        assert!(text.lines().any(|line| line.starts_with(&format!("\"{test}"))), "{test} missing from:\n{text}");
    }
}

#[test]
fn the_redis_crate_works_as_a_client_with_a_password() {
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start(&directory.path().join("crate.qkv"), &["--requirepass", "s3cret"]);
    let refused = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).expect("url");
    let mut connection = refused.get_connection().expect("connect without a password");
    let error = redis::cmd("GET").arg("k").query::<Option<String>>(&mut connection).expect_err("NOAUTH");
    assert!(error.to_string().contains("NOAUTH"), "{error}");
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", server.port)).expect("url");
    let mut connection = client.get_connection().expect("connect");
    let _: () = redis::cmd("SET").arg("counter").arg(10).query(&mut connection).expect("set");
    let value: i64 = redis::cmd("INCRBY").arg("counter").arg(5).query(&mut connection).expect("incrby");
    assert_eq!(value, 15);
    let values: Vec<Option<String>> =
        redis::cmd("MGET").arg("counter").arg("missing").query(&mut connection).expect("mget");
    assert_eq!(values, vec![Some("15".to_string()), None]);
    let mut pipeline = redis::pipe();
    for index in 0..100 {
        pipeline.cmd("SET").arg(format!("p{index}")).arg(index).ignore();
    }
    let _: () = pipeline.query(&mut connection).expect("pipeline");
    let size: i64 = redis::cmd("DBSIZE").query(&mut connection).expect("dbsize");
    assert_eq!(size, 101);
}

#[test]
fn every_acknowledged_set_survives_kill_dash_nine() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("kill.qkv");
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    // The one SET sent when the kill came: it may or may not have become durable.
    let mut unanswered: Option<(String, String)> = None;
    for round in 0..5 {
        let server = start(&path, &[]);
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).expect("url");
        let mut connection =
            client.get_connection().unwrap_or_else(|error| panic!("round {round}: connect: {error}: {}", server.log()));
        for (key, value) in &acknowledged {
            let got: Option<String> = redis::cmd("GET").arg(key).query(&mut connection).expect("get after restart");
            let later = unanswered.as_ref().filter(|(pending, _)| pending == key).map(|(_, value)| value.as_str());
            assert!(
                got.as_deref() == Some(value.as_str()) || (later.is_some() && got.as_deref() == later),
                "round {round}: acknowledged {key}={value} lost (got {got:?})"
            );
        }
        // The unanswered SET either landed (and is now the value to keep) or did not.
        if let Some((key, value)) = unanswered.take() {
            let got: Option<String> = redis::cmd("GET").arg(&key).query(&mut connection).expect("get");
            if got.as_deref() == Some(value.as_str()) {
                acknowledged.retain(|(existing, _)| *existing != key);
                acknowledged.push((key, value));
            }
        }
        let killer_pid = server.child.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150 + 70 * round));
            // SAFETY: plain kill(2) on the child's pid.
            unsafe { libc::kill(killer_pid as i32, libc::SIGKILL) };
        });
        for index in 0.. {
            let (key, value) = (format!("r{round}:k{}", index % 500), format!("r{round}:v{index}"));
            match redis::cmd("SET").arg(&key).arg(&value).query::<()>(&mut connection) {
                Ok(()) => {
                    acknowledged.retain(|(existing, _)| *existing != key);
                    acknowledged.push((key, value));
                }
                Err(_) => {
                    unanswered = Some((key, value)); // killed with this SET in flight
                    break;
                }
            }
        }
        killer.join().expect("killer");
        drop(server);
    }
    assert!(acknowledged.len() > 100, "the load wrote something: {}", acknowledged.len());
}
