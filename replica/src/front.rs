//! The Redis Cluster face of a replica, sans-I/O: connections' bytes in, reply bytes out. It
//! answers what a cluster client asks of any node itself (PING, CLUSTER SLOTS/SHARDS/NODES/
//! INFO/MYID/KEYSLOT, MULTI framing, READONLY, HELLO's refusal so clients fall back to RESP2)
//! and hands every data command to the replica, which proposes writes, reads through
//! ReadIndex, and redirects with MOVED when it is not the leader. One shard: the leader is
//! master of all 16,384 slots, the other replicas its replicas.
//!
//! Inputs: [`Front::connect`], [`Front::receive`], [`Front::disconnect`], and the replica's own
//! (through [`Front::replica_mut`]). Outputs: [`Front::poll_output`] (bytes for a connection)
//! and [`Front::poll_close`], drained after every input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quill_core::engine::ClientId;
use quill_core::resp::{encode_reply, Decoder, Limits};
use quill_core::Reply;

use crate::proposal::Command;
use crate::replica::{Replica, Role};
use crate::slot;

/// Commands a MULTI may queue at most.
const QUEUED_MAX: usize = crate::proposal::COMMANDS_PER_ENTRY_MAX;

/// One reply's place in a connection's order.
enum Slot {
    Ready(Reply),
    /// The replica answers it (in the order the connection sent its requests).
    Replica,
}

struct Connection {
    decoder: Decoder,
    /// Inside MULTI: the commands queued.
    queued: Option<Vec<Command>>,
    slots: VecDeque<Slot>,
    close_after_replies: bool,
}

pub struct Front {
    replica: Replica,
    connections: BTreeMap<ClientId, Connection>,
    client_next: ClientId,
    limits: Limits,
    output: VecDeque<(ClientId, Vec<u8>)>,
    closes: VecDeque<ClientId>,
    /// Connections that got replica replies this turn (their ready slots go out together).
    touched: BTreeSet<ClientId>,
}

impl Front {
    pub fn new(replica: Replica, limits: Limits) -> Front {
        Front {
            replica,
            connections: BTreeMap::new(),
            client_next: 1,
            limits,
            output: VecDeque::new(),
            closes: VecDeque::new(),
            touched: BTreeSet::new(),
        }
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica's own inputs (messages, completions, ticks); call [`Front::collect`] after.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    pub fn connect(&mut self) -> ClientId {
        let id = self.client_next;
        self.client_next += 1;
        let connection = Connection {
            decoder: Decoder::new(self.limits),
            queued: None,
            slots: VecDeque::new(),
            close_after_replies: false,
        };
        self.connections.insert(id, connection);
        id
    }

    pub fn disconnect(&mut self, client: ClientId) {
        self.connections.remove(&client);
        self.replica.disconnect(client);
    }

    pub fn receive(&mut self, client: ClientId, bytes: &[u8]) {
        let Some(connection) = self.connections.get_mut(&client) else { return };
        connection.decoder.feed(bytes);
        loop {
            let Some(connection) = self.connections.get_mut(&client) else { return };
            if connection.close_after_replies {
                break;
            }
            match connection.decoder.next_command() {
                Ok(Some(command)) if command.is_empty() => continue,
                Ok(Some(command)) => self.command(client, command),
                Ok(None) => break,
                Err(error) => {
                    if error.sends_reply() {
                        connection.slots.push_back(Slot::Ready(error.to_reply()));
                    }
                    connection.close_after_replies = true;
                    break;
                }
            }
        }
        self.touched.insert(client);
        self.collect();
    }

