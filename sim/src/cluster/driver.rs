//! The cluster simulation's loop: faults, I/O, messages, Raft clocks and clients, one tick at a
//! time, then the final phase (heal, restart, liveness, final reads) and the checks.

use std::collections::BTreeMap;

use quill_core::{Config, Reply};
use quill_replica::{ReplicaConfig, Role};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::clients::{classify, ClientOperation, History, Verdict};
use super::network::{Network, NetworkKnobs};
use super::node::{SimNode, SimVolume};
use super::{ClusterOptions, ClusterReport, CLIENT_TIMEOUT_TICKS, LIVENESS_TICKS_MAX};
use crate::faults::Injector;
use crate::knobs::{FaultLevel, Knobs};
use crate::runner::storage::Storage;
use crate::runner::{stream, volume_disk, Sim, SimOptions};
use crate::trace::Trace;

/// The simulated wall clock's origin (Unix milliseconds), as the single-node runner's.
const EPOCH_UNIX_MS: u64 = 1_796_083_200_000;
/// Ticks the workload phase may take at most (a limit on the loop; hitting it is a failure).
const WORKLOAD_TICKS_MAX: u64 = 2_000_000;
/// MOVED hops one operation may take before the client gives up on it.
const REDIRECTS_PER_OPERATION_MAX: u32 = 16;

/// The seed's fault plan.
struct Plan {
    crash_per_tick_ppm: u32,
    crashes_max: u64,
    down_ticks_max: u64,
    partition_per_tick_ppm: u32,
    partition_ticks_max: u64,
    heal_at: Option<u64>,
}

struct Pending {
    operation: ClientOperation,
    call: u64,
    attempt: u64,
    node: usize,
    /// Sent at this tick; `delivered` once the replica has it.
    sent_tick: u64,
    delivered: bool,
    hops: u32,
}

#[derive(Default)]
struct Client {
    pending: Option<Pending>,
    /// When the client acts next (sends its next operation, or again).
    next_tick: u64,
    operations: u64,
    target: usize,
    /// The operation to send at `next_tick` (a retry), if any.
    retry: Option<(ClientOperation, u64, u32)>,
    /// Operations a replica acknowledged.
    acknowledged: u64,
}

pub struct ClusterSim {
    options: ClusterOptions,
    knobs: Knobs,
    config: Config,
    nodes: Vec<SimNode>,
    network: Network,
    clients: Vec<Client>,
    /// Requests on their way to a replica: (due tick, attempt) → client.
    deliveries: BTreeMap<(u64, u64), usize>,
    attempt_next: u64,
    history: History,
    plan: Plan,
    tick: u64,
    faults_on: bool,
    ops_started: u64,
    rng: ChaCha8Rng,
    workload_rng: ChaCha8Rng,
    trace: Trace,
    report: ClusterReport,
    was_leader: Vec<bool>,
}

