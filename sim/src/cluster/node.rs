//! One simulated replica: its two volumes (each a simulated disk with its own storage queue and
//! fault stream) and the replica itself, down while crashed.

use quill_core::{Config, Engine, IoCompletion};
use quill_replica::{Replica, ReplicaConfig, Role, Volume};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::disk::SimDisk;
use crate::faults::{FaultLedger, Injector};
use crate::knobs::Knobs;
use crate::runner::storage::{Storage, StorageContext};
use crate::trace::Trace;

pub struct SimVolume {
    pub disk: SimDisk,
    pub storage: Storage,
    pub faults: Injector,
    /// The volume's format finished once: a restart opens it (else it formats again).
    pub formatted: bool,
}

pub struct SimNode {
    pub replica: Option<Replica>,
    pub volumes: [SimVolume; 2],
    /// Down until this tick (a crash or a halt), then restarted.
    pub down_until: u64,
    /// The replica's Raft clock ticks next at this simulator tick.
    pub raft_tick_due: u64,
    pub raft_tick_period: u64,
    pub crashes: u64,
    pub halts: u64,
    pub replica_config: ReplicaConfig,
}

impl SimVolume {
    /// The storage queue and what it works with. `opening`: the engine is recovering (its
    /// writes then are repairs, judged by the fault budget as such).
    fn parts<'a>(
        &'a mut self,
        trace: &'a mut Trace,
        knobs: &'a Knobs,
        tick: u64,
        opening: bool,
    ) -> (&'a mut Storage, StorageContext<'a>) {
        let cx = StorageContext {
            disk: &mut self.disk,
            faults: &mut self.faults,
            trace,
            knobs,
            tick,
            recovering: opening,
            cannot_repair: opening,
        };
        (&mut self.storage, cx)
    }
}

/// Whether the engine of `volume` is still opening.
fn opening(replica: &Replica, volume: Volume) -> bool {
    match volume {
        Volume::Log => !replica.log_engine().is_ready(),
        Volume::State => !replica.state_engine().is_ready(),
    }
}

fn volume_index(volume: Volume) -> usize {
    match volume {
        Volume::Log => 0,
        Volume::State => 1,
    }
}

impl SimNode {
    pub fn new(replica_config: ReplicaConfig, volumes: [SimVolume; 2], raft_tick_period: u64) -> SimNode {
        SimNode {
            replica: None,
            volumes,
            down_until: 0,
            raft_tick_due: 0,
            raft_tick_period,
            crashes: 0,
            halts: 0,
            replica_config,
        }
    }

    /// Starts the replica on its volumes: each formats if it never finished a format, else
    /// opens and recovers.
    pub fn start(&mut self, config: &Config, rng: &mut ChaCha8Rng) {
        let mut engines = self.volumes.iter().map(|volume| match volume.formatted {
            true => Engine::open(config.clone()),
            false => Engine::format(config.clone(), rng.gen()),
        });
        let log = engines.next().expect("two volumes");
        let state = engines.next().expect("two volumes");
        self.replica = Some(Replica::new(self.replica_config.clone(), log, state));
    }

    /// A crash: nothing in flight completes; each disk keeps what was durable and what its
    /// crash model lets through of the rest.
    pub fn crash(&mut self, knobs: &Knobs, faults_on: bool, rng: &mut ChaCha8Rng) {
        self.replica = None;
        let (survive, tear) = if faults_on { (knobs.crash_survive_ppm, knobs.crash_tear_ppm) } else { (1_000_000, 0) };
        for volume in &mut self.volumes {
            volume.storage.clear();
            volume.faults.ledger.io_errors_since_start = 0;
            volume.disk.crash(rng, survive, tear, &mut volume.faults.ledger);
        }
    }

    /// Notes formats that finished (a later restart must open, not format).
    pub fn note_formats(&mut self) {
        let Some(replica) = &self.replica else { return };
        self.volumes[0].formatted |= replica.log_engine().is_ready();
        self.volumes[1].formatted |= replica.state_engine().is_ready();
    }

    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    pub fn role(&self) -> Option<Role> {
        self.replica.as_ref().map(Replica::role)
    }

    /// Hands the replica's new I/O to its volumes' queues. `Err`: an I/O outside the volume.
    pub fn issue_io(&mut self, tick: u64, knobs: &Knobs, trace: &mut Trace) -> Result<(), String> {
        let Some(replica) = self.replica.as_mut() else { return Ok(()) };
        while let Some((volume, request)) = replica.poll_io() {
            let opening = opening(replica, volume);
            let target = &mut self.volumes[volume_index(volume)];
            let (storage, mut cx) = target.parts(trace, knobs, tick, opening);
            storage.issue(request, &mut cx).map_err(|(expected, got)| format!("{expected}: {got}"))?;
        }
        Ok(())
    }

    /// Completes the I/O due by `tick`, one volume after the other. Whether any completed.
    pub fn complete_io(&mut self, tick: u64, knobs: &Knobs, trace: &mut Trace) -> bool {
        let mut progress = false;
        for volume in [Volume::Log, Volume::State] {
            loop {
                let Some(replica) = self.replica.as_mut() else { return progress };
                let target = &mut self.volumes[volume_index(volume)];
                let Some((issued, pending)) = target.storage.pop_due(tick, &mut target.faults.ledger) else { break };
                let opening = opening(replica, volume);
                let (storage, mut cx) = target.parts(trace, knobs, tick, opening);
                let result = storage.complete(issued, &pending, &mut cx);
                replica.complete(volume, IoCompletion { token: pending.token(), result });
                progress = true;
            }
        }
        progress
    }

    pub fn ledger(&self) -> FaultLedger {
        let mut ledger = FaultLedger::default();
        for volume in &self.volumes {
            ledger.merge(&volume.faults.ledger);
        }
        ledger
    }
}
