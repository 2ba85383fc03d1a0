//! `quill serve` on a network: protected mode, TLS (redis-cli and the `redis` crate over it,
//! client certificates), a password kept out of the process list, and the limits at the edge
//! (idle clients, too many clients, a reader too slow for its replies), each with real sockets.
//!
//! Certificates are made at test time with the openssl command (a throwaway CA and a server
//! certificate for 127.0.0.1); `.ci/run` installs openssl and redis-tools.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::start_sized;

const SIZE: u64 = 16 << 20;

fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA, and a server certificate and a client certificate it signed, in `directory`.
fn certificates(directory: &Path) -> PathBuf {
    let openssl = |arguments: &[&str]| run(Command::new("openssl").current_dir(directory).args(arguments));
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2"]
            .iter()
            .chain(&["-subj", "/CN=quill test CA"])
            .copied()
            .collect::<Vec<_>>(),
    );
    std::fs::write(directory.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write ext");
    for name in ["server", "client"] {
        let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(
            &["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
                .iter()
                .chain(&["-out", &crt, "-days", "2", "-extfile", "ext"])
                .copied()
                .collect::<Vec<_>>(),
        );
    }
    directory.to_path_buf()
}

fn tls_flags(certs: &Path, with_client_ca: bool) -> Vec<String> {
    let mut flags = vec![
        "--tls-port".to_string(),
        "0".to_string(),
        "--tls-cert-file".to_string(),
        certs.join("server.crt").display().to_string(),
        "--tls-key-file".to_string(),
        certs.join("server.key").display().to_string(),
    ];
    if with_client_ca {
        flags.extend(["--tls-ca-cert-file".to_string(), certs.join("ca.crt").display().to_string()]);
    }
    flags
}

fn redis_cli(arguments: &[&str]) -> String {
    let output = Command::new("redis-cli").args(arguments).output().expect("run redis-cli");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)).trim().to_string()
}

#[test]
fn tls_only_serves_redis_cli_and_the_redis_crate() {
    let directory = tempfile::tempdir().expect("temp dir");
    let certs = certificates(directory.path());
    let flags = tls_flags(&certs, false);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // --port 0 with --tls-port: TLS only.
    let server = start_sized(&directory.path().join("tls.qkv"), SIZE, &flags);
    assert!(server.log().contains("(TLS)"), "{}", server.log());
    let port = server.port.to_string();
    let ca = certs.join("ca.crt").display().to_string();
    if support::redis_tools_present() {
        let tls = ["-p", &port, "--tls", "--cacert", &ca];
        assert_eq!(redis_cli(&[&tls[..], &["SET", "k", "over tls"]].concat()), "OK");
        assert_eq!(redis_cli(&[&tls[..], &["GET", "k"]].concat()), "over tls");
        // Plaintext on the TLS port is not RESP: the handshake fails, nothing is served.
        assert!(!redis_cli(&["-p", &port, "GET", "k"]).contains("over tls"));
    }
    let url = format!("rediss://127.0.0.1:{port}/");
    let root_cert = std::fs::read(certs.join("ca.crt")).expect("read the CA");
    let tls_certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
    let client = redis::Client::build_with_tls(url, tls_certificates).expect("a TLS client");
    let mut connection = client.get_connection().expect("a TLS connection");
    redis::cmd("SET").arg("crate").arg(b"\x00binary\xff".as_slice()).query::<()>(&mut connection).expect("SET");
    let value: Vec<u8> = redis::cmd("GET").arg("crate").query(&mut connection).expect("GET");
    assert_eq!(value, b"\x00binary\xff");
}

#[test]
fn client_certificates_are_required_when_a_ca_is_given() {
    if !support::redis_tools_present() {
        return;
    }
    let directory = tempfile::tempdir().expect("temp dir");
    let certs = certificates(directory.path());
    let flags = tls_flags(&certs, true);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = start_sized(&directory.path().join("mtls.qkv"), SIZE, &flags);
    let port = server.port.to_string();
    let path = |name: &str| certs.join(name).display().to_string();
    let (ca, cert, key) = (path("ca.crt"), path("client.crt"), path("client.key"));
    let with_certificate = ["-p", &port, "--tls", "--cacert", &ca, "--cert", &cert, "--key", &key, "PING"];
    assert_eq!(redis_cli(&with_certificate), "PONG");
    let without = redis_cli(&["-p", &port, "--tls", "--cacert", &ca, "PING"]);
    assert_ne!(without, "PONG", "a client without a certificate must be refused");
}

/// This machine's address on a non-loopback interface, if it has one.
fn non_loopback_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?; // no packet is sent: this only picks a route
    let address = socket.local_addr().ok()?.ip();
    (!address.is_loopback() && !address.is_unspecified()).then_some(address)
}

