//! Seed families beyond the standard swarm, and the rules they need.
//!
//! - **Production**: the engine runs with `Config::for_volume_bytes` for a 1–16 MiB volume, with
//!   what the real drivers add (one durable write per commit), so the combination a user gets —
//!   batch size, chunk size, full-disk reserves, checkpoint slots — is among the swarm's.
//! - **Full disk**: constant-size values over a key space larger than the log; the workload fills
//!   the log until a SET meets `OOM`, deletes a share of the keys (or FLUSHALLs), and fills again,
//!   as many times as the operations allow, across crashes and restarts.
//!
//! The rule both need: a disk-full refusal must be explained by the volume's real state (the live
//! records do not fit, with the engine's reserves and compaction's slack) or by compaction halted
//! at injected damage. Otherwise deletes freed space the engine cannot use: a lock-up.

use quill_core::{Config, Request, BLOCK_BYTES};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::knobs::{op, Family, Knobs};
use crate::runner::Sim;
use crate::workload::register_key;

/// The volume sizes production seeds draw from.
const PRODUCTION_VOLUME_MIB: [u64; 5] = [1, 2, 4, 8, 16];
/// Full-disk seeds' value sizes: records from a tenth of a block to two blocks and more.
const FILL_VALUE_BYTES: [usize; 5] = [400, 1_000, 4_000, 4_096, 9_000];

/// The engine configuration a real driver gives a volume of `volume_bytes` (see io-real's
/// `config_for_volume`): the size's defaults and one durable write per commit.
pub fn production_config(volume_bytes: u64, hash_seed: u64) -> Config {
    let mut config = Config::for_volume_bytes(volume_bytes);
    config.write_through = true;
    config.hash_seed = hash_seed;
    // As io-real's `config_for_volume`: the index in one piece, filled in place.
    config.index_partitions = 1;
    config.hand_out_index_work = false;
    config
}

/// Where a seed stands in its fill, drain, refill cycle.
#[derive(Clone, Debug, Default)]
pub struct FillCycle {
    /// Deletes still to send in this drain (0: filling).
    pub deletes_left: u64,
    /// The next key to delete.
    pub cursor: u64,
    /// Drains begun (each after a SET met a full disk).
    pub drains: u64,
}

impl Knobs {
    /// Draws the seed's family and adjusts the knobs it needs.
    pub fn apply_family(&mut self, rng: &mut ChaCha8Rng, forced: Option<Family>) {
        let drawn = match rng.gen_range(0..100) {
            0..=39 => Family::Standard,
            40..=49 => Family::RingEdge,
            50..=59 => Family::ValueDomains,
            60..=79 => Family::Production,
            _ => Family::FullDisk,
        };
        self.family = forced.unwrap_or(drawn);
        match self.family {
            Family::Standard => {}
            Family::Production => self.use_production_config(rng),
            Family::FullDisk => self.fill_and_drain(rng),
            Family::ValueDomains => {
                // One owner per key needs its commands in order: no cut connections (a cut
                // client's queued commands still run, after its next ones), no FLUSHALL.
                self.disconnect_per_tick_ppm = 0;
                self.mix[op::FLUSHALL] = 0;
            }
            Family::RingEdge => self.tiny_ring(rng),
            Family::Isolation => {} // set up by `apply_isolation`, on its own stream
        }
        // Drawn last, so that the draws above are what they were before they existed.
        self.stale_image = rng.gen_bool(0.3);
        if !self.production_config {
            // The drawn log keeps its size; the mirror slots come on top.
            self.mirrored = rng.gen_range(0..10) != 0;
            self.volume_blocks += quill_core::format::superblock::mirror_blocks(
                quill_core::format::superblock::new_volume_mirror_slots(self.mirrored),
                self.batch_blocks_max,
            );
        }
    }