    /// Moves the replica's replies into their connections' order and ready bytes out.
    pub fn collect(&mut self) {
        while let Some((client, reply)) = self.replica.poll_reply() {
            let Some(connection) = self.connections.get_mut(&client) else { continue };
            let slot = connection.slots.iter_mut().find(|slot| matches!(slot, Slot::Replica));
            *slot.expect("a reply the connection waits for") = Slot::Ready(reply);
            self.touched.insert(client);
        }
        for client in std::mem::take(&mut self.touched) {
            let Some(connection) = self.connections.get_mut(&client) else { continue };
            let mut bytes = Vec::new();
            while let Some(Slot::Ready(_)) = connection.slots.front() {
                let Some(Slot::Ready(reply)) = connection.slots.pop_front() else { unreachable!() };
                encode_reply(&reply, &mut bytes);
            }
            if !bytes.is_empty() {
                self.output.push_back((client, bytes));
            }
            if connection.close_after_replies && connection.slots.is_empty() {
                self.connections.remove(&client);
                self.replica.disconnect(client);
                self.closes.push_back(client);
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<(ClientId, Vec<u8>)> {
        self.output.pop_front()
    }

    pub fn poll_close(&mut self) -> Option<ClientId> {
        self.closes.pop_front()
    }

    fn command(&mut self, client: ClientId, command: Command) {
        let name = command[0].to_ascii_uppercase();
        let connection = self.connections.get_mut(&client).expect("a connection");
        if let Some(queued) = connection.queued.as_mut() {
            let reply = match name.as_slice() {
                b"EXEC" => return self.exec(client),
                b"DISCARD" => {
                    connection.queued = None;
                    Reply::ok()
                }
                b"MULTI" => Reply::error("ERR MULTI calls can not be nested"),
                b"WATCH" => Reply::error("ERR WATCH inside MULTI is not allowed"),
                _ if queued.len() >= QUEUED_MAX => Reply::error("ERR too many commands in this MULTI"),
                _ => {
                    queued.push(command);
                    Reply::Simple("QUEUED".into())
                }
            };
            connection.slots.push_back(Slot::Ready(reply));
            return;
        }
        let reply = match name.as_slice() {
            b"PING" => match command.get(1) {
                Some(message) => Reply::Bulk(Some(message.clone())),
                None => Reply::Simple("PONG".into()),
            },
            b"ECHO" if command.len() == 2 => Reply::Bulk(Some(command[1].clone())),
            b"QUIT" => {
                connection.close_after_replies = true;
                Reply::ok()
            }
            b"SELECT" if command.get(1).is_some_and(|db| db.as_slice() == b"0") => Reply::ok(),
            b"SELECT" => Reply::error("ERR SELECT is not allowed in cluster mode"),
            b"READONLY" | b"READWRITE" | b"ASKING" => Reply::ok(),
            b"CLIENT" => Reply::ok(),
            b"COMMAND" => Reply::Array(Some(Vec::new())),
            b"HELLO" => Reply::error("NOPROTO this server speaks RESP2 only"),
            b"MULTI" => {
                connection.queued = Some(Vec::new());
                Reply::ok()
            }
            b"EXEC" => Reply::error("ERR EXEC without MULTI"),
            b"DISCARD" => Reply::error("ERR DISCARD without MULTI"),
            b"WATCH" | b"UNWATCH" => Reply::error("ERR WATCH is not supported by a replicated QuillKV yet"),
            b"CLUSTER" => self.cluster_command(&command),
            b"INFO" => Reply::Bulk(Some(self.info().into_bytes())),
            _ => {
                connection.slots.push_back(Slot::Replica);
                self.replica.submit(client, vec![command], false);
                return;
            }
        };
        let connection = self.connections.get_mut(&client).expect("a connection");
        connection.slots.push_back(Slot::Ready(reply));
    }

    fn exec(&mut self, client: ClientId) {
        let connection = self.connections.get_mut(&client).expect("a connection");
        let queued = connection.queued.take().unwrap_or_default();
        if queued.is_empty() {
            connection.slots.push_back(Slot::Ready(Reply::Array(Some(Vec::new()))));
            return;
        }
        connection.slots.push_back(Slot::Replica);
        self.replica.submit(client, queued, true);
    }

    fn node_id(id: u64) -> String {
        format!("{id:040x}")
    }

    /// (id, host, port) of every replica, the leader first.
    fn nodes(&self) -> Vec<(u64, String, u16)> {
        let leader = self.replica.leader_id();
        let mut nodes: Vec<(u64, String, u16)> = self
            .replica
            .config()
            .addresses
            .iter()
            .map(|(id, address)| {
                let (host, port) = address.rsplit_once(':').unwrap_or((address.as_str(), "0"));
                (*id, host.to_string(), port.parse().unwrap_or(0))
            })
            .collect();
        nodes.sort_by_key(|(id, _, _)| (*id != leader, *id));
        nodes
    }

    fn cluster_command(&self, command: &Command) -> Reply {
        let sub = command.get(1).map(|word| word.to_ascii_uppercase()).unwrap_or_default();
        let leader = self.replica.leader_id();
        let bulk = |text: String| Reply::Bulk(Some(text.into_bytes()));
        match sub.as_slice() {
            b"MYID" => bulk(Self::node_id(self.replica.id())),
            b"KEYSLOT" if command.len() == 3 => Reply::Integer(slot::key_slot(&command[2]).into()),
            b"INFO" => bulk(self.cluster_info()),
            b"NODES" => bulk(self.cluster_nodes()),
            b"SLOTS" if leader == 0 => Reply::Array(Some(Vec::new())),
            b"SLOTS" => {
                let mut range = vec![Reply::Integer(0), Reply::Integer(i64::from(slot::SLOTS) - 1)];
                for (id, host, port) in self.nodes() {
                    range.push(Reply::Array(Some(vec![
                        bulk(host),
                        Reply::Integer(port.into()),
                        bulk(Self::node_id(id)),
                    ])));
                }
                Reply::Array(Some(vec![Reply::Array(Some(range))]))
            }
            b"SHARDS" => self.cluster_shards(),
            _ => Reply::error(
                "ERR unknown CLUSTER subcommand (MYID, KEYSLOT, INFO, NODES, SLOTS and SHARDS are answered)",
            ),
        }
    }

    fn cluster_info(&self) -> String {
        let leader = self.replica.leader_id();
        let state = if leader == 0 { "fail" } else { "ok" };
        let assigned = if leader == 0 { 0 } else { slot::SLOTS };
        format!(
            "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{}\r\ncluster_size:1\r\n\
             cluster_current_epoch:{}\r\ncluster_my_epoch:{}\r\n",
            self.replica.config().addresses.len(),
            self.replica.term(),
            self.replica.term()
        )
    }

    fn cluster_nodes(&self) -> String {
        let leader = self.replica.leader_id();
        let mut text = String::new();
        for (id, host, port) in self.nodes() {
            let myself = if id == self.replica.id() { "myself," } else { "" };
            let (role, master, slots) = match id == leader {
                true => ("master", "-".to_string(), format!(" 0-{}", slot::SLOTS - 1)),
                false if leader != 0 => ("slave", Self::node_id(leader), String::new()),
                false => ("master", "-".to_string(), String::new()),
            };
            text.push_str(&format!(
                "{} {host}:{port}@{} {myself}{role} {master} 0 0 {} connected{slots}\n",
                Self::node_id(id),
                u32::from(port) + 10_000,
                self.replica.term()
            ));
        }
        text
    }

    fn cluster_shards(&self) -> Reply {
        let leader = self.replica.leader_id();
        let bulk = |text: &str| Reply::Bulk(Some(text.as_bytes().to_vec()));
        let nodes = self
            .nodes()
            .into_iter()
            .map(|(id, host, port)| {
                let role = if id == leader { "master" } else { "replica" };
                Reply::Array(Some(vec![
                    bulk("id"),
                    bulk(&Self::node_id(id)),
                    bulk("port"),
                    Reply::Integer(port.into()),
                    bulk("ip"),
                    bulk(&host),
                    bulk("endpoint"),
                    bulk(&host),
                    bulk("role"),
                    bulk(role),
                    bulk("replication-offset"),
                    Reply::Integer(self.replica.applied_index() as i64),
                    bulk("health"),
                    bulk("online"),
                ]))
            })
            .collect();
        let slots =
            if leader == 0 { Vec::new() } else { vec![Reply::Integer(0), Reply::Integer(i64::from(slot::SLOTS) - 1)] };
        Reply::Array(Some(vec![Reply::Array(Some(vec![
            bulk("slots"),
            Reply::Array(Some(slots)),
            bulk("nodes"),
            Reply::Array(Some(nodes)),
        ]))]))
    }

    fn info(&self) -> String {
        let role = match self.replica.role() {
            Role::Leader => "master",
            _ => "slave",
        };
        format!(
            "# Server\r\nredis_version:7.2.0\r\nquill_mode:replicated\r\n# Replication\r\nrole:{role}\r\n\
             raft_term:{}\r\nraft_leader_id:{}\r\nraft_commit_index:{}\r\nraft_applied_index:{}\r\n# Cluster\r\ncluster_enabled:1\r\n",
            self.replica.term(),
            self.replica.leader_id(),
            self.replica.commit_index(),
            self.replica.applied_index()
        )
    }
}
