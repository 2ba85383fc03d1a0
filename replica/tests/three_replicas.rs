//! Three replicas over perfect memory disks and a perfect network, in one thread: the shape of
//! the contract (elections, proposals, ReadIndex reads, MOVED, restart from the volumes). The
//! faults are the simulator's (`quill sim --replicas 3`).

use std::collections::BTreeMap;

mod support;

use quill_core::{Config, Engine, Reply};
use quill_replica::{Replica, ReplicaConfig, Role, Volume};

const VOLUME_BYTES: u64 = 4 << 20;

struct Node {
    replica: Replica,
    disks: BTreeMap<Volume, Vec<u8>>,
}

fn engine_config() -> Config {
    Config::for_volume_bytes(VOLUME_BYTES)
}

fn new_node(id: u64) -> Node {
    let config = ReplicaConfig::new(id, vec![1, 2, 3]);
    let log = Engine::format(engine_config(), id * 2);
    let state = Engine::format(engine_config(), id * 2 + 1);
    let disks = [(Volume::Log, vec![0u8; VOLUME_BYTES as usize]), (Volume::State, vec![0u8; VOLUME_BYTES as usize])];
    Node { replica: Replica::new(config, log, state), disks: disks.into() }
}

fn reopen(node: Node) -> Node {
    let config = ReplicaConfig::new(node.replica.id(), vec![1, 2, 3]);
    let replica = Replica::new(config, Engine::open(engine_config()), Engine::open(engine_config()));
    Node { replica, disks: node.disks }
}

struct Cluster {
    nodes: Vec<Node>,
    replies: Vec<(u64, u64, Reply)>,
    now_ms: u64,
}

impl Cluster {
    /// Every output of every replica until all are quiet: I/O done at once, messages delivered.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            let mut messages = Vec::new();
            for node in &mut self.nodes {
                while let Some((volume, request)) = node.replica.poll_io() {
                    progress = true;
                    let completion = support::perform(node.disks.get_mut(&volume).unwrap(), request);
                    node.replica.complete(volume, completion);
                }
                while let Some(message) = node.replica.poll_message() {
                    messages.push(message);
                }
                while let Some((client, reply)) = node.replica.poll_reply() {
                    self.replies.push((node.replica.id(), client, reply));
                }
                node.replica.tick(self.now_ms, 1_700_000_000_000 + self.now_ms);
            }
            for message in messages {
                progress = true;
                let to = message.to as usize - 1;
                self.nodes[to].replica.step(message);
            }
            if !progress {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    fn raft_ticks(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.now_ms += 10;
            for node in &mut self.nodes {
                node.replica.raft_tick();
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|node| node.replica.role() == Role::Leader)
    }

    fn request(&mut self, node: usize, client: u64, words: &[&str]) -> Reply {
        let command = words.iter().map(|word| word.as_bytes().to_vec()).collect();
        self.nodes[node].replica.submit(client, vec![command], false);
        for _ in 0..50 {
            self.settle();
            if let Some(position) = self.replies.iter().position(|(_, c, _)| *c == client) {
                return self.replies.remove(position).2;
            }
            self.raft_ticks(1);
        }
        panic!("no reply to {words:?}");
    }
}

fn elect(cluster: &mut Cluster) -> usize {
    for _ in 0..100 {
        // Replica 1's clock runs a little ahead, so it times out first.
        cluster.nodes[0].replica.raft_tick();
        cluster.raft_ticks(1);
        if let Some(leader) = cluster.leader() {
            return leader;
        }
    }
    panic!("no leader elected");
}

#[test]
fn writes_commit_reads_see_them_followers_redirect_and_a_restart_keeps_them() {
    let mut cluster = Cluster { nodes: (1..=3).map(new_node).collect(), replies: Vec::new(), now_ms: 0 };
    cluster.settle();
    let leader = elect(&mut cluster);
    assert_eq!(cluster.request(leader, 10, &["SET", "k", "v1"]), Reply::ok());
    assert_eq!(cluster.request(leader, 10, &["INCR", "n"]), Reply::Integer(1));
    assert_eq!(cluster.request(leader, 10, &["GET", "k"]), Reply::Bulk(Some(b"v1".to_vec())));
    let follower = (leader + 1) % 3;
    let moved = cluster.request(follower, 11, &["GET", "foo"]);
    assert_eq!(moved, Reply::Error(format!("MOVED 12182 replica-{}", leader + 1)));
    let moved = cluster.request(follower, 11, &["SET", "foo", "x"]);
    assert!(matches!(moved, Reply::Error(text) if text.starts_with("MOVED")));
    // Every replica applied both writes.
    cluster.raft_ticks(5);
    for node in &cluster.nodes {
        assert!(
            node.replica.applied_index() >= 3,
            "replica {} applied {}",
            node.replica.id(),
            node.replica.applied_index()
        );
    }
    // All three restart from their volumes; the data and the applied index come back.
    let nodes = std::mem::take(&mut cluster.nodes);
    cluster.nodes = nodes.into_iter().map(reopen).collect();
    cluster.settle();
    let leader = elect(&mut cluster);
    assert_eq!(cluster.request(leader, 12, &["GET", "k"]), Reply::Bulk(Some(b"v1".to_vec())));
    assert_eq!(cluster.request(leader, 12, &["INCR", "n"]), Reply::Integer(2));
    let refused = cluster.request(leader, 12, &["FLUSHALL"]);
    assert!(matches!(refused, Reply::Error(text) if text.contains("not supported")));
}
