//! What a newcomer meets first: exit codes, messages that say what to do, and no file left
//! behind by a start that failed.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn quill(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quill")).args(arguments).output().expect("run quill");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[test]
fn serve_on_a_taken_port_exits_1_and_creates_no_file() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("trap.qkv");
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("address").port().to_string();
    let (code, text) =
        quill(&["serve", "--io", "sync", "--size", "8388608", "--port", &port, "--path", path_text(&path)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot listen"), "{text}");
    assert!(!path.exists(), "a failed start left {} behind", path.display());
}

#[test]
fn check_says_what_is_wrong_without_advice_it_cannot_take() {
    let directory = tempfile::tempdir().expect("temp dir");
    let foreign = directory.path().join("notes.txt");
    std::fs::write(&foreign, vec![b'x'; 12 * 1024]).expect("write");
    let (code, text) = quill(&["check", "--path", path_text(&foreign)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a QuillKV volume"), "a small foreign file is foreign, not too small: {text}");
    assert!(!text.contains("overwrite") && !text.contains("too small"), "check never writes: {text}");
}

#[test]
fn a_small_file_that_starts_like_a_volume_is_too_small() {
    let directory = tempfile::tempdir().expect("temp dir");
    let truncated = directory.path().join("truncated.qkv");
    let mut bytes = vec![0u8; 12 * 1024];
    bytes[..8].copy_from_slice(b"QUILLKV1");
    std::fs::write(&truncated, bytes).expect("write");
    let (code, text) = quill(&["check", "--path", path_text(&truncated)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("too small"), "{text}");
}

#[test]
fn size_on_an_existing_volume_is_reported_as_ignored() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("sized.qkv");
    let bench = |size: &str| {
        let arguments = ["bench", "--io", "sync", "--keys", "10", "--duration", "0.1", "--size", size, "--path"];
        quill(&[&arguments[..], &[path_text(&path)]].concat())
    };
    let (code, text) = bench("8388608");
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("ignored"), "{text}");
    let (code, text) = bench("16777216");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("--size 16777216 ignored") && text.contains("8388608 bytes"), "{text}");
}

#[test]
fn usage_errors_exit_2_everywhere() {
    for arguments in [
        &["sim", "--seeds", "0"][..],
        &["sim", "--seeds", "1", "--shard", "3/4"],
        &["sim", "--faults", "sometimes"],
        &["serve", "--io", "fast"],
        &["check"],
        &["bench", "--path", "x.qkv", "--concurrency", "0"],
        &["replay"],
    ] {
        let (code, text) = quill(arguments);
        assert_eq!(code, 2, "{arguments:?}: {text}");
    }
}

#[test]
fn a_bad_seeds_file_line_is_named() {
    let directory = tempfile::tempdir().expect("temp dir");
    let list = directory.path().join("seeds.txt");
    std::fs::write(&list, "1 200 default\n2 200 sometimes\n").expect("write");
    let (code, text) = quill(&["sim", "--seeds-file", path_text(&list)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn a_failing_seed_in_json_carries_its_replay_command() {
    // Which seeds fail depends on the workload, which grows; find one, then keep it in a list.
    let (code, text) =
        quill(&["sim", "--seeds", "200", "--family", "standard", "--plant", "ack-before-sync", "--json"]);
    assert_eq!(code, 1, "some seed fails with the planted bug: {text}");
    let line = text.lines().find(|line| line.starts_with('{')).expect("the JSON summary");
    let summary: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let seed = summary["failed_seeds"][0]["seed"].as_u64().expect("a failing seed");
    let directory = tempfile::tempdir().expect("temp dir");
    let list = directory.path().join("seeds.txt");
    std::fs::write(&list, format!("{seed} 5000 default standard  # fails with ack-before-sync\n")).expect("write");
    let (code, text) = quill(&["sim", "--seeds-file", path_text(&list), "--plant", "ack-before-sync", "--json"]);
    assert_eq!(code, 1, "{text}");
    let line = text.lines().find(|line| line.starts_with('{')).expect("the JSON summary");
    let summary: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let failed = &summary["failed_seeds"][0];
    assert_eq!(failed["seed"], seed);
    assert_eq!(failed["ops"], 5000);
    let replay = failed["replay"].as_str().expect("a replay command");
    let expected = format!("--seed {seed} --ops 5000 --faults default --family standard --plant ack-before-sync");
    assert!(replay.contains(&expected), "{replay}");
    let (code, _) = quill(&["sim", "--seeds-file", path_text(&list)]);
    assert_eq!(code, 0, "the seed passes without the planted bug");
}

#[test]
fn serve_logs_its_start_recovery_and_shutdown() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("logged.qkv");
    let stop = |server: &mut support::QuillServer| {
        // SAFETY: a signal to the child we started, which is still running.
        unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = server.child.wait().expect("the server exits");
        assert!(status.success(), "a clean shutdown: {status}: {}", server.log());
    };
    let mut first = support::start_sized(&path, 8 << 20, &[]);
    assert!(first.log().contains("INFO formatted"), "{}", first.log());
    stop(&mut first);
    let log = first.log();
    assert!(log.contains("shutting down") && log.contains("shutdown checkpoint done"), "{log}");
    let mut second = support::start_sized(&path, 8 << 20, &[]);
    let log = second.log();
    assert!(log.contains("recovered") && log.contains("from a checkpoint") && log.contains("keys="), "{log}");
    assert!(log.contains("--size 8388608 ignored"), "{log}");
    stop(&mut second);
}
