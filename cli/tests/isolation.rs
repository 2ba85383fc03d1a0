//! Issue 27's races on a real server: two connections send at the same moment, one an EXEC (or
//! a COPY) whose key is cold, so the engine reads it from disk, the other a write to another of
//! its keys. Before the fix the EXEC's view overwrote the write: acknowledged increments lost,
//! a COPY replying 1 over an acknowledged SET. Every round must now fit some order.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use support::start_sized;

const ROUNDS: usize = 2_000;
const COLD_VALUE_BYTES: usize = 2_000;

/// One RESP reply, enough of it to compare: simple strings, errors, integers, bulks, arrays.
#[derive(Debug, PartialEq)]
enum Reply {
    Line(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a reply line");
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | "-" => Reply::Line(line.to_string()),
        ":" => Reply::Integer(rest.parse().expect("an integer")),
        "$" => {
            let length: i64 = rest.parse().expect("a bulk length");
            if length < 0 {
                return Reply::Bulk(None);
            }
            let mut bytes = vec![0; length as usize + 2];
            reader.read_exact(&mut bytes).expect("the bulk");
            bytes.truncate(length as usize);
            Reply::Bulk(Some(bytes))
        }
        "*" => {
            let count: usize = rest.parse().expect("an array length");
            Reply::Array((0..count).map(|_| read_reply(reader)).collect())
        }
        other => panic!("not RESP: {other}{rest}"),
    }
}

fn command(arguments: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", arguments.len()).into_bytes();
    for argument in arguments {
        out.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
        out.extend_from_slice(argument);
        out.extend_from_slice(b"\r\n");
    }
    out
}

struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(port: u16) -> Connection {
        let writer = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        writer.set_nodelay(true).expect("nodelay");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        Connection { writer, reader }
    }

    fn send(&mut self, commands: &[Vec<u8>]) {
        self.writer.write_all(&commands.concat()).expect("send");
    }

    fn replies(&mut self, count: usize) -> Vec<Reply> {
        (0..count).map(|_| read_reply(&mut self.reader)).collect()
    }
}

/// A server with a tiny value cache and `ROUNDS` cold keys of 2 KB written first.
fn server_with_cold_keys(name: &str) -> (support::QuillServer, tempfile_path::TempPath) {
    let path = tempfile_path::TempPath::new(name);
    let server = start_sized(path.as_ref(), 256 << 20, &["--cache-bytes", "4096"]);
    let mut loader = Connection::open(server.port);
    let value = vec![b'c'; COLD_VALUE_BYTES];
    for chunk in (0..ROUNDS).collect::<Vec<_>>().chunks(100) {
        let sets: Vec<Vec<u8>> =
            chunk.iter().map(|index| command(&[b"SET", format!("cold:{index}").as_bytes(), &value])).collect();
        loader.send(&sets);
        assert!(loader.replies(sets.len()).iter().all(|reply| *reply == Reply::Line("+OK".into())));
    }
    (server, path)
}

#[test]
fn exec_with_a_cold_read_loses_no_concurrent_increment() {
    let (server, _path) = server_with_cold_keys("isolation-incr");
    let (mut first, mut second) = (Connection::open(server.port), Connection::open(server.port));
    for index in 0..ROUNDS {
        let cold = format!("cold:{index}");
        let transaction = [
            command(&[b"MULTI"]),
            command(&[b"INCR", b"ctr"]),
            command(&[b"GET", cold.as_bytes()]),
            command(&[b"EXEC"]),
        ];
        first.send(&transaction);
        second.send(&[command(&[b"INCR", b"ctr"])]);
        let replies = first.replies(4);
        assert!(matches!(&replies[3], Reply::Array(items) if items.len() == 2), "round {index}: {replies:?}");
        assert!(matches!(second.replies(1)[0], Reply::Integer(_)));
    }
    first.send(&[command(&[b"GET", b"ctr"])]);
    let expected = (2 * ROUNDS).to_string().into_bytes();
    assert_eq!(first.replies(1)[0], Reply::Bulk(Some(expected)), "every acknowledged INCR counts: {}", server.log());
}

#[test]
fn copy_from_a_cold_key_never_overwrites_a_concurrent_set() {
    let (server, _path) = server_with_cold_keys("isolation-copy");
    let (mut first, mut second) = (Connection::open(server.port), Connection::open(server.port));
    let mut lost = Vec::new();
    for index in 0..ROUNDS {
        let (cold, destination) = (format!("cold:{index}"), format!("dst:{index}"));
        first.send(&[command(&[b"COPY", cold.as_bytes(), destination.as_bytes()])]);
        second.send(&[command(&[b"SET", destination.as_bytes(), b"B"])]);
        let copied = first.replies(1).remove(0);
        assert_eq!(second.replies(1)[0], Reply::Line("+OK".into()));
        // COPY first: the SET replaces its copy. SET first: COPY finds the key and replies 0.
        first.send(&[command(&[b"GET", destination.as_bytes()])]);
        if first.replies(1)[0] != Reply::Bulk(Some(b"B".to_vec())) {
            lost.push((index, copied));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {ROUNDS} rounds lost the acknowledged SET: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// A data file path in the system's temporary folder, removed at the end.
mod tempfile_path {
    pub struct TempPath(std::path::PathBuf);

    impl TempPath {
        pub fn new(name: &str) -> TempPath {
            let path = std::env::temp_dir().join(format!("quill-{name}-{}.qkv", std::process::id()));
            let _ = std::fs::remove_file(&path);
            TempPath(path)
        }
    }

    impl AsRef<std::path::Path> for TempPath {
        fn as_ref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