impl ClusterSim {
    pub fn new(options: ClusterOptions) -> ClusterSim {
        assert!(options.replicas >= 1 && options.replicas <= 9, "1 to 9 replicas");
        let mut knobs_rng = stream(options.seed, 20);
        let mut knobs = Knobs::draw(&mut knobs_rng, options.faults);
        cluster_knobs(&mut knobs, &mut knobs_rng);
        let single = SimOptions::new(options.seed, options.ops, options.faults);
        let config = Sim::engine_config(&knobs, &single);
        let scale = match options.faults {
            FaultLevel::None => 0,
            FaultLevel::Default => 1,
            FaultLevel::Heavy => 4,
        };
        let plan = Plan {
            crash_per_tick_ppm: knobs_rng.gen_range(0..=300) * scale,
            crashes_max: knobs_rng.gen_range(1..=3) * u64::from(scale),
            down_ticks_max: knobs_rng.gen_range(20..=1_500),
            partition_per_tick_ppm: knobs_rng.gen_range(0..=400) * scale,
            partition_ticks_max: knobs_rng.gen_range(50..=3_000),
            heal_at: None,
        };
        let network_knobs = NetworkKnobs {
            latency_ticks_max: knobs_rng.gen_range(1..=20),
            drop_ppm: knobs_rng.gen_range(0..=20_000) * scale,
            duplicate_ppm: knobs_rng.gen_range(0..=10_000) * scale,
        };
        let voters: Vec<u64> = (1..=options.replicas as u64).collect();
        // Its own stream: the other draws stay what they were before logs were truncated.
        let truncate_after_entries = [8, 32, 100, 1024][stream(options.seed, 24).gen_range(0..4)];
        let nodes = voters
            .iter()
            .map(|&id| {
                let mut replica_config = ReplicaConfig::new(id, voters.clone());
                // Small enough that most seeds truncate their logs several times.
                replica_config.truncate_after_entries = truncate_after_entries;
                #[cfg(feature = "planted-bugs")]
                replica_config.plant(options.planted_bug);
                let volume = |number: u64| SimVolume {
                    disk: volume_disk(&knobs),
                    storage: Storage::new(stream(options.seed, 100 + id * 4 + number)),
                    faults: Injector::new(
                        stream(options.seed, 102 + id * 4 + number),
                        options.faults != FaultLevel::None,
                        Default::default(),
                    ),
                    formatted: false,
                };
                let period = knobs_rng.gen_range(8..=12);
                SimNode::new(replica_config, [volume(0), volume(1)], period)
            })
            .collect();
        let clients = (0..knobs_rng.gen_range(2..=8))
            .map(|index| Client { target: index % options.replicas, ..Client::default() })
            .collect();
        ClusterSim {
            network: Network::new(stream(options.seed, 21), network_knobs),
            rng: stream(options.seed, 22),
            workload_rng: stream(options.seed, 23),
            trace: Trace::new(options.keep_trace),
            report: ClusterReport {
                seed: options.seed,
                replicas: options.replicas,
                production_config: knobs.production_config,
                ..ClusterReport::default()
            },
            was_leader: vec![false; options.replicas],
            faults_on: options.faults != FaultLevel::None,
            options,
            knobs,
            config,
            nodes,
            clients,
            deliveries: BTreeMap::new(),
            attempt_next: 1,
            history: History::default(),
            plan,
            tick: 0,
            ops_started: 0,
        }
    }

    pub fn run(mut self) -> ClusterReport {
        for index in 0..self.nodes.len() {
            self.nodes[index].start(&self.config, &mut self.rng);
            self.drain(index);
        }
        let outcome = self.workload().and_then(|()| self.final_phase()).and_then(|()| self.check());
        let pending = self.report.violation.take();
        self.report.violation = outcome.err().or(pending);
        self.finish_report()
    }

    fn workload(&mut self) -> Result<(), String> {
        // Retries waiting to be sent again count as unfinished too.
        let busy = |client: &Client| client.pending.is_some() || client.retry.is_some();
        while self.ops_started < self.options.ops || self.clients.iter().any(busy) {
            if self.tick > WORKLOAD_TICKS_MAX {
                return Err(format!("the workload did not finish within {WORKLOAD_TICKS_MAX} ticks"));
            }
            self.inject_faults();
            self.step()?;
            self.start_operations();
        }
        Ok(())
    }

    /// One tick: restarts due, messages due, I/O due, Raft clocks due, requests due, timeouts.
    fn step(&mut self) -> Result<(), String> {
        self.tick += 1;
        for index in 0..self.nodes.len() {
            if !self.nodes[index].is_up() && self.nodes[index].down_until <= self.tick {
                self.restart(index);
            }
        }
        while let Some(message) = self.network.deliver(self.tick) {
            let (from, to, kind) = (message.from, message.to, message.get_msg_type() as u64);
            self.trace.record(self.tick, &[9, from, to, kind, message.term, message.index], |line| {
                line.push_str(&format!("deliver {kind} {from}->{to} term {} index {}", message.term, message.index))
            });
            let index = to as usize - 1;
            if let Some(replica) = self.nodes[index].replica.as_mut() {
                replica.step(message);
                self.drain(index);
            } else {
                self.network.counts.cut += 1;
            }
        }
        for index in 0..self.nodes.len() {
            while self.nodes[index].complete_io(self.tick, &self.knobs, &mut self.trace) {
                self.drain(index);
            }
            let node = &mut self.nodes[index];
            if node.is_up() && node.raft_tick_due <= self.tick {
                node.raft_tick_due = self.tick + node.raft_tick_period + self.rng.gen_range(0..=3);
                node.replica.as_mut().expect("up").raft_tick();
                self.drain(index);
            }
            if let Some(replica) = self.nodes[index].replica.as_mut() {
                replica.tick(self.tick, EPOCH_UNIX_MS + self.tick);
                self.drain(index);
            }
            self.nodes[index].issue_io(self.tick, &self.knobs, &mut self.trace)?;
        }
        self.deliver_requests()?;
        self.expire_requests();
        self.note_roles();
        Ok(())
    }

