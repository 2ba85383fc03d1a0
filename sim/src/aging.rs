//! A disk that does not start clean. Some seeds format over the image an older volume left on
//! the same device: valid batches and records of another volume (another volume id), at the same
//! offsets and with the same sequence numbers the new volume will use, with keys of the same
//! names and lengths. Recovery, compaction's reads and value reads must never take them for the
//! new volume's (the checksum covers the volume id, location, epoch and sequence).

use quill_core::command::SetCondition;
use quill_core::{Config, Engine, IoCompletion, IoKind, Request};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::disk::SimDisk;
use crate::knobs::Knobs;
use crate::workload::register_key;

/// Inputs the old volume's engine gets at most (a bound on the loop; it settles far sooner).
const AGING_STEPS_MAX: u64 = 20_000;

/// Runs an older volume (id `volume_id`) on `disk` for a few hundred SETs, every I/O completing
/// at once and in order, and leaves its image behind, as a crash would (nothing unsynced).
pub fn age(disk: &mut SimDisk, config: &Config, knobs: &Knobs, volume_id: u64, rng: &mut ChaCha8Rng) {
    #[allow(unused_mut)]
    let mut config = config.clone();
    #[cfg(feature = "planted-bugs")]
    {
        config.planted_bug = None; // the old volume was written by a sound engine
    }
    let mut engine = Engine::format(config, volume_id);
    let sets = rng.gen_range(50..400u64);
    let mut write_id = u64::MAX / 2; // apart from the run's own write ids
    let mut sent = 0;
    for step in 1..=AGING_STEPS_MAX {
        if engine.is_ready() && sent < sets && engine.client_backlog(1) < 8 {
            let key = register_key(rng.gen_range(0..knobs.keys));
            let length = rng.gen_range(0..=knobs.value_bytes_small_max.max(knobs.fill_value_bytes));
            let mut value = format!("old.{sent}.").into_bytes();
            value.resize(length.max(value.len()), b'o');
            value.truncate(length);
            engine.submit(1, Request::Set { key, value, condition: SetCondition::Always });
            sent += 1;
        }
        while let Some(io) = engine.poll_io() {
            let result = perform(disk, &io.kind, &mut write_id);
            engine.complete(IoCompletion { token: io.token, result });
        }
        engine.tick(step);
        while engine.poll_reply().is_some() {}
        if sent == sets && engine.io_in_flight() == 0 && engine.client_backlog(1) == 0 {
            break;
        }
    }
}

/// One I/O of the old volume, completed at once.
fn perform(disk: &mut SimDisk, kind: &IoKind, write_id: &mut u64) -> Result<Vec<u8>, quill_core::IoError> {
    match kind {
        IoKind::Read { offset_bytes, length_bytes } => Ok(disk.read(*offset_bytes, *length_bytes as usize)),
        IoKind::Write { offset_bytes, data } | IoKind::WriteDurable { offset_bytes, data } => {
            *write_id += 1;
            disk.begin_write(*write_id, *offset_bytes, *offset_bytes, data.clone());
            disk.complete_write(*write_id);
            disk.complete_sync(&[*write_id]); // durable at once: the old volume had all the time
            Ok(Vec::new())
        }
        IoKind::Sync => Ok(Vec::new()),
    }
}
