//! Crash images of a real run: rebuilt from the I/O history a recording driver captured
//! (`quill_io_real::RecordingDriver`), each one recovered by the engine and checked against what
//! the application saw acknowledged.
//!
//! The history replays onto a simulated disk under the engine's contract: a write is durable
//! once complete if it was a durable write (O_DSYNC), else once a sync issued after its
//! completion completes. A crash point sits before each sync or durable write completes, and
//! at the end. Its images are those of `images.rs`. On each, the engine opens with the run's
//! configuration, and every key the application wrote is read back: it must hold its last
//! acknowledged value, or a value written after that one (in flight at the crash), or, if no
//! write to it was acknowledged yet, nothing. Keys must each have one writer at a time.

use std::collections::{BTreeMap, BTreeSet};

use quill_core::history::{HistoryEvent, IoHistory};
use quill_core::{Config, Engine, IoCompletion, IoKind, Reply, Request};

use crate::crash_images::{CrashImageBounds, ImageCounts, ImageFailure};
use crate::disk::SimDisk;
use crate::faults::FaultLedger;
use crate::images::{choose_points, sample_seed, CrashPoint};

/// The counts of one history's check.
#[derive(Clone, Debug, Default)]
pub struct HistoryReport {
    pub writes: u64,
    pub syncs: u64,
    pub acknowledged: u64,
    pub counts: ImageCounts,
}

/// The state at one crash point: the disk (durable image plus writes not durable) and, for each
/// key, the values a recovery may show (`None`: absent).
#[derive(Clone)]
struct PointState {
    disk: SimDisk,
    allowed: BTreeMap<Vec<u8>, Vec<Option<Vec<u8>>>>,
    /// The volume had finished opening: from here on, every image must open.
    opened: bool,
}

/// Replays `history` and checks the images at its crash points within `bounds`.
pub fn check_history(history: &IoHistory, bounds: CrashImageBounds) -> HistoryReport {
    let mut report = HistoryReport::default();
    let Some(config) = history.config.clone() else {
        report.counts.add_failure(failure(0, 0, "the history carries no engine configuration".into()));
        return report;
    };
    // Snapshots only of the points checked: a copy of the disk per point of a long history
    // would cost its size times the number of points.
    report.counts.points_total = count_points(history);
    let chosen: BTreeSet<u64> = choose_points(report.counts.points_total, bounds.points_max).into_iter().collect();
    let states = match point_states(history, &config, &mut report, &chosen) {
        Ok(states) => states,
        Err(what) => {
            report.counts.add_failure(failure(0, 0, what));
            return report;
        }
    };
    debug_assert_eq!(states.len(), chosen.len(), "a snapshot for every point chosen");
    for (point, state) in &states {
        check_point(state, *point, &config, bounds, &mut report);
    }
    report
}

fn failure(point: u64, index: u64, what: String) -> ImageFailure {
    ImageFailure { point, index, what }
}

/// Checks every image (or the sample) of one crash point.
fn check_point(state: &PointState, point: u64, config: &Config, bounds: CrashImageBounds, report: &mut HistoryReport) {
    let crash_point = CrashPoint { write_sectors: state.disk.unsynced_sectors() };
    report.counts.add_point(&crash_point, bounds.images_per_point_max);
    for index in 0..crash_point.images_to_check(bounds.images_per_point_max) {
        let masks = crash_point.image(index, bounds.images_per_point_max, sample_seed(0, point));
        let mut disk = state.disk.clone();
        disk.crash_with_masks(&masks, &mut FaultLedger::default());
        report.counts.images_checked += 1;
        if let Err(what) = recover_and_check(disk, config, state) {
            report.counts.add_failure(failure(point, index, what));
        }
    }
}

/// Crash points in `history`: one before each sync or durable write completes, and the end.
fn count_points(history: &IoHistory) -> u64 {
    let mut awaited = BTreeSet::new();
    let mut points = 1; // the end
    for event in &history.events {
        match event {
            HistoryEvent::Write { id, durable: true, .. } | HistoryEvent::Sync { id } => {
                awaited.insert(*id);
            }
            HistoryEvent::Completed { id, ok: true } => points += u64::from(awaited.remove(id)),
            _ => {}
        }
    }
    points
}