    /// Outputs of one replica: messages to the network, replies to clients, a halt noticed.
    fn drain(&mut self, index: usize) {
        let Some(replica) = self.nodes[index].replica.as_mut() else { return };
        let mut replies = Vec::new();
        while let Some(message) = replica.poll_message() {
            self.network.send(self.tick, message, self.faults_on);
        }
        while let Some(reply) = replica.poll_reply() {
            replies.push(reply);
        }
        let halted = replica.role() == Role::Halted;
        self.nodes[index].note_formats();
        if let Err(error) = self.nodes[index].issue_io(self.tick, &self.knobs, &mut self.trace) {
            self.report.violation.get_or_insert(error);
        }
        for (attempt, reply) in replies {
            self.on_reply(attempt, reply);
        }
        if halted {
            let reason = self.nodes[index].replica.as_ref().and_then(|r| r.halt_reason().map(str::to_string));
            // A halt is a degraded path: an I/O error this start of the replica met explains it.
            let explained =
                self.nodes[index].volumes.iter().any(|volume| volume.faults.ledger.io_errors_since_start > 0);
            if !explained {
                let why = reason.clone().unwrap_or_default();
                self.report
                    .violation
                    .get_or_insert(format!("replica {} halted with no I/O error to explain it: {why}", index + 1));
            }
            self.trace.record(self.tick, &[12, index as u64], |line| {
                line.push_str(&format!("replica {} halted: {}", index + 1, reason.unwrap_or_default()))
            });
            self.report.halts += 1;
            self.nodes[index].halts += 1;
            let down_ticks = 1 + self.rng.gen_range(0..200);
            self.take_down(index, down_ticks);
        }
    }

    fn note_roles(&mut self) {
        for index in 0..self.nodes.len() {
            let leader = self.nodes[index].role() == Some(Role::Leader);
            if leader && !self.was_leader[index] {
                self.report.leaders_elected += 1;
                let term = self.nodes[index].replica.as_ref().map_or(0, |replica| replica.term());
                self.trace.record(self.tick, &[13, index as u64, term], |line| {
                    line.push_str(&format!("replica {} leads term {term}", index + 1))
                });
            }
            self.was_leader[index] = leader;
        }
    }

    fn inject_faults(&mut self) {
        if !self.faults_on {
            return;
        }
        if self.plan.heal_at.is_some_and(|tick| tick <= self.tick) {
            self.plan.heal_at = None;
            self.network.heal();
            self.trace.record(self.tick, &[14], |line| line.push_str("network heals"));
        }
        if !self.network.is_partitioned() && self.rng.gen_range(0..1_000_000) < self.plan.partition_per_tick_ppm {
            let ids: Vec<u64> = (1..=self.nodes.len() as u64).collect();
            if ids.len() >= 2 {
                let kind = self.network.partition(&ids);
                self.plan.heal_at = Some(self.tick + self.rng.gen_range(50..=self.plan.partition_ticks_max));
                self.trace.record(self.tick, &[15, kind as u64], |line| line.push_str(&format!("{kind:?}")));
            }
        }
        let crashes = self.report.crashes;
        if crashes < self.plan.crashes_max && self.rng.gen_range(0..1_000_000) < self.plan.crash_per_tick_ppm {
            let index = self.rng.gen_range(0..self.nodes.len());
            if self.nodes[index].is_up() {
                self.report.crashes += 1;
                self.nodes[index].crashes += 1;
                let down = 1 + self.rng.gen_range(0..self.plan.down_ticks_max);
                self.take_down(index, down);
            }
        }
    }