    /// Mirrors the production configuration in the knobs the checker reads.
    fn use_production_config(&mut self, rng: &mut ChaCha8Rng) {
        let volume_bytes = PRODUCTION_VOLUME_MIB[rng.gen_range(0..PRODUCTION_VOLUME_MIB.len())] << 20;
        let config = production_config(volume_bytes, 0);
        self.production_config = true;
        self.mirrored = config.mirror_batches;
        self.volume_blocks = config.volume_blocks;
        self.batch_blocks_max = config.batch_blocks_max;
        let mirror_blocks = quill_core::format::superblock::mirror_blocks(
            quill_core::format::superblock::new_volume_mirror_slots(config.mirror_batches),
            config.batch_blocks_max,
        );
        let log_blocks = config.volume_blocks - 2 * u64::from(config.checkpoint_slot_blocks) - mirror_blocks;
        let chunk_limit = u32::try_from(log_blocks / 16).unwrap_or(u32::MAX);
        self.compaction_chunk_blocks = config.compaction_chunk_blocks.min(chunk_limit).max(config.batch_blocks_max);
        self.compaction_batch_percent = config.compaction_batch_percent;
        self.compaction_chunks_per_advance = config.compaction_chunks_per_advance;
        self.space_amplification_percent = config.space_amplification_percent;
        self.checkpoint_slot_blocks = config.checkpoint_slot_blocks;
        self.checkpoint_interval_blocks = config.checkpoint_interval_blocks;
        self.value_bytes_max = config.value_bytes_max;
        self.cache_bytes = config.cache_bytes_max;
        self.queue_depth = config.queue_depth_max;
        self.client_pipeline_max = config.client_pipeline_max;
        self.write_through = config.write_through;
        self.commit_pipeline_depth = config.commit_pipeline_depth;
        self.compaction_read_piece_blocks = config.compaction_read_piece_blocks;
        self.small_records_whole = config.small_records_whole;
        self.index_partitions = config.index_partitions;
        self.hand_out_index_work = config.hand_out_index_work;
        self.index_work_records_min = config.index_work_records_min;
        self.index_backlog_records_max = config.index_backlog_records_max;
    }

    /// Constant values over more keys than the log holds; half the seeds on production
    /// configurations, half on the drawn (small) ones.
    fn fill_and_drain(&mut self, rng: &mut ChaCha8Rng) {
        if rng.gen_bool(0.5) {
            self.use_production_config(rng);
        } else {
            self.volume_blocks = u64::from(self.batch_blocks_max) * rng.gen_range(14..40);
            self.checkpoint_slot_blocks = self.checkpoint_slot_blocks.min((self.volume_blocks / 8) as u32);
        }
        let value_limit = self.value_bytes_max.min(Config::batch_payload_bytes_max(self.batch_blocks_max) / 2);
        self.fill_value_bytes = FILL_VALUE_BYTES[rng.gen_range(0..FILL_VALUE_BYTES.len())].min(value_limit);
        let record_bytes = (self.fill_value_bytes + 32) as u64;
        let log_bytes = self.volume_blocks * BLOCK_BYTES as u64;
        self.keys = (2 * log_bytes / record_bytes).max(16);
        self.key_skew = 0;
        self.drain_percent = rng.gen_range(30..=90);
        // SETs of registers only, and FLUSHALL (which drains some cycles).
        self.mix = [0; op::COUNT];
        self.mix[op::SET] = 1;
        self.mix[op::FLUSHALL] = 1;
    }
}

impl Knobs {
    /// The shared-key workload (isolation.rs), drawn on its own stream so a seed's other draws
    /// stay as they were: a family of its own (a quarter of the standard seeds become it, a third
    /// of those on production configurations, others with a cache small enough that reads go
    /// to disk), and mixed into a third of the standard, production and value-domain seeds.
    pub(crate) fn apply_isolation(&mut self, rng: &mut ChaCha8Rng) {
        let eligible = matches!(self.family, Family::Standard | Family::Production | Family::ValueDomains);
        if self.family == Family::Standard && rng.gen_ratio(1, 4) {
            self.family = Family::Isolation;
        }
        if self.family == Family::Isolation {
            if !self.production_config && rng.gen_ratio(1, 3) {
                self.use_production_config(rng);
            } else if !self.production_config && rng.gen_bool(0.8) {
                self.cache_bytes = rng.gen_range(0..16_384);
            }
            self.isolation_percent = rng.gen_range(40..=80);
        } else if eligible && rng.gen_ratio(1, 3) {
            self.isolation_percent = rng.gen_range(5..=15);
        }
        if self.isolation_percent > 0 {
            self.mix[op::FLUSHALL] = 0; // FLUSHALL is no operation of the shared-key models
        }
    }
}

