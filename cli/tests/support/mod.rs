//! Helpers shared by the integration tests that run `quill serve`.
//!
//! Each test binary compiles this module and uses a part of it, so unused items are expected.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Whether redis-cli is installed. Where `.ci/run` installed it (QUILL_REQUIRE_REDIS_TOOLS=1),
/// its absence fails the test; elsewhere the test says SKIPPED.
#[allow(dead_code)] // not every test file that includes this module uses it
pub fn redis_tools_present() -> bool {
    let present = Command::new("redis-cli").arg("--version").output().is_ok_and(|output| output.status.success());
    if !present {
        assert!(std::env::var_os("QUILL_REQUIRE_REDIS_TOOLS").is_none(), "redis-cli is required here but missing");
        eprintln!("SKIPPED: redis-cli is not installed (apt-get install redis-tools)");
    }
    present
}

pub struct QuillServer {
    pub child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl QuillServer {
    /// What the server printed on stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for QuillServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `quill serve` on a port the system picks (no race with other tests for a free port)
/// and waits until it has recovered its volume and says where it listens.
pub fn start(path: &Path, extra: &[&str]) -> QuillServer {
    start_sized(path, 64 << 20, extra)
}

/// The same, creating a volume of `size_bytes` if the path is new.
pub fn start_sized(path: &Path, size_bytes: u64, extra: &[&str]) -> QuillServer {
    static STARTS: AtomicUsize = AtomicUsize::new(0);
    let log = path.with_extension(format!("{}.log", STARTS.fetch_add(1, Ordering::Relaxed)));
    // QUILL_BIN runs another build (an older one, to show a test fails without a fix).
    let binary = std::env::var_os("QUILL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_quill").into());
    let child = Command::new(binary)
        .args(["serve", "--io", "sync", "--size", &size_bytes.to_string(), "--port", "0", "--path"])
        .arg(path)
        .args(extra)
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("start quill serve");
    let mut server = QuillServer { child, port: 0, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(port) = ready_port(&server.log()) {
            server.port = port;
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("quill serve exited with {status}: {}", server.log());
        }
        assert!(Instant::now() < deadline, "quill serve did not become ready: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The port in "quill serve: ready, listening on 127.0.0.1:PORT (…)": the first listener's.
pub fn ready_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|line| line.contains("ready, listening on"))?;
    let address = line.split("listening on ").nth(1)?.split_whitespace().next()?.trim_end_matches(',');
    address.rsplit(':').next()?.parse().ok()
}
