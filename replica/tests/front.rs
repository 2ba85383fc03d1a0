//! The Redis Cluster front of a one-replica cluster (it elects itself), over a memory disk:
//! pipelined requests answered in order whether the front or the replica answers them, MULTI
//! framing, the CLUSTER commands a cluster client asks, and a malformed frame refused.

mod support;

use quill_core::{Config, Engine};
use quill_replica::{Front, Replica, ReplicaConfig, Role, Volume};

const VOLUME_BYTES: u64 = 4 << 20;

struct Harness {
    front: Front,
    disks: [Vec<u8>; 2],
    now_ms: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut config = ReplicaConfig::new(1, vec![1]);
        config.addresses = vec![(1, "127.0.0.1:7001".to_string())];
        let engine = |id| Engine::format(Config::for_volume_bytes(VOLUME_BYTES), id);
        let replica = Replica::new(config, engine(10), engine(11));
        let front = Front::new(replica, quill_core::resp::Limits::default());
        let disks = [vec![0u8; VOLUME_BYTES as usize], vec![0u8; VOLUME_BYTES as usize]];
        let mut harness = Harness { front, disks, now_ms: 0 };
        for _ in 0..100 {
            harness.turn();
            harness.front.replica_mut().raft_tick();
            if harness.front.replica().role() == Role::Leader {
                return harness;
            }
        }
        panic!("a single replica elects itself");
    }

    /// Runs I/O and ticks until nothing moves.
    fn turn(&mut self) {
        for _ in 0..10_000 {
            self.now_ms += 1;
            self.front.replica_mut().tick(self.now_ms, 1_700_000_000_000);
            let mut progress = false;
            while let Some((volume, request)) = self.front.replica_mut().poll_io() {
                progress = true;
                let completion = support::perform(&mut self.disks[usize::from(volume == Volume::State)], request);
                self.front.replica_mut().complete(volume, completion);
            }
            self.front.collect();
            if !progress {
                return;
            }
        }
        panic!("never settled");
    }

    fn exchange(&mut self, client: u64, bytes: &[u8]) -> String {
        self.front.receive(client, bytes);
        self.turn();
        let mut output = Vec::new();
        while let Some((to, bytes)) = self.front.poll_output() {
            assert_eq!(to, client);
            output.extend(bytes);
        }
        String::from_utf8(output).unwrap()
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_with_multi_framing() {
    let mut harness = Harness::new();
    let client = harness.front.connect();
    let request = "PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\na\r\n*1\r\n$5\r\nMULTI\r\n*3\r\n$6\r\nAPPEND\r\n$1\r\nk\r\n$1\r\nb\r\n\
                   *2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    let output = harness.exchange(client, request.as_bytes());
    assert_eq!(output, "+PONG\r\n+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:2\r\n$2\r\nab\r\n$2\r\nab\r\n$2\r\nhi\r\n");
}

#[test]
fn cluster_commands_show_one_master_of_every_slot() {
    let mut harness = Harness::new();
    let client = harness.front.connect();
    let slots = harness.exchange(client, b"CLUSTER SLOTS\r\n");
    assert_eq!(
        slots,
        "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n0000000000000000000000000000000000000001\r\n"
    );
    let nodes = harness.exchange(client, b"CLUSTER NODES\r\n");
    assert!(nodes.contains("127.0.0.1:7001@17001 myself,master - 0 0 "), "{nodes}");
    assert!(nodes.contains("connected 0-16383"), "{nodes}");
    assert!(harness.exchange(client, b"CLUSTER INFO\r\n").contains("cluster_state:ok"));
    assert_eq!(harness.exchange(client, b"CLUSTER KEYSLOT foo\r\n"), ":12182\r\n");
    assert!(harness.exchange(client, b"FLUSHALL\r\n").starts_with("-ERR flushall is not supported"));
    assert!(harness.exchange(client, b"WATCH k\r\n").starts_with("-ERR WATCH is not supported"));
}

#[test]
fn a_malformed_frame_gets_an_error_and_the_connection_closes() {
    let mut harness = Harness::new();
    let client = harness.front.connect();
    let output = harness.exchange(client, b"*1\r\n$x\r\n");
    assert!(output.starts_with("-ERR Protocol error"), "{output}");
    assert_eq!(harness.front.poll_close(), Some(client));
}