    /// Crashes replica `index` (a crash or a halt) for `down_ticks`.
    fn take_down(&mut self, index: usize, down_ticks: u64) {
        self.trace.record(self.tick, &[5, index as u64], |line| line.push_str(&format!("replica {} down", index + 1)));
        let faults_on = self.faults_on;
        self.nodes[index].crash(&self.knobs, faults_on, &mut self.rng);
        self.nodes[index].down_until = self.tick + down_ticks;
        // Requests it had taken will never be answered.
        for client in 0..self.clients.len() {
            let lost =
                self.clients[client].pending.as_ref().is_some_and(|pending| pending.delivered && pending.node == index);
            if lost {
                let pending = self.clients[client].pending.take().expect("pending");
                self.history.record_unknown(&pending.operation, pending.call);
                self.finish_operation(client);
            }
        }
    }

    fn restart(&mut self, index: usize) {
        self.trace
            .record(self.tick, &[6, index as u64], |line| line.push_str(&format!("replica {} starts", index + 1)));
        self.nodes[index].start(&self.config, &mut self.rng);
        self.nodes[index].raft_tick_due = self.tick + self.nodes[index].raft_tick_period;
        self.drain(index);
    }

    fn start_operations(&mut self) {
        for client in 0..self.clients.len() {
            let ready = self.clients[client].pending.is_none() && self.clients[client].next_tick <= self.tick;
            if !ready {
                continue;
            }
            if let Some((operation, call, hops)) = self.clients[client].retry.take() {
                self.send(client, operation, call, hops);
            } else if self.ops_started < self.options.ops {
                self.ops_started += 1;
                let number = self.clients[client].operations;
                self.clients[client].operations += 1;
                let operation = ClientOperation::draw(&mut self.workload_rng, client, number);
                // A quarter of reads go to any replica, as a Redis Cluster client reading from
                // replicas (READONLY) would: a follower must redirect them, not answer.
                if !operation.is_write() && self.workload_rng.gen_range(0..4) == 0 {
                    self.clients[client].target = self.workload_rng.gen_range(0..self.nodes.len());
                }
                self.history.note_pair(&operation);
                let call = self.history.now();
                self.send(client, operation, call, 0);
            }
        }
    }

    fn send(&mut self, client: usize, operation: ClientOperation, call: u64, hops: u32) {
        let attempt = self.attempt_next;
        self.attempt_next += 1;
        let node = self.clients[client].target;
        let latency = self.rng.gen_range(1..=5);
        self.deliveries.insert((self.tick + latency, attempt), client);
        self.clients[client].pending =
            Some(Pending { operation, call, attempt, node, sent_tick: self.tick, delivered: false, hops });
    }

    fn deliver_requests(&mut self) -> Result<(), String> {
        while let Some((&(due, attempt), &client)) = self.deliveries.first_key_value() {
            if due > self.tick {
                break;
            }
            self.deliveries.remove(&(due, attempt));
            let Some(pending) = self.clients[client].pending.as_mut().filter(|pending| pending.attempt == attempt)
            else {
                continue;
            };
            let index = pending.node;
            let Some(replica) = self.nodes[index].replica.as_mut() else {
                // Connection refused: certainly not done; try another replica.
                self.retry(client, None);
                continue;
            };
            pending.delivered = true;
            let (commands, transaction) = pending.operation.commands();
            self.trace.record(self.tick, &[1, attempt, index as u64], |line| {
                line.push_str(&format!("client {client} sends {:?} to replica {}", pending.operation, index + 1))
            });
            replica.submit(attempt, commands, transaction);
            self.drain(index);
        }
        match self.report.violation.take() {
            Some(violation) => Err(violation),
            None => Ok(()),
        }
    }

    fn on_reply(&mut self, attempt: u64, reply: Reply) {
        let Some(client) =
            self.clients.iter().position(|client| client.pending.as_ref().is_some_and(|p| p.attempt == attempt))
        else {
            return; // an attempt the client gave up on
        };
        let digest = crate::trace::fnv(0, format!("{reply:?}").as_bytes());
        self.trace
            .record(self.tick, &[2, attempt, digest], |line| line.push_str(&format!("reply {attempt}: {reply:?}")));
        let pending = self.clients[client].pending.as_ref().expect("pending");
        let is_write = pending.operation.is_write();
        let verdict = match classify(reply) {
            Ok(verdict) => verdict,
            Err(_) if !is_write => Verdict::Refused, // a read failed (an injected read error)
            Err(error) => {
                self.report.violation.get_or_insert(format!("{error} (to {:?})", pending.operation));
                Verdict::Refused
            }
        };
        match verdict {
            Verdict::Done(reply) => {
                self.clients[client].acknowledged += 1;
                let pending = self.clients[client].pending.take().expect("pending");
                if let Err(violation) = self.history.record_done(&pending.operation, pending.call, reply) {
                    self.report.violation.get_or_insert(violation);
                }
                self.finish_operation(client);
            }
            Verdict::Retry(target) => self.retry(client, target.map(|id| id as usize - 1)),
            Verdict::Unknown => {
                let pending = self.clients[client].pending.take().expect("pending");
                self.history.record_unknown(&pending.operation, pending.call);
                self.finish_operation(client);
            }
            Verdict::Refused => {
                self.clients[client].pending = None;
                self.finish_operation(client);
            }
        }
    }

