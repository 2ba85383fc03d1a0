//! Three real `quill serve` replicas on loopback, under pipelined writes from several clients:
//! the leader is killed with SIGKILL and restarted, again and again, and paused with SIGSTOP
//! long enough for an election, then resumed. The clients follow MOVED and record what they
//! saw; the history is checked with the simulator's linearizability checker (every
//! acknowledged write survives, no read is stale, the paused leader acknowledges nothing the
//! new one lacks).
//!
//! A short run by default; `QUILL_CLUSTER_KILLS=50 QUILL_CLUSTER_PAUSES=10` for the long one.
//! It prints each failover's time: from the kill to the first write acknowledged by the new
//! leader.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quill_sim::cluster::model::{check_key, KeyOperation};
use quill_sim::linearizability::Entry;

const REPLICAS: u64 = 3;
const CLIENTS: usize = 4;
/// Requests each client keeps in flight on its connection.
const WINDOW: usize = 4;
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

struct Cluster {
    base_port: u16,
    dir: tempfile::TempDir,
    children: BTreeMap<u64, Child>,
}

impl Cluster {
    fn peers(&self) -> String {
        (1..=REPLICAS).map(|id| format!("{id}=127.0.0.1:{}", self.port(id))).collect::<Vec<_>>().join(",")
    }

    fn port(&self, id: u64) -> u16 {
        self.base_port + id as u16
    }

    fn start(&mut self, id: u64) {
        let binary = std::env::var_os("QUILL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_quill").into());
        let path = self.dir.path().join(format!("replica-{id}.data"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(path.with_extension("log")).unwrap();
        let child = Command::new(binary)
            .args(["serve", "--io", "sync", "--size", &(64u64 << 20).to_string(), "--node-id", &id.to_string()])
            .args(["--peers", &self.peers(), "--path"])
            .arg(&path)
            .stderr(log)
            .spawn()
            .expect("start a replica");
        self.children.insert(id, child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port(id))).is_err() {
            if let Ok(Some(status)) = self.children.get_mut(&id).unwrap().try_wait() {
                panic!("replica {id} exited with {status}: {}", self.log(id));
            }
            assert!(Instant::now() < deadline, "replica {id} never listened: {}", self.log(id));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("replica-{id}.log"))).unwrap_or_default()
    }

    /// The replica every live replica names as leader, once they agree.
    fn leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let named: Vec<u64> = self.children.keys().filter_map(|id| leader_named_by(self.port(*id))).collect();
            if let Some(&first) = named.first() {
                if first != 0 && named.len() == self.children.len() && named.iter().all(|id| *id == first) {
                    return first;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {named:?}\n{}", self.log(1));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `raft_leader_id` from the replica's INFO (None: it did not answer).
fn leader_named_by(port: u16) -> Option<u64> {
    let mut connection = Connection::open(port).ok()?;
    connection.send(&[b"INFO".to_vec()]).ok()?;
    let Reply::Bulk(Some(text)) = connection.read().ok()? else { return None };
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines().find_map(|line| line.strip_prefix("raft_leader_id:")).and_then(|id| id.trim().parse().ok())
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(port: u16) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    fn send(&mut self, command: &[Vec<u8>]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        quill_core::resp::encode_command(command, &mut bytes);
        self.writer.write_all(&bytes)
    }

    fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Integer(rest.parse().map_err(|_| std::io::ErrorKind::InvalidData)?),
            "$" if rest == "-1" => Reply::Bulk(None),
            "$" => {
                let length: usize = rest.parse().map_err(|_| std::io::ErrorKind::InvalidData)?;
                let mut value = vec![0; length + 2];
                std::io::Read::read_exact(&mut self.reader, &mut value)?;
                value.truncate(length);
                Reply::Bulk(Some(value))
            }
            _ => return Err(std::io::ErrorKind::InvalidData.into()),
        })
    }
}

/// The clients' shared history.
#[derive(Default)]
struct History {
    keys: BTreeMap<String, Vec<Entry<KeyOperation>>>,
    acknowledged: u64,
    unknown: u64,
}

struct Shared {
    clock: AtomicU64,
    history: Mutex<History>,
    stop: AtomicBool,
    ports: Vec<u16>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }
}

struct Operation {
    key: String,
    command: Vec<Vec<u8>>,
    /// What the key's history records, given the reply (None: unknown).
    call: u64,
}

fn operation(shared: &Shared, client: usize, number: u64) -> Operation {
    let token = format!("c{client}.{number};");
    let (key, command) = match number % 5 {
        0 | 1 => {
            let key = format!("a{}", number % 3);
            (key.clone(), vec![b"APPEND".to_vec(), key.into_bytes(), token.into_bytes()])
        }
        2 | 3 => {
            let key = format!("r{}", number % 2);
            (key.clone(), vec![b"SET".to_vec(), key.into_bytes(), token.into_bytes()])
        }
        _ => {
            let key = format!("a{}", number % 3);
            (key.clone(), vec![b"GET".to_vec(), key.into_bytes()])
        }
    };
    Operation { key, command, call: shared.now() }
}