impl Knobs {
    /// A ring of 9–13 batches (the least the engine's reserves allow is 8), compaction a batch
    /// at a time, small checkpoint slots due often, a handful of keys and one value size: often
    /// one that fills a whole number of blocks exactly (batch header, record header and key
    /// included), so batches end exactly at block edges and at the ring's end.
    fn tiny_ring(&mut self, rng: &mut ChaCha8Rng) {
        let batch_blocks = u64::from(self.batch_blocks_max);
        self.checkpoint_slot_blocks = rng.gen_range(0..=4);
        self.checkpoint_interval_blocks = rng.gen_range(4..=16);
        let ring_blocks = batch_blocks * rng.gen_range(9..14) + rng.gen_range(0..batch_blocks);
        self.volume_blocks =
            quill_core::format::LOG_START_BLOCK + 2 * u64::from(self.checkpoint_slot_blocks) + ring_blocks;
        self.compaction_chunk_blocks = self.batch_blocks_max;
        self.keys = [1, 2, 4, 8][rng.gen_range(0..4)];
        self.key_skew = 0;
        let whole_blocks = rng.gen_range(1..=self.batch_blocks_max.div_ceil(2)) as usize;
        let exact = whole_blocks * BLOCK_BYTES
            - quill_core::format::BATCH_HEADER_BYTES
            - quill_core::format::RECORD_HEADER_BYTES
            - 2; // keys k0..k7
        let sizes = [exact, exact + 1, exact - 1, rng.gen_range(0..300), rng.gen_range(0..3 * BLOCK_BYTES)];
        self.fill_value_bytes = sizes[rng.gen_range(0..sizes.len())].min(self.value_bytes_max).max(1);
        self.value_bytes_small_max = self.fill_value_bytes;
        self.value_large_ppm = 0;
        self.mix[op::MSET] = 0; // several values would not fit one small batch
                                // Failed syncs, often (with a write and a sync per commit; not with --faults none): the
                                // fsync-failure model meets a tiny ring that reuses what a lost write left.
        if self.crashes_max > 0 && !self.write_through && rng.gen_bool(0.5) {
            self.sync_error_ppm = rng.gen_range(2_000..10_000);
        }
        if rng.gen_bool(0.5) {
            // Slow reads in a fast ring: a value read is still in flight when compaction would
            // free its block and the head would reuse it (the tail must wait for such reads).
            self.read_latency_ticks_max = rng.gen_range(100..1_000);
        }
    }
}

impl Sim {
    /// The next request of a full-disk seed: a delete while draining, else a SET of a fresh
    /// value (with a GET now and then, so reads meet the full disk too).
    pub(crate) fn next_fill_request(&mut self, client: usize, op_id: u64) -> Request {
        let rng = &mut self.workload_rng;
        let keys = self.knobs.keys;
        if self.fill_cycle.deletes_left > 0 {
            if self.fill_cycle.deletes_left == keys {
                self.fill_cycle.deletes_left = 0;
                return Request::FlushAll;
            }
            let count = rng.gen_range(1..=4).min(self.fill_cycle.deletes_left);
            self.fill_cycle.deletes_left -= count;
            let first = self.fill_cycle.cursor;
            self.fill_cycle.cursor = (first + count) % keys;
            return Request::Del { keys: (first..first + count).map(|index| register_key(index % keys)).collect() };
        }
        let key = register_key(rng.gen_range(0..keys));
        if rng.gen_range(0..10) == 0 {
            return Request::Get { key };
        }
        let mut value = format!("{client}.{op_id}.").into_bytes();
        value.resize(self.knobs.fill_value_bytes.max(value.len()), b'f');
        value.truncate(self.knobs.fill_value_bytes);
        Request::Set { key, value, condition: quill_core::command::SetCondition::Always }
    }