    /// The attempt certainly did nothing: send the operation again, to `target` or elsewhere.
    fn retry(&mut self, client: usize, target: Option<usize>) {
        let pending = self.clients[client].pending.take().expect("pending");
        self.report.redirects += u64::from(target.is_some());
        let hops = pending.hops + 1;
        if hops > REDIRECTS_PER_OPERATION_MAX {
            return self.finish_operation(client); // given up: it never happened
        }
        let count = self.nodes.len();
        let client_state = &mut self.clients[client];
        client_state.target = target.filter(|index| *index < count).unwrap_or_else(|| self.rng.gen_range(0..count));
        let backoff = if target.is_some() { 1 } else { self.rng.gen_range(10..=60) };
        client_state.next_tick = self.tick + backoff;
        client_state.retry = Some((pending.operation, pending.call, hops));
    }

    fn finish_operation(&mut self, client: usize) {
        self.clients[client].next_tick = self.tick + self.rng.gen_range(0..=20);
    }

    /// Requests unanswered for too long: their outcome is unknown.
    fn expire_requests(&mut self) {
        for client in 0..self.clients.len() {
            let expired = self.clients[client]
                .pending
                .as_ref()
                .is_some_and(|pending| pending.delivered && self.tick - pending.sent_tick > CLIENT_TIMEOUT_TICKS);
            if !expired {
                continue;
            }
            let pending = self.clients[client].pending.take().expect("pending");
            if let Some(replica) = self.nodes[pending.node].replica.as_mut() {
                replica.disconnect(pending.attempt);
            }
            self.history.record_unknown(&pending.operation, pending.call);
            self.finish_operation(client);
        }
    }

    /// Faults stop, the network heals, every replica comes back; then a write must complete
    /// within `LIVENESS_TICKS_MAX`, every key is read once more, and every replica catches up.
    fn final_phase(&mut self) -> Result<(), String> {
        self.faults_on = false;
        self.network.heal();
        for node in &mut self.nodes {
            node.down_until = node.down_until.min(self.tick + 1);
            for volume in &mut node.volumes {
                volume.faults.enabled = false;
            }
        }
        let healed_at = self.tick;
        let probe = ClientOperation::Set { key: "probe".to_string(), value: b"final".to_vec() };
        self.run_one(0, probe, healed_at + LIVENESS_TICKS_MAX).map_err(|why| {
            format!("no write completed within {LIVENESS_TICKS_MAX} ticks of the network healing: {why}")
        })?;
        self.report.recovery_ticks = self.tick - healed_at;
        let keys: Vec<String> = self.history.keys.keys().cloned().collect();
        for key in keys {
            let deadline = self.tick + LIVENESS_TICKS_MAX;
            self.run_one(0, ClientOperation::Get { key: key.clone() }, deadline)
                .map_err(|why| format!("the final read of {key} did not complete: {why}"))?;
        }
        self.settle_replicas()
    }

    /// Runs one operation of `client` until a replica acknowledges it, by `deadline`: an
    /// attempt that ends unknown or given up is sent again (a SET of the same value, or a read,
    /// may repeat).
    fn run_one(&mut self, client: usize, operation: ClientOperation, deadline: u64) -> Result<(), String> {
        let acknowledged = self.clients[client].acknowledged;
        let idle = |sim: &ClusterSim| sim.clients[client].pending.is_none() && sim.clients[client].retry.is_none();
        while self.tick < deadline {
            if idle(self) {
                if self.clients[client].acknowledged > acknowledged {
                    return Ok(());
                }
                let call = self.history.now();
                self.clients[client].next_tick = self.tick;
                self.clients[client].retry = Some((operation.clone(), call, 0));
            }
            self.step()?;
            self.start_operations();
        }
        Err(format!("{operation:?} was not acknowledged by tick {}", self.tick))
    }