fn key_operation(command: &[Vec<u8>], reply: Option<&Reply>) -> KeyOperation {
    let length = |reply: Option<&Reply>| match reply {
        Some(Reply::Integer(length)) => *length,
        _ => -1,
    };
    match command[0].as_slice() {
        b"APPEND" => KeyOperation::Append { token: command[2].clone(), length: length(reply) },
        b"SET" => KeyOperation::Set(command[2].clone()),
        _ => KeyOperation::Get(match reply {
            Some(Reply::Bulk(value)) => value.clone(),
            _ => Some(b"<not a bulk reply>".to_vec()),
        }),
    }
}

fn record(shared: &Shared, operation: &Operation, reply: Option<Reply>) {
    let is_write = operation.command[0] != b"GET";
    let mut history = shared.history.lock().unwrap();
    let (ret, optional) = match &reply {
        Some(_) => (shared.now(), false),
        None => (u64::MAX, true),
    };
    if reply.is_none() && !is_write {
        return; // a read that never answered constrains nothing
    }
    history.acknowledged += u64::from(reply.is_some() && is_write);
    history.unknown += u64::from(reply.is_none());
    let entry =
        Entry { call: operation.call, ret, operation: key_operation(&operation.command, reply.as_ref()), optional };
    history.keys.entry(operation.key.clone()).or_default().push(entry);
}