    /// A SET met a full disk: start draining, unless a drain is under way.
    pub(crate) fn on_disk_full_reply(&mut self, request: &Request) {
        if self.knobs.family != Family::FullDisk || self.fill_cycle.deletes_left > 0 {
            return;
        }
        if matches!(request, Request::Set { .. }) {
            let keys = self.knobs.keys;
            self.fill_cycle.deletes_left = keys * u64::from(self.knobs.drain_percent) / 100;
            if self.workload_rng.gen_range(0..10) == 0 {
                self.fill_cycle.deletes_left = keys; // a FLUSHALL drain (see next_fill_request)
            }
            self.fill_cycle.cursor = self.workload_rng.gen_range(0..keys);
            self.fill_cycle.drains += 1;
        }
    }

    /// Whether a disk-full refusal is explained: the live records (an upper bound from the model)
    /// do not fit beside the engine's reserves and compaction's slack, or compaction halted at
    /// damage the faults explain.
    pub(crate) fn disk_full_explained(&self, invoked: u64, responded: u64, refused_bytes: u64) -> bool {
        if self.engine().compaction_halted().is_some() && self.compaction_halt_explained() {
            return true;
        }
        let knobs = &self.knobs;
        let block_bytes = BLOCK_BYTES as u64;
        let chunk_blocks = u64::from(knobs.compaction_chunk_blocks.max(knobs.batch_blocks_max));
        let slack_blocks = 2 * chunk_blocks + 5 * u64::from(knobs.batch_blocks_max);
        let log_blocks = self.disk.log_end_block - quill_core::format::LOG_START_BLOCK;
        let live_bytes =
            self.checker.live_record_bytes_upper(invoked, responded) + self.domain_live_bytes_upper() + refused_bytes;
        2 * live_bytes + slack_blocks * block_bytes > log_blocks * block_bytes
    }
}

impl Sim {
    /// An `OOM index full` refusal of `request` is explained when the seed's index limit is
    /// small and the keys that may be live, plus the request's keys, may fill it: the engine
    /// counts only durable live keys, a subset of those.
    pub(crate) fn index_full_explained(&self, request: &Request, invoked: u64, responded: u64) -> bool {
        let limit = self.knobs.index_bytes_max;
        // Every key ever written: the engine decided at one moment of the command's window, and
        // the checker prunes histories as it goes (seed 7655: keys deleted meanwhile had filled
        // the index when the SET ran).
        let _ = (invoked, responded);
        let may_hold = self.checker.ever_set_index_bytes() + self.domain_index_bytes_upper();
        let keys = crate::runner::written_keys(request);
        let largest_new_entry: u64 = keys.iter().map(|key| quill_core::engine::index_entry_bytes(key.len())).sum();
        limit < quill_core::engine::INDEX_BYTES_LIMIT && may_hold + largest_new_entry > limit
    }

    /// The numbers behind a disk-full judgement, for a violation's report.
    pub(crate) fn fullness_report(&self, invoked: u64, responded: u64) -> String {
        let space = self.engine().space();
        format!(
            "family {}, live bytes at most {} + {} in value-domain keys (engine: {}), log {} of {} bytes used, compaction {:?}, {} drains; engine: {}",
            self.knobs.family.name(),
            self.checker.live_record_bytes_upper(invoked, responded),
            self.domain_live_bytes_upper(),
            space.live_bytes,
            space.log_used_bytes,
            space.log_capacity_bytes,
            self.engine().compaction_state(),
            self.fill_cycle.drains,
            self.engine().debug_state(),
        )
    }
}
