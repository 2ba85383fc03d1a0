//! The sans-I/O server: bytes in, bytes out, over the in-memory disk.

mod support;

use quill_core::server::{Server, ServerConfig};
use quill_core::{Engine, IoCompletion};
use support::MemDisk;

struct Rig {
    server: Server,
    disk: MemDisk,
    in_flight: Vec<quill_core::IoRequest>,
    output: std::collections::BTreeMap<u64, Vec<u8>>,
    closed: Vec<u64>,
    now: u64,
}

impl Rig {
    fn new(config: ServerConfig) -> Rig {
        let engine_config = support::small_config();
        let disk = MemDisk::new(engine_config.volume_blocks as usize * 4096);
        let engine = Engine::format(engine_config, 77);
        let mut rig = Rig {
            server: Server::new(engine, config),
            disk,
            in_flight: Vec::new(),
            output: Default::default(),
            closed: Vec::new(),
            now: 0,
        };
        rig.run();
        rig
    }

    fn drain(&mut self) {
        while let Some(request) = self.server.poll_io() {
            self.in_flight.push(request);
        }
        while let Some((client, bytes)) = self.server.poll_output() {
            self.output.entry(client).or_default().extend_from_slice(&bytes);
        }
        while let Some(client) = self.server.poll_close() {
            self.closed.push(client);
        }
    }

    /// Performs I/O until none is left, ticking (the end of a loop turn) when the engine asks.
    fn run(&mut self) {
        self.drain();
        for _ in 1..100_000 {
            if let Some(request) = self.in_flight.pop() {
                let result = self.disk.perform_public(&request.kind);
                self.server.complete(IoCompletion { token: request.token, result });
            } else if self.server.poll_timeout().is_some() {
                self.now += 1;
                self.server.tick(self.now);
            } else {
                return;
            }
            self.drain();
        }
    }

    fn send(&mut self, client: u64, bytes: &[u8]) -> String {
        self.server.receive(client, bytes);
        self.run();
        String::from_utf8_lossy(&self.output.remove(&client).unwrap_or_default()).into_owned()
    }
}

#[test]
fn pipelined_commands_split_anywhere_get_replies_in_order() {
    let input =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nGET k\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nINCR n\r\nPING\r\n";
    let expected = "+OK\r\n$5\r\nhello\r\n$2\r\nhi\r\n:1\r\n+PONG\r\n";
    for split in 0..input.len() {
        let mut rig = Rig::new(ServerConfig::default());
        let client = rig.server.connect();
        let mut got = rig.send(client, &input[..split]);
        got.push_str(&rig.send(client, &input[split..]));
        let counter_reset = rig.send(client, b"DEL n\r\n");
        assert_eq!(got, expected, "split at {split}");
        assert_eq!(counter_reset, ":1\r\n");
    }
}