    /// Every replica applies everything committed.
    fn settle_replicas(&mut self) -> Result<(), String> {
        let deadline = self.tick + LIVENESS_TICKS_MAX;
        while self.tick < deadline {
            let commit = self.nodes.iter().filter_map(|node| node.replica.as_ref()).map(|r| r.commit_index()).max();
            let caught_up = self
                .nodes
                .iter()
                .all(|node| node.replica.as_ref().is_some_and(|replica| Some(replica.applied_index()) == commit));
            if caught_up {
                return Ok(());
            }
            self.step()?;
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|node| match &node.replica {
                Some(replica) => replica.debug_state(),
                None => "down".to_string(),
            })
            .collect();
        Err(format!("replicas did not all catch up within {LIVENESS_TICKS_MAX} ticks: {states:?}"))
    }

    fn check(&mut self) -> Result<(), String> {
        let keys = std::mem::take(&mut self.history.keys);
        for (key, history) in &keys {
            self.report.keys_checked += 1;
            let decided = super::model::check_key(key, history).inspect_err(|_| {
                for entry in history {
                    let ret = if entry.ret == u64::MAX { "?".to_string() } else { entry.ret.to_string() };
                    let optional = if entry.optional { " (outcome unknown)" } else { "" };
                    self.trace.record(self.tick, &[], |line| {
                        line.push_str(&format!("history {key}: {}..{ret} {:?}{optional}", entry.call, entry.operation))
                    });
                }
            })?;
            self.report.keys_undecided += u64::from(!decided);
        }
        Ok(())
    }

    fn finish_report(mut self) -> ClusterReport {
        self.report.ops = self.ops_started;
        self.report.ticks = self.tick;
        self.report.trace_hash = self.trace.hash();
        self.report.trace = self.trace.lines().to_vec();
        self.report.network = self.network.counts.clone();
        self.report.acknowledged_writes = self.history.acknowledged_writes;
        self.report.unknown_writes = self.history.unknown_writes;
        for node in &self.nodes {
            self.report.disk_faults.merge(&node.ledger());
            let first = node.replica.as_ref().map_or(0, |replica| replica.log_first_index());
            self.report.log_first_index_max = self.report.log_first_index_max.max(first);
        }
        self.report
    }
}

/// The drawn single-node knobs, fitted to a replica's volumes: room for the Raft log (never
/// truncated yet), values that fit the workload, a client pipeline the replica's lanes fit,
/// and the production configuration in a third of the seeds.
fn cluster_knobs(knobs: &mut Knobs, rng: &mut ChaCha8Rng) {
    knobs.volume_blocks = knobs.volume_blocks.max(2_048);
    knobs.client_pipeline_max = knobs.client_pipeline_max.max(64);
    let batch_payload_bytes = knobs.batch_blocks_max as usize * 4096 - 64;
    knobs.value_bytes_max = crate::knobs::VALUE_BYTES_MAX_DEFAULT.min(batch_payload_bytes - 4096);
    knobs.index_bytes_max = quill_core::engine::INDEX_BYTES_LIMIT;
    // Damage the engine detects but cannot repair from its own volume (bit rot, a misdirected
    // write) needs a repair from the other replicas, which is not built yet.
    knobs.bit_flip_per_tick_ppm = 0;
    knobs.misdirect_ppm = 0;
    // A replica does its engines' index work itself (it hands none out to other threads).
    knobs.hand_out_index_work = false;
    knobs.production_config = rng.gen_range(0..3) == 0;
    // An election timeout (10 Raft ticks of 8 to 12 ticks) is several times a durable write
    // (a write and a sync, each up to this latency): with writes slower than elections, votes
    // are persisted after the candidate has given up, and no election ever ends (measured:
    // seed 4 of 5 heavy replicas, 60-tick writes, 200 terms without a leader). Real clusters
    // keep the same ratio (a 1 s election timeout against millisecond syncs).
    knobs.write_latency_ticks_max = knobs.write_latency_ticks_max.min(15);
    knobs.read_latency_ticks_max = knobs.read_latency_ticks_max.min(15);
}