fn read_reply(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn protected_mode_denies_other_hosts_and_serves_loopback() {
    let Some(address) = non_loopback_address() else {
        assert!(std::env::var_os("QUILL_REQUIRE_NETWORK").is_none(), "no non-loopback interface");
        eprintln!("SKIPPED: this machine has no non-loopback address to connect from");
        return;
    };
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start_sized(&directory.path().join("open.qkv"), SIZE, &["--bind", "0.0.0.0"]);
    assert!(server.log().contains("protected mode"), "a warning at start: {}", server.log());
    let mut remote = TcpStream::connect(SocketAddr::new(address, server.port)).expect("connect from eth0");
    remote.write_all(b"PING\r\n").expect("write");
    let reply = read_reply(&mut remote);
    assert!(reply.starts_with("-DENIED QuillKV is running in protected mode"), "{reply}");
    let mut local = TcpStream::connect(("127.0.0.1", server.port)).expect("connect from loopback");
    local.write_all(b"PING\r\nQUIT\r\n").expect("write");
    assert_eq!(read_reply(&mut local), "+PONG\r\n+OK\r\n");

    let open =
        start_sized(&directory.path().join("unprotected.qkv"), SIZE, &["--bind", "0.0.0.0", "--protected-mode", "no"]);
    let mut remote = TcpStream::connect(SocketAddr::new(address, open.port)).expect("connect from eth0");
    remote.write_all(b"PING\r\nQUIT\r\n").expect("write");
    assert_eq!(read_reply(&mut remote), "+PONG\r\n+OK\r\n");
}

#[test]
fn a_password_file_keeps_the_password_out_of_the_process_list_and_the_log() {
    let directory = tempfile::tempdir().expect("temp dir");
    let secret = "correct-horse-battery";
    let file = directory.path().join("password");
    std::fs::write(&file, format!("{secret}\n")).expect("write the password file");
    let file_text = file.display().to_string();
    let server = start_sized(&directory.path().join("auth.qkv"), SIZE, &["--requirepass-file", &file_text]);
    let command_line = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).expect("the command line");
    assert!(!String::from_utf8_lossy(&command_line).contains(secret));
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let script = format!("GET k\r\nAUTH nope\r\nAUTH {secret}\r\nCONFIG GET *\r\nINFO\r\nQUIT\r\n");
    stream.write_all(script.as_bytes()).expect("write");
    let replies = read_reply(&mut stream);
    assert!(
        replies.starts_with("-NOAUTH") && replies.contains("-WRONGPASS") && replies.contains("+OK\r\n"),
        "{replies}"
    );
    assert!(!replies.contains(secret) && !server.log().contains(secret), "the password leaked");
}

#[test]
fn an_idle_client_is_closed_at_the_timeout() {
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start_sized(&directory.path().join("idle.qkv"), SIZE, &["--timeout", "1"]);
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let started = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut byte = [0u8; 1];
    assert_eq!(idle.read(&mut byte).expect("the server closes it"), 0);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(8), "closed after {waited:?}");
}

#[test]
fn clients_beyond_maxclients_get_redis_error() {
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start_sized(&directory.path().join("many.qkv"), SIZE, &["--maxclients", "50"]);
    let held: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
            stream.write_all(b"PING\r\n").expect("write");
            let mut reply = [0u8; 7];
            stream.read_exact(&mut reply).expect("PONG");
            stream
        })
        .collect();
    let mut extra = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    assert_eq!(read_reply(&mut extra), "-ERR max number of clients reached\r\n");
    drop(held);
}

#[test]
fn a_reader_too_slow_for_its_replies_is_closed_and_others_go_on() {
    let directory = tempfile::tempdir().expect("temp dir");
    let limit = (1u64 << 20).to_string();
    let server = start_sized(&directory.path().join("slow.qkv"), 64 << 20, &["--client-output-buffer-limit", &limit]);
    let mut writer = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let value = "v".repeat(256 * 1024);
    let set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n{value}\r\n", value.len());
    writer.write_all(set.as_bytes()).expect("SET");
    let mut ok = [0u8; 5];
    writer.read_exact(&mut ok).expect("+OK");
    assert_eq!(&ok, b"+OK\r\n");
    // Pipelined GETs stop being read once 1 MiB of replies waits (backpressure); but one MGET
    // of 64 copies, never read, is a 16 MiB reply against a 1 MiB cap.
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    slow.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mget = format!("MGET{}\r\n", " big".repeat(64));
    slow.write_all(mget.as_bytes()).expect("MGET");
    std::thread::sleep(Duration::from_millis(500));
    let log_deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("replies it does not read") && Instant::now() < log_deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("replies it does not read"), "{}", server.log());
    let mut received = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let _ = slow.read_to_end(&mut received);
    assert!(received.len() < 64 * 256 * 1024, "the slow reader was cut off ({} bytes)", received.len());
    writer.write_all(b"PING\r\n").expect("PING");
    let mut pong = [0u8; 7];
    writer.read_exact(&mut pong).expect("PONG");
    assert_eq!(&pong, b"+PONG\r\n");
}