/// Walks the history, snapshotting the state before each `chosen` crash point (numbered from 1
/// as [`count_points`] counts them; the last one is the end).
fn point_states(
    history: &IoHistory,
    config: &Config,
    report: &mut HistoryReport,
    chosen: &BTreeSet<u64>,
) -> Result<Vec<(u64, PointState)>, String> {
    let mut point = 0u64;
    let mut state = PointState { disk: SimDisk::new(config.volume_blocks, 0), allowed: BTreeMap::new(), opened: false };
    let mut durable_writes = BTreeMap::new();
    let mut sync_covers: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut states = Vec::new();
    for event in &history.events {
        match event {
            HistoryEvent::Write { id, offset_bytes, data, durable } => {
                report.writes += 1;
                state.disk.begin_write(*id, *offset_bytes, *offset_bytes, data.clone());
                if *durable {
                    durable_writes.insert(*id, ());
                }
            }
            HistoryEvent::Sync { id } => {
                report.syncs += 1;
                sync_covers.insert(*id, state.disk.sync_snapshot());
            }
            HistoryEvent::Completed { id, ok: false } => {
                return Err(format!("the recorded run had a failed I/O (request {id}); nothing to check against"));
            }
            HistoryEvent::Completed { id, ok: true } => {
                let covers = sync_covers.remove(id);
                let durable = durable_writes.remove(id).is_some();
                if covers.is_some() || durable {
                    point += 1; // a crash point: just before this completes
                    if chosen.contains(&point) {
                        states.push((point, state.clone()));
                    }
                }
                match covers {
                    Some(covered) => state.disk.complete_sync(&covered),
                    None => {
                        state.disk.complete_write(*id);
                        if durable {
                            state.disk.complete_sync(&[*id]);
                        }
                    }
                }
            }
            HistoryEvent::Opened => state.opened = true,
            HistoryEvent::Invoked { key, value } => {
                state.allowed.entry(key.clone()).or_insert_with(|| vec![None]).push(Some(value.clone()));
            }
            HistoryEvent::Acknowledged { key, value } => {
                report.acknowledged += 1;
                acknowledge(&mut state.allowed, key, value)?;
            }
        }
    }
    point += 1;
    if chosen.contains(&point) {
        states.push((point, state));
    }
    Ok(states)
}

/// From an acknowledgement on, a key may only show that value or ones invoked after it.
fn acknowledge(allowed: &mut BTreeMap<Vec<u8>, Vec<Option<Vec<u8>>>>, key: &[u8], value: &[u8]) -> Result<(), String> {
    let values = allowed.get_mut(key).ok_or_else(|| format!("key {key:?} acknowledged but never invoked"))?;
    let position = values
        .iter()
        .position(|candidate| candidate.as_deref() == Some(value))
        .ok_or_else(|| format!("key {key:?}: an acknowledged value that was never invoked"))?;
    values.drain(..position);
    Ok(())
}

/// Opens the engine on `disk` and reads every key back.
fn recover_and_check(disk: SimDisk, config: &Config, state: &PointState) -> Result<(), String> {
    let mut machine = Machine { engine: Engine::open(config.clone()), disk, tick: 0 };
    machine.run_until(|engine| engine.is_ready() || engine.open_error().is_some())?;
    match machine.engine.open_error() {
        // A format that never finished: the next open refuses, and nothing was acknowledged.
        Some(_) if !state.opened => return Ok(()),
        Some(error) => return Err(format!("the open refused a crash image: {error}")),
        None => {}
    }
    for (key, values) in &state.allowed {
        machine.engine.submit(1, Request::Get { key: key.clone() });
        let reply = machine.reply()?;
        let got = match reply {
            Reply::Bulk(value) => value,
            other => return Err(format!("GET {key:?} answered {other:?}")),
        };
        if !values.contains(&got) {
            let got = got.map(|value| String::from_utf8_lossy(&value).into_owned());
            return Err(format!(
                "key {:?}: recovered {got:?}, allowed {} values",
                String::from_utf8_lossy(key),
                values.len()
            ));
        }
    }
    Ok(())
}

/// The engine over an in-memory disk with no faults, driven until a condition holds.
struct Machine {
    engine: Engine,
    disk: SimDisk,
    tick: u64,
}

/// Turns of the machine before it is judged stuck.
const TURNS_MAX: u64 = 1_000_000;

impl Machine {
    fn run_until(&mut self, done: impl Fn(&Engine) -> bool) -> Result<(), String> {
        for _ in 0..TURNS_MAX {
            if done(&self.engine) {
                return Ok(());
            }
            self.turn();
        }
        Err(format!("the engine made no progress in {TURNS_MAX} turns: {}", self.engine.debug_state()))
    }

    /// Performs every I/O the engine asked for, then advances time by one tick.
    fn turn(&mut self) {
        let mut requests = Vec::new();
        while let Some(request) = self.engine.poll_io() {
            requests.push(request);
        }
        for request in requests {
            let result = match &request.kind {
                IoKind::Read { offset_bytes, length_bytes } => {
                    Ok(self.disk.read(*offset_bytes, *length_bytes as usize))
                }
                IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
                    self.disk.begin_write(u64::MAX, *offset_bytes, *offset_bytes, data.clone());
                    self.disk.complete_write(u64::MAX);
                    self.disk.complete_sync(&[u64::MAX]);
                    Ok(Vec::new())
                }
                IoKind::Sync => Ok(Vec::new()),
            };
            self.engine.complete(IoCompletion { token: request.token, result });
        }
        // A recorded real run's configuration hands the index's partitions out during recovery.
        while let Some(mut work) = self.engine.poll_index_work() {
            work.run();
            self.engine.complete_index_work(work);
        }
        self.tick += 1;
        self.engine.tick(self.tick);
    }

    fn reply(&mut self) -> Result<Reply, String> {
        for _ in 0..TURNS_MAX {
            if let Some((_, reply)) = self.engine.poll_reply() {
                return Ok(reply);
            }
            self.turn();
        }
        Err(format!("a read got no reply in {TURNS_MAX} turns: {}", self.engine.debug_state()))
    }
}
