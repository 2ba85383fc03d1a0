//! A read-only engine keeps running. After a failed write or sync (or a read-only open, as
//! `quill check` does) the engine must go on answering: reads from durable data only, writes
//! refused with `READONLY`, and no client left waiting. The runner keeps it serving for a drawn
//! stretch of ticks before the restart; the checker's usual rules judge every reply (a read that
//! showed a write never made durable is caught at the restart, when that write is gone), and at
//! the stretch's end every request sent long enough before must have been answered.

use rand::Rng;

use crate::runner::Sim;

/// The read-only stretch: until when the engine keeps serving, and since when it is read-only.
#[derive(Default)]
pub(crate) struct ReadOnlyStretch {
    /// It keeps serving until this tick, then restarts.
    pub until: Option<u64>,
    /// When it was first seen read-only (requests sent since are judged for liveness).
    pub since: u64,
}

/// The longest read-only stretch, in ticks.
const READ_ONLY_TICKS_MAX: u64 = 3_000;
/// A read-only engine answers every request within this many ticks (reads queue behind at most
/// a queue depth of others, each at most a read latency).
pub const READ_ONLY_ANSWER_TICKS_MAX: u64 = 1_500;

impl Sim {
    /// Whether the read-only stretch is over (it starts when first seen); checks liveness then.
    pub(crate) fn read_only_stretch_over(&mut self) -> bool {
        let until = match self.read_only.until {
            Some(until) => until,
            None => {
                let until = self.tick + self.faults.rng.gen_range(0..=READ_ONLY_TICKS_MAX);
                self.read_only.until = Some(until);
                self.read_only.since = self.tick;
                until
            }
        };
        if self.tick < until {
            return false;
        }
        self.check_read_only_liveness();
        true
    }

    fn check_read_only_liveness(&mut self) {
        // Reads queue behind at most a pipeline of others per client: slow reads get longer.
        let answer_ticks = READ_ONLY_ANSWER_TICKS_MAX + 20 * self.knobs.read_latency_ticks_max;
        let deadline = self.tick.saturating_sub(answer_ticks);
        let stuck = self.clients.iter().enumerate().find_map(|(client, state)| {
            let front = state.outstanding.front()?;
            let since_read_only = front.sent_tick >= self.read_only.since;
            (since_read_only && front.sent_tick < deadline && state.unsent.is_empty()).then_some((
                client,
                front.op_id,
                front.sent_tick,
            ))
        });
        if let Some((client, op_id, sent_tick)) = stuck {
            let got = format!(
                "client {client}'s op {op_id}, sent at tick {sent_tick}, unanswered at tick {}; engine: {}",
                self.tick,
                self.engine().debug_state()
            );
            self.checker.fail("liveness: a read-only engine left a request unanswered", b"", "an answer".into(), got);
        }
    }
}
