//! The whole cluster in one seeded process, as TigerBeetle's VOPR runs one: `replicas` real
//! `quill_replica::Replica`s, each over two simulated disks with the single-node fault model,
//! joined by a simulated network that delays, drops, duplicates and reorders messages and
//! partitions the replicas (symmetric, asymmetric, a bridge); replicas crash and restart.
//! Clients talk to any replica and follow MOVED. Checked: every key's history is linearizable
//! over the whole cluster (acknowledged writes survive, no stale read), transactions are atomic,
//! and once the network heals and every replica is back, a leader is elected and a write
//! completes within `LIVENESS_TICKS_MAX`, and every replica catches up.
//!
//! Time: one tick is one millisecond of the engines' clocks. A replica's Raft clock ticks every
//! `raft_tick_period` ticks (8 to 12, drawn per replica), plus 0 to 3 ticks of jitter each time:
//! raft-rs's own election timeout is a single value, so this is where elections spread out.

mod clients;
mod driver;
pub mod model;
pub mod network;
mod node;

pub use network::{NetworkCounts, PartitionKind};

use crate::faults::FaultLedger;
use crate::knobs::FaultLevel;

/// Ticks the cluster has, after the network heals and every replica restarts, to elect a
/// leader and acknowledge a write: 30 election timeouts at the slowest Raft clock.
pub const LIVENESS_TICKS_MAX: u64 = 30 * 10 * 15;
/// Ticks a client waits for a reply before it takes the outcome as unknown.
pub const CLIENT_TIMEOUT_TICKS: u64 = 2_000;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub seed: u64,
    /// Client operations before the final phase.
    pub ops: u64,
    pub faults: FaultLevel,
    pub replicas: usize,
    pub keep_trace: bool,
    pub planted_bug: Option<quill_replica::ClusterBug>,
}

impl ClusterOptions {
    pub fn new(seed: u64, ops: u64, faults: FaultLevel, replicas: usize) -> ClusterOptions {
        ClusterOptions { seed, ops, faults, replicas, keep_trace: false, planted_bug: None }
    }
}

/// How one cluster seed ended.
#[derive(Clone, Debug, Default)]
pub struct ClusterReport {
    pub seed: u64,
    pub replicas: usize,
    pub violation: Option<String>,
    pub ops: u64,
    pub ticks: u64,
    pub trace_hash: u64,
    pub trace: Vec<String>,
    /// Every volume's disk faults, merged.
    pub disk_faults: FaultLedger,
    pub network: NetworkCounts,
    pub crashes: u64,
    /// Replicas that stopped themselves (a volume failed) and were restarted.
    pub halts: u64,
    /// Times a replica became leader.
    pub leaders_elected: u64,
    pub acknowledged_writes: u64,
    pub unknown_writes: u64,
    pub redirects: u64,
    pub keys_checked: u64,
    /// Keys whose search met its node limit (neither proven nor refuted).
    pub keys_undecided: u64,
    /// Ticks from the final heal to the first acknowledged write.
    pub recovery_ticks: u64,
    pub production_config: bool,
    /// The highest first index of any replica's log at the end (above 1: logs were truncated).
    pub log_first_index_max: u64,
}

impl ClusterReport {
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }
}

pub fn run_cluster_seed(options: &ClusterOptions) -> ClusterReport {
    // A panic (raft-rs's own consistency checks among them) is a failure like any violation.
    match std::panic::catch_unwind(|| driver::ClusterSim::new(options.clone()).run()) {
        Ok(report) => report,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with no message".to_string());
            ClusterReport {
                seed: options.seed,
                replicas: options.replicas,
                violation: Some(format!("a replica or the simulator panicked: {message}")),
                ..ClusterReport::default()
            }
        }
    }
}

/// The command that reproduces a cluster seed.
pub fn reproduce_cluster_command(options: &ClusterOptions) -> String {
    let faults = match options.faults {
        FaultLevel::None => "none",
        FaultLevel::Default => "default",
        FaultLevel::Heavy => "heavy",
    };
    let plant = options.planted_bug.map(|bug| format!(" --plant-cluster {}", bug.name())).unwrap_or_default();
    format!(
        "quill sim --replicas {} --seed {} --ops {} --faults {faults}{plant}",
        options.replicas, options.seed, options.ops
    )
}