/// A client: a window of requests on one connection, following MOVED, retrying what
/// certainly did not happen, taking what the connection lost as unknown.
fn client(shared: Arc<Shared>, index: usize) {
    let mut port = shared.ports[index % shared.ports.len()];
    let mut number = 0u64;
    let mut retry: Vec<Operation> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) || !retry.is_empty() {
        let Ok(mut connection) = Connection::open(port) else {
            port = shared.ports[(shared.ports.iter().position(|p| *p == port).unwrap() + 1) % shared.ports.len()];
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let mut in_flight: Vec<Operation> = Vec::new();
        while in_flight.len() < WINDOW && (!retry.is_empty() || !shared.stop.load(Ordering::Relaxed)) {
            let next = if retry.is_empty() {
                number += 1;
                operation(&shared, index, number)
            } else {
                retry.remove(0)
            };
            if connection.send(&next.command).is_err() {
                retry.push(next);
                break;
            }
            in_flight.push(next);
        }
        let mut moved_to = None;
        for operation in in_flight {
            match connection.read() {
                Ok(Reply::Error(text)) if text.starts_with("MOVED") => {
                    moved_to = text.rsplit(':').next().and_then(|port| port.parse().ok());
                    retry.push(operation);
                }
                Ok(Reply::Error(text))
                    if text.starts_with("CLUSTERDOWN") || text.starts_with("TRYAGAIN not committed") =>
                {
                    retry.push(operation)
                }
                Ok(Reply::Error(text)) if text.starts_with("TRYAGAIN outcome unknown") => {
                    record(&shared, &operation, None)
                }
                Ok(Reply::Error(text)) if operation.command[0] == b"GET" => {
                    assert!(text.starts_with("TRYAGAIN"), "a read failed unexpectedly: {text}")
                }
                Ok(Reply::Error(text)) => panic!("unexpected error to {:?}: {text}", operation.command),
                Ok(reply) => record(&shared, &operation, Some(reply)),
                Err(_) => {
                    record(&shared, &operation, None);
                    moved_to = moved_to.or(Some(shared.ports[(index + number as usize) % shared.ports.len()]));
                }
            }
        }
        match moved_to {
            Some(target) => port = target,
            None if retry.is_empty() => continue,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
        if !retry.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = connection;
    }
}

/// Sends SET probe until a replica acknowledges it, following MOVED: how long a failover
/// keeps writes from completing.
fn probe_write(ports: &[u16], deadline: Duration) -> Duration {
    let started = Instant::now();
    let mut port = ports[0];
    loop {
        assert!(started.elapsed() < deadline, "no write completed within {deadline:?} of the failure");
        if let Ok(mut connection) = Connection::open(port) {
            let sent = connection.send(&[b"SET".to_vec(), b"probe".to_vec(), b"x".to_vec()]).is_ok();
            match connection.read() {
                Ok(Reply::Simple(_)) if sent => return started.elapsed(),
                Ok(Reply::Error(text)) if text.starts_with("MOVED") => {
                    port = text.rsplit(':').next().and_then(|port| port.parse().ok()).unwrap_or(port);
                    continue;
                }
                _ => {}
            }
        }
        // The next live replica (a MOVED may name the one that just died).
        port = ports[ports.iter().position(|p| *p == port).map_or(0, |index| (index + 1) % ports.len())];
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: sending a signal to a child process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

#[test]
fn three_replicas_survive_leader_kills_and_pauses_under_load_with_a_linearizable_history() {
    let kills = env_count("QUILL_CLUSTER_KILLS", 4);
    let pauses = env_count("QUILL_CLUSTER_PAUSES", 2);
    let base_port = 21_000 + (std::process::id() % 9_000) as u16 / 4 * 4;
    let mut cluster = Cluster { base_port, dir: tempfile::tempdir().unwrap(), children: BTreeMap::new() };
    for id in 1..=REPLICAS {
        cluster.start(id);
    }
    let ports: Vec<u16> = (1..=REPLICAS).map(|id| cluster.port(id)).collect();
    cluster.leader(Duration::from_secs(20));
    let shared = Arc::new(Shared {
        clock: AtomicU64::new(0),
        history: Mutex::default(),
        stop: AtomicBool::new(false),
        ports: ports.clone(),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || client(shared, index))
        })
        .collect();
    let mut failovers = Vec::new();
    for round in 0..kills + pauses {
        std::thread::sleep(Duration::from_millis(300));
        let leader = cluster.leader(Duration::from_secs(20));
        if round < kills {
            let mut child = cluster.children.remove(&leader).unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            let live: Vec<u16> = ports.iter().copied().filter(|port| *port != cluster.port(leader)).collect();
            failovers.push(probe_write(&live, Duration::from_secs(10)));
            cluster.start(leader);
        } else {
            let child = &cluster.children[&leader];
            signal(child, libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(2_500));
            signal(child, libc::SIGCONT);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    shared.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client panicked");
    }
    // Final reads of every key, through the leader, after everything settled.
    let leader = cluster.leader(Duration::from_secs(20));
    let mut connection = Connection::open(cluster.port(leader)).unwrap();
    let keys: Vec<String> = shared.history.lock().unwrap().keys.keys().cloned().collect();
    for key in keys {
        let operation =
            Operation { key: key.clone(), command: vec![b"GET".to_vec(), key.into_bytes()], call: shared.now() };
        connection.send(&operation.command).unwrap();
        let reply = connection.read().unwrap();
        record(&shared, &operation, Some(reply));
    }
    let history = shared.history.lock().unwrap();
    let mut undecided = 0;
    for (key, entries) in &history.keys {
        match check_key(key, entries) {
            Ok(decided) => undecided += usize::from(!decided),
            Err(violation) => panic!("{violation}"),
        }
    }
    let mut sorted = failovers.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    eprintln!(
        "{kills} kills, {pauses} pauses: {} acknowledged writes, {} unknown, {} keys checked ({undecided} undecided); \
         failover (kill to first acknowledged write) median {} ms, max {} ms",
        history.acknowledged,
        history.unknown,
        history.keys.len(),
        median.as_millis(),
        max.as_millis()
    );
    assert!(history.acknowledged > 100, "the load ran");
    assert_eq!(undecided, 0, "every key's history decided");
}

fn redis_cli(port: u16, words: &[&str]) -> String {
    let output =
        Command::new("redis-cli").args(["-c", "-p", &port.to_string()]).args(words).output().expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `redis-cli -c` sent to a follower follows MOVED to the leader, and after the leader is
/// killed, MOVED names the new one.
#[test]
fn redis_cli_in_cluster_mode_follows_moved_to_the_leader_and_to_the_next_after_a_kill() {
    if !support::redis_tools_present() {
        return;
    }
    // Clear of the other test's client and bus ports (21,000 to 40,000).
    let base_port = 41_000 + (std::process::id() % 9_000) as u16 / 4 * 4;
    let mut cluster = Cluster { base_port, dir: tempfile::tempdir().unwrap(), children: BTreeMap::new() };
    for id in 1..=REPLICAS {
        cluster.start(id);
    }
    let leader = cluster.leader(Duration::from_secs(20));
    let follower = leader % REPLICAS + 1;
    assert_eq!(redis_cli(cluster.port(follower), &["SET", "color", "blue"]), "OK");
    assert_eq!(redis_cli(cluster.port(follower), &["GET", "color"]), "blue");
    let nodes = redis_cli(cluster.port(follower), &["CLUSTER", "NODES"]);
    let master_line = nodes.lines().find(|line| line.contains("master")).expect("a master in CLUSTER NODES");
    assert!(master_line.contains(&format!(":{}@", cluster.port(leader))), "{nodes}");
    let mut child = cluster.children.remove(&leader).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let survivor = follower;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = redis_cli(cluster.port(survivor), &["SET", "color", "green"]);
        if reply == "OK" {
            break;
        }
        assert!(Instant::now() < deadline, "no write after the kill: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(redis_cli(cluster.port(survivor), &["GET", "color"]), "green");
    let new_leader = leader_named_by(cluster.port(survivor)).unwrap();
    assert_ne!(new_leader, leader);
    let slots = redis_cli(cluster.port(survivor), &["CLUSTER", "SLOTS"]);
    assert!(slots.contains(&cluster.port(new_leader).to_string()), "{slots}");
}