#[test]
fn requirepass_refuses_everything_but_auth_hello_and_quit() {
    let config = ServerConfig { requirepass: Some(b"secret".to_vec()), ..ServerConfig::default() };
    let mut rig = Rig::new(config);
    let client = rig.server.connect();
    assert_eq!(rig.send(client, b"GET k\r\n"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(
        rig.send(client, b"AUTH wrong\r\n"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(rig.send(client, b"AUTH secret\r\n"), "+OK\r\n");
    assert_eq!(rig.send(client, b"GET k\r\n"), "$-1\r\n");
    assert_eq!(rig.send(client, b"QUIT\r\n"), "+OK\r\n");
    assert_eq!(rig.closed, vec![client]);
}

#[test]
fn connection_commands_answer_like_redis() {
    let mut rig = Rig::new(ServerConfig::default());
    let client = rig.server.connect();
    assert_eq!(rig.send(client, b"HELLO 3\r\n"), "-NOPROTO sorry, this protocol version is not supported.\r\n");
    assert!(rig.send(client, b"HELLO 2\r\n").starts_with("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
    assert_eq!(rig.send(client, b"CLIENT SETNAME app\r\nCLIENT GETNAME\r\n"), "+OK\r\n$3\r\napp\r\n");
    assert_eq!(rig.send(client, b"CLIENT ID\r\n"), format!(":{client}\r\n"));
    assert_eq!(rig.send(client, b"SELECT 0\r\nSELECT 1\r\n"), "+OK\r\n-ERR DB index is out of range\r\n");
    assert_eq!(rig.send(client, b"CONFIG GET appendonly\r\n"), "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
    assert!(rig.send(client, b"COMMAND COUNT\r\n").starts_with(':'));
    assert_eq!(rig.send(client, b"COMMAND DOCS\r\n"), "*0\r\n");
    assert_eq!(rig.send(client, b"NOPE a\r\n"), "-ERR unknown command 'NOPE', with args beginning with: 'a' \r\n");
    rig.send(client, b"SET a 1\r\nSET b 2\r\n");
    let info = rig.send(client, b"INFO keyspace\r\n");
    assert!(info.contains("db0:keys=2,expires=0,avg_ttl=0"), "{info}");
    assert_eq!(rig.send(client, b"DBSIZE\r\nFLUSHDB\r\nDBSIZE\r\n"), ":2\r\n+OK\r\n:0\r\n");
    let all = rig.send(client, b"INFO\r\n");
    for section in ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Keyspace"] {
        assert!(all.contains(section), "{section} missing");
    }
}

#[test]
fn a_protocol_error_is_answered_and_closes_the_connection() {
    let mut rig = Rig::new(ServerConfig::default());
    let client = rig.server.connect();
    let reply = rig.send(client, b"SET a 1\r\n*1\r\n$x\r\n");
    assert_eq!(reply, "+OK\r\n-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(rig.closed, vec![client]);
}

#[test]
fn a_bulk_larger_than_the_engine_accepts_is_refused_before_it_is_buffered() {
    let mut rig = Rig::new(ServerConfig::default());
    let client = rig.server.connect();
    let reply = rig.send(client, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n");
    assert_eq!(reply, "-ERR Protocol error: invalid bulk length\r\n");
}

#[test]
fn clients_beyond_the_limit_are_refused() {
    let config = ServerConfig { clients_max: 1, ..ServerConfig::default() };
    let mut rig = Rig::new(config);
    let first = rig.server.connect();
    let second = rig.server.connect();
    rig.run();
    assert_eq!(
        String::from_utf8_lossy(&rig.output.remove(&second).unwrap_or_default()),
        "-ERR max number of clients reached\r\n"
    );
    assert_eq!(rig.closed, vec![second]);
    assert_eq!(rig.send(first, b"PING\r\n"), "+PONG\r\n");
}

#[test]
fn an_idle_connection_is_closed_after_the_timeout() {
    let config = ServerConfig { idle_timeout_ms: Some(100), ..ServerConfig::default() };
    let mut rig = Rig::new(config);
    let client = rig.server.connect();
    rig.server.tick(rig.now + 50);
    rig.drain();
    assert!(rig.closed.is_empty());
    rig.server.tick(rig.now + 150);
    rig.drain();
    assert_eq!(rig.closed, vec![client]);
}

#[test]
fn protected_mode_serves_loopback_and_denies_other_peers_without_a_password() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let mapped_loopback = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    let mut rig = Rig::new(ServerConfig::default());
    for loopback in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST), mapped_loopback] {
        let client = rig.server.connect_from((loopback, 6000).into());
        assert_eq!(rig.send(client, b"PING\r\n"), "+PONG\r\n", "{loopback}");
    }
    let client = rig.server.connect_from((remote, 6000).into());
    rig.drain();
    let denied = String::from_utf8(rig.output.remove(&client).unwrap_or_default()).expect("UTF-8");
    assert!(denied.starts_with("-DENIED QuillKV is running in protected mode"), "{denied}");
    assert!(rig.closed.contains(&client), "a denied peer is closed");

    // A password, or protected mode off, serves every peer.
    for config in [
        ServerConfig { requirepass: Some(b"secret".to_vec()), ..ServerConfig::default() },
        ServerConfig { protected_mode: false, ..ServerConfig::default() },
    ] {
        let mut rig = Rig::new(config);
        let client = rig.server.connect_from((remote, 6000).into());
        assert!(!rig.send(client, b"PING\r\n").contains("DENIED"));
        assert!(!rig.closed.contains(&client));
    }
}

#[test]
fn the_password_appears_in_no_reply() {
    let secret = "s3cret-pa55";
    let config = ServerConfig { requirepass: Some(secret.as_bytes().to_vec()), ..ServerConfig::default() };
    let mut rig = Rig::new(config);
    let client = rig.server.connect();
    let mut replies = rig.send(client, b"AUTH wrong\r\nGET k\r\n");
    replies.push_str(&rig.send(client, format!("AUTH {secret}\r\n").as_bytes()));
    for command in ["CONFIG GET *\r\n", "CONFIG GET requirepass\r\n", "INFO\r\n", "INFO all\r\n", "CLIENT LIST\r\n"] {
        replies.push_str(&rig.send(client, command.as_bytes()));
    }
    replies.push_str(&rig.send(client, b"AUTH x y z\r\nFOO bar\r\n"));
    assert!(!replies.contains(secret), "the password leaked: {replies}");
    assert!(replies.contains("redis_version") || replies.contains("# Server"), "INFO answered: {replies}");
}

/// The documented drain order holds only if no drain feeds the engine: commands held back
/// behind unsent output run at the next input, and `poll_timeout` asks for it.
#[test]
fn draining_output_never_feeds_the_engine() {
    let mut rig = Rig::new(ServerConfig { output_bytes_pause: 1, ..ServerConfig::default() });
    let client = rig.server.connect();
    rig.server.receive(client, b"PING\r\n");
    assert!(rig.server.poll_io().is_none(), "PING needs no I/O");
    rig.server.receive(client, b"SET k v\r\n");
    assert!(rig.server.poll_io().is_none(), "SET waits behind PING's unsent reply");
    let (id, bytes) = rig.server.poll_output().expect("PING's reply");
    assert_eq!((id, bytes.as_slice()), (client, &b"+PONG\r\n"[..]));
    assert!(rig.server.poll_io().is_none(), "draining the output ran nothing");
    assert!(rig.server.poll_output().is_none());
    assert_eq!(rig.server.poll_timeout(), Some(rig.now), "the server asks for a tick to go on");
    rig.now += 1;
    rig.server.tick(rig.now);
    let write = rig.server.poll_io().expect("the tick ran the SET: its batch write");
    rig.in_flight.push(write);
    rig.run();
    assert_eq!(rig.output.remove(&client).unwrap_or_default(), b"+OK\r\n");
}

/// CONFIG SET changes maxclients, timeout and requirepass while serving, all pairs or none,
/// with Redis's errors; the password applies to connections made after it.
#[test]
fn config_set_changes_the_settings_that_may_change_while_serving() {
    let mut rig = Rig::new(ServerConfig::default());
    let client = rig.server.connect();
    let reply = rig.send(client, b"CONFIG SET maxclients 2 timeout 7\r\n");
    assert_eq!(reply, "+OK\r\n");
    let reply = rig.send(client, b"CONFIG GET maxclients\r\n");
    assert_eq!(reply, "*2\r\n$10\r\nmaxclients\r\n$1\r\n2\r\n");
    let reply = rig.send(client, b"CONFIG GET timeout\r\n");
    assert_eq!(reply, "*2\r\n$7\r\ntimeout\r\n$1\r\n7\r\n");
    let reply = rig.send(client, b"CONFIG SET maxclients 3 nosuch 1\r\n");
    assert_eq!(reply, "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n");
    let reply = rig.send(client, b"CONFIG GET maxclients\r\n");
    assert!(reply.ends_with("$1\r\n2\r\n"), "nothing applied: {reply}");
    let reply = rig.send(client, b"CONFIG SET timeout soon\r\n");
    assert!(reply.starts_with("-ERR CONFIG SET failed (possibly related to argument 'timeout')"), "{reply}");
    assert_eq!(rig.send(client, b"CONFIG SET requirepass secret\r\n"), "+OK\r\n");
    assert_eq!(rig.send(client, b"PING\r\n"), "+PONG\r\n", "this connection was made before");
    let later = rig.server.connect();
    assert_eq!(rig.send(later, b"PING\r\n"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(rig.send(later, b"AUTH secret\r\n"), "+OK\r\n");
}

#[test]
fn time_save_lastsave_and_shutdown_answer_like_redis() {
    let mut rig = Rig::new(ServerConfig::default());
    rig.server.set_unix_time_ms(1_800_000_000_250);
    let client = rig.server.connect();
    assert_eq!(rig.send(client, b"TIME\r\n"), "*2\r\n$10\r\n1800000000\r\n$6\r\n250000\r\n");
    assert_eq!(rig.send(client, b"LASTSAVE\r\n"), ":1800000000\r\n", "the start, before any checkpoint");
    let written = rig.server.engine().stats().checkpoints_written;
    rig.server.set_unix_time_ms(1_800_000_100_000);
    assert_eq!(rig.send(client, b"SAVE\r\n"), "+OK\r\n");
    assert!(rig.server.engine().stats().checkpoints_written > written, "SAVE wrote a checkpoint");
    assert_eq!(rig.send(client, b"LASTSAVE\r\n"), ":1800000100\r\n");
    assert_eq!(rig.send(client, b"BGSAVE SCHEDULE\r\n"), "+Background saving started\r\n");
    assert_eq!(rig.send(client, b"BGSAVE LATER\r\n"), "-ERR syntax error\r\n");
    assert_eq!(rig.send(client, b"SHUTDOWN ABORT\r\n"), "-ERR No shutdown in progress.\r\n");
    assert_eq!(rig.send(client, b"SHUTDOWN SAVE NOSAVE\r\n"), "-ERR syntax error\r\n");
    assert_eq!(rig.server.shutdown_requested(), None);
    assert_eq!(rig.send(client, b"SHUTDOWN NOSAVE NOW\r\nPING\r\n"), "", "no reply, and nothing after it runs");
    assert_eq!(rig.server.shutdown_requested(), Some(quill_core::server::Shutdown::NoCheckpoint));
}

#[test]
fn client_list_info_and_kill_describe_and_close_connections() {
    let mut rig = Rig::new(ServerConfig::default());
    let first = rig.server.connect_from(([127, 0, 0, 1], 5001).into());
    let second = rig.server.connect_from(([127, 0, 0, 1], 5002).into());
    assert_eq!(rig.send(first, b"CLIENT SETNAME alpha\r\n"), "+OK\r\n");
    let info = rig.send(first, b"CLIENT INFO\r\n");
    assert!(info.contains(&format!("id={first} addr=127.0.0.1:5001 name=alpha ")), "{info}");
    assert!(info.contains(" cmd=client "), "{info}");
    let list = rig.send(second, b"CLIENT LIST\r\n");
    assert_eq!(list.matches("id=").count(), 2, "{list}");
    assert!(list.contains("addr=127.0.0.1:5002"), "{list}");
    let only = rig.send(second, format!("CLIENT LIST ID {first}\r\n").as_bytes());
    assert_eq!(only.matches("id=").count(), 1, "{only}");
    assert_eq!(rig.send(second, b"CLIENT LIST TYPE pubsub\r\n"), "$0\r\n\r\n");
    assert_eq!(rig.send(second, b"CLIENT KILL 127.0.0.1:9\r\n"), "-ERR No such client\r\n");
    assert_eq!(rig.send(second, b"CLIENT KILL ID 0\r\n"), "-ERR client-id should be greater than 0\r\n");
    assert_eq!(rig.send(second, b"CLIENT KILL ADDR 127.0.0.1:5002\r\n"), ":0\r\n", "SKIPME yes by default");
    assert_eq!(rig.send(second, b"CLIENT KILL 127.0.0.1:5001\r\n"), "+OK\r\n");
    assert!(rig.closed.contains(&first), "the killed connection is closed");
    assert_eq!(rig.send(second, b"CLIENT KILL ID 2 SKIPME no\r\n"), ":1\r\n");
    assert!(rig.closed.contains(&second));
}

#[test]
fn multi_queues_exec_runs_and_errors_abort_as_in_redis() {
    let mut rig = Rig::new(ServerConfig::default());
    let client = rig.server.connect();
    let reply = rig.send(client, b"MULTI\r\nSET k 1\r\nINCR k\r\nSETNX k 9\r\nSET j v BOGUS\r\nEXEC\r\n");
    let expected = "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n+OK\r\n:2\r\n:0\r\n-ERR syntax error\r\n";
    assert_eq!(reply, expected, "SETNX keeps its shape; a syntax error is its command's reply");
    let aborted = rig.send(client, b"MULTI\r\nSET k 5\r\nGET\r\nEXEC\r\nGET k\r\n");
    let expected = "+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'get' command\r\n\
                    -EXECABORT Transaction discarded because of previous errors.\r\n$1\r\n2\r\n";
    assert_eq!(aborted, expected, "nothing of an aborted transaction runs");
    let refused = rig.send(client, b"MULTI\r\nFLUSHALL\r\nEXEC\r\n");
    assert!(refused.contains("-ERR FLUSHALL is not allowed inside MULTI"), "{refused}");
    assert!(refused.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"), "{refused}");
    assert_eq!(rig.send(client, b"EXEC\r\nDISCARD\r\n"), "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n");
    let wrong = rig.send(client, b"MULTI\r\nEXEC now\r\nEXEC\r\n");
    let expected = "+OK\r\n-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
                    command\r\n-ERR EXEC without MULTI\r\n";
    assert_eq!(wrong, expected, "an EXEC of the wrong arity discards the transaction, as in Redis");
    // The discarded transaction's watches go with it.
    let other = rig.server.connect();
    assert_eq!(rig.send(client, b"WATCH k\r\nMULTI\r\nEXEC now\r\n").matches("EXECABORT").count(), 1);
    assert_eq!(rig.send(other, b"SET k 3\r\n"), "+OK\r\n");
    assert_eq!(rig.send(client, b"MULTI\r\nGET k\r\nEXEC\r\n"), "+OK\r\n+QUEUED\r\n*1\r\n$1\r\n3\r\n");
    assert_eq!(rig.send(client, b"SET k 2\r\n"), "+OK\r\n");
    let wrong = rig.send(client, b"MULTI\r\nDISCARD now\r\nEXEC\r\n");
    let expected = "+OK\r\n-ERR wrong number of arguments for 'discard' command\r\n\
                    -EXECABORT Transaction discarded because of previous errors.\r\n";
    assert_eq!(wrong, expected, "another rejected command fails it");
    let discarded = rig.send(client, b"MULTI\r\nMULTI\r\nSET k 7\r\nDISCARD\r\nGET k\r\n");
    assert_eq!(discarded, "+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n+OK\r\n$1\r\n2\r\n");
}

#[test]
fn watch_aborts_exec_when_another_connection_changes_the_key() {
    let mut rig = Rig::new(ServerConfig::default());
    let (watcher, writer) = (rig.server.connect(), rig.server.connect());
    assert_eq!(rig.send(watcher, b"SET k 1\r\nWATCH k\r\nMULTI\r\nINCR k\r\n"), "+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n");
    assert_eq!(rig.send(writer, b"SET k 5\r\n"), "+OK\r\n");
    assert_eq!(rig.send(watcher, b"EXEC\r\nGET k\r\n"), "*-1\r\n$1\r\n5\r\n", "aborted: nothing ran");
    // EXEC forgot the watch: the next transaction runs.
    assert_eq!(rig.send(watcher, b"MULTI\r\nINCR k\r\nEXEC\r\n"), "+OK\r\n+QUEUED\r\n*1\r\n:6\r\n");
    // A write to another key, an UNWATCH, a DISCARD: none of them aborts what follows.
    assert_eq!(rig.send(watcher, b"WATCH k\r\nUNWATCH\r\n"), "+OK\r\n+OK\r\n");
    assert_eq!(rig.send(writer, b"SET k 7\r\nSET other 1\r\n"), "+OK\r\n+OK\r\n");
    assert_eq!(rig.send(watcher, b"MULTI\r\nGET k\r\nEXEC\r\n"), "+OK\r\n+QUEUED\r\n*1\r\n$1\r\n7\r\n");
    assert_eq!(rig.send(watcher, b"WATCH k\r\nMULTI\r\nDISCARD\r\n"), "+OK\r\n+OK\r\n+OK\r\n");
    assert_eq!(rig.send(writer, b"SET k 8\r\n"), "+OK\r\n");
    assert_eq!(
        rig.send(watcher, b"MULTI\r\nGET k\r\nEXEC\r\n"),
        "+OK\r\n+QUEUED\r\n*1\r\n$1\r\n8\r\n",
        "DISCARD unwatched"
    );
    // FLUSHALL changes a watched key that exists.
    assert_eq!(rig.send(watcher, b"WATCH k\r\n"), "+OK\r\n");
    assert_eq!(rig.send(writer, b"FLUSHALL\r\n"), "+OK\r\n");
    assert_eq!(rig.send(watcher, b"MULTI\r\nSET k 9\r\nEXEC\r\n"), "+OK\r\n+QUEUED\r\n*-1\r\n");
    let inside = rig.send(watcher, b"MULTI\r\nWATCH k\r\nEXEC\r\n");
    assert_eq!(inside, "+OK\r\n-ERR WATCH inside MULTI is not allowed\r\n*0\r\n");
}

/// A GET the server answers at once (a whole request, nothing owed ahead of it) must answer as
/// the full path does: a key over the engine's limit is an error, not a missing key; a value
/// written and acknowledged comes back; a missing key is nil.
#[test]
fn a_get_answered_at_once_answers_as_the_full_path_does() {
    let mut rig = Rig::new(ServerConfig::default());
    let client = rig.server.connect();
    let long_key = vec![b'k'; quill_core::format::KEY_BYTES_MAX + 1];
    let mut request = Vec::new();
    quill_core::resp::encode_command(&[&b"GET"[..], &long_key], &mut request);
    assert_eq!(rig.send(client, &request), "-ERR key too long (the limit is 65535 bytes)\r\n");
    assert_eq!(rig.send(client, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n"), "+OK\r\n");
    assert_eq!(rig.send(client, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "$2\r\nv1\r\n");
    assert_eq!(rig.send(client, b"*2\r\n$3\r\nget\r\n$1\r\nm\r\n"), "$-1\r\n");
}
