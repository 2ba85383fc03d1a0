//! Swarm testing: every seed draws its own knob settings (fault rates, clients, pipeline depth,
//! operation mix, key skew, value sizes, cache size), so a swarm explores far more combinations
//! than one fixed configuration would.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How hard the swarm injects faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FaultLevel {
    None,
    Default,
    Heavy,
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(text: &str) -> Result<Family, String> {
        Family::ALL.into_iter().find(|family| family.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Family::ALL.iter().map(|family| family.name()).collect();
            format!("unknown family '{text}' (one of: {})", names.join(", "))
        })
    }
}

impl std::str::FromStr for FaultLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<FaultLevel, String> {
        match text {
            "none" => Ok(FaultLevel::None),
            "default" => Ok(FaultLevel::Default),
            "heavy" => Ok(FaultLevel::Heavy),
            other => Err(format!("unknown fault level '{other}' (none, default, heavy)")),
        }
    }
}

/// The operations of the workload's mix, by their index in [`Knobs::mix`].
pub mod op {
    pub const SET: usize = 0;
    pub const GET: usize = 1;
    pub const DEL: usize = 2;
    pub const MSET: usize = 3;
    pub const MGET: usize = 4;
    pub const EXISTS: usize = 5;
    pub const STRLEN: usize = 6;
    pub const INCR: usize = 7;
    pub const APPEND: usize = 8;
    pub const FLUSHALL: usize = 9;
    pub const COUNT: usize = 10;
}

/// Probabilities are per I/O (or per tick for crashes and bit rot), in parts per million.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Knobs {
    pub clients: usize,
    pub pipeline_depth: usize,
    pub keys: u64,
    /// 0: uniform; larger: more skewed towards low key numbers.
    pub key_skew: u32,
    /// Operation weights, indexed by the [`op`] constants.
    pub mix: [u32; op::COUNT],
    pub value_bytes_small_max: usize,
    /// Parts per million of values that are large (up to several blocks).
    pub value_large_ppm: u32,
    pub value_bytes_large_max: usize,
    pub cache_bytes: usize,
    pub queue_depth: usize,
    /// The engine's per-client limit on queued commands (small in some seeds, so refusals happen).
    pub client_pipeline_max: usize,
    /// The engine's value limit: small in some seeds, so large values and long appends are refused.
    pub value_bytes_max: usize,
    pub volume_blocks: u64,
    pub batch_blocks_max: u32,
    /// Compaction's chunk, checkpoint slots and interval, and space target: tiny, so that
    /// compaction, wrap-around, a full disk and checkpoints happen in most seeds.
    pub compaction_chunk_blocks: u32,
    pub compaction_batch_percent: u32,
    /// Chunks per tail advance (drawn last, so older seeds keep their other draws).
    pub compaction_chunks_per_advance: u32,
    pub space_amplification_percent: u32,
    pub checkpoint_slot_blocks: u32,
    pub checkpoint_interval_blocks: u64,
    /// DEL is as frequent as SET.
    pub delete_heavy: bool,
    pub read_latency_ticks_max: u64,
    pub write_latency_ticks_max: u64,
    pub read_error_ppm: u32,
    pub write_error_ppm: u32,
    pub sync_error_ppm: u32,
    pub misdirect_ppm: u32,
    pub bit_flip_per_tick_ppm: u32,
    pub crash_per_tick_ppm: u32,
    pub crashes_max: u32,
    /// On a crash, the chance (ppm) an unsynced write survives whole, and that it tears.
    pub crash_survive_ppm: u32,
    /// Clients speak RESP over simulated connections (split, delayed, cut) instead of handing
    /// requests to the engine directly.
    pub network: bool,
    /// Commit with one durable (O_DSYNC) write per batch instead of a write and a sync.
    pub write_through: bool,
    pub disconnect_per_tick_ppm: u32,
    pub crash_tear_ppm: u32,
    /// The seed's family (drawn from its own stream, so a standard seed's other draws are what
    /// they were before families existed).
    pub family: Family,
    /// The engine runs with the production defaults for the volume's size (`Config::
    /// for_volume_bytes` and what the real drivers set), not with drawn engine knobs.
    pub production_config: bool,
    /// Full-disk cycles: every value has this size, the key space is larger than the log, and the
    /// workload fills the log, deletes this share of the keys (percent), and fills it again.
    pub fill_value_bytes: usize,
    pub drain_percent: u32,
    /// The volume is formatted over an older volume's image (see aging.rs).
    pub stale_image: bool,
    /// Format 3: every batch also goes to a mirror slot (9 seeds in 10; the rest run format 2).
    pub mirrored: bool,
    /// The engine publishes its cache (`Config::publish_cache`, as `Db` runs it) and clients read
    /// half their GETs from the published copy, as `Db::get` does on the caller's thread.
    pub publish_cache: bool,
    /// Percent of requests on shared keys (runner/isolation.rs; 0: none).
    pub isolation_percent: u32,
    /// The index's room for keys (`Config::index_bytes_max`): the production bound, or (1 seed
    /// in 8, not production) under 2 KiB (3 to 100 keys), so that writes meet `OOM index full`.
    pub index_bytes_max: u64,
    /// Batches in flight at once (`Config::commit_pipeline_depth`): 2, the default, in three
    /// seeds of four; 1 in the rest. The volume bounds it (unmirrored volumes commit one at a
    /// time).
    pub commit_pipeline_depth: u32,
    /// Compaction reads its chunk in pieces of this many blocks (`Config::
    /// compaction_read_piece_blocks`): 1 up to the chunk in half the seeds, so a chunk takes
    /// several pieces with two in flight; the default in the rest.
    pub compaction_read_piece_blocks: u32,
    /// Records of at most a block start on a fresh block rather than cross one (`Config::
    /// small_records_whole`, format 7): the default in three seeds of four; in the rest only a
    /// record's fixed header is kept whole, so padding is rare and small.
    pub small_records_whole: bool,
    /// Index partitions (`Config::index_partitions`): 1 to 4.
    pub index_partitions: u32,
    /// Recovery hands the partitions out (`Config::hand_out_index_work`), and they come back
    /// late and out of order: half the seeds.
    pub hand_out_index_work: bool,
    /// With hand-out: records a partition collects before it goes (`Config::
    /// index_work_records_min`, 1 to 512, so small logs hand partitions out mid-scan) and the
    /// backlog that pauses the scan (`index_backlog_records_max`, 1 to 2,048).
    pub index_work_records_min: usize,
    pub index_backlog_records_max: usize,
}

/// Seed families: each stresses one mechanism the standard mix reaches rarely or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// The drawn knobs above, nothing more.
    Standard,
    /// `Config::for_volume_bytes` for a volume of 1 to 16 MiB, as `quill serve` and `Db` run it.
    Production,
    /// Fill the log until writes meet the disk-full error, delete back to a fraction, refill,
    /// across crashes; writes must succeed again once deletes have freed the space.
    FullDisk,
    /// Half the operations on client-owned keys at the edges of their domains: counters near
    /// `i64::MAX`/`MIN`, non-integers, empty keys and values, limits and one byte over.
    ValueDomains,
    /// A tiny ring (9–13 batches), one value size (often a whole number of blocks per batch),
    /// few keys: wraps at every block position, stale records of earlier laps at the offsets of
    /// live ones, the head a block from the tail, checkpoints due while the log is full.
    RingEdge,
    /// Most operations on a few keys every client shares: single-key commands checked for
    /// linearizability, multi-key commands and EXECs over a group of keys as one object, and
    /// list-append transactions checked Elle-style (runner/isolation.rs). Half on production
    /// configurations.
    Isolation,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Standard,
        Family::Production,
        Family::FullDisk,
        Family::ValueDomains,
        Family::RingEdge,
        Family::Isolation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Standard => "standard",
            Family::Production => "production",
            Family::FullDisk => "full_disk",
            Family::ValueDomains => "value_domains",
            Family::RingEdge => "ring_edge",
            Family::Isolation => "isolation",
        }
    }
}

/// The engine's value limit in most seeds: above every value the workload makes.
pub const VALUE_BYTES_MAX_DEFAULT: usize = 64 * 1024;

fn chance(rng: &mut ChaCha8Rng, ppm: u32) -> bool {
    rng.gen_range(0..1_000_000) < ppm
}

impl Knobs {
    pub fn draw(rng: &mut ChaCha8Rng, level: FaultLevel) -> Knobs {
        let mut mix = [
            rng.gen_range(1..40),
            rng.gen_range(1..40),
            rng.gen_range(0..10),
            rng.gen_range(0..6),
            rng.gen_range(0..6),
            rng.gen_range(0..4),
            rng.gen_range(0..4),
            rng.gen_range(0..8),
            rng.gen_range(0..8),
            0,
        ];
        if chance(rng, 200_000) {
            mix[op::FLUSHALL] = 1; // rarely, in some seeds
        }
        // A fifth of the seeds delete as often as they set: tombstones everywhere, which
        // compaction must keep until no older record of their key remains.
        let delete_heavy = chance(rng, 200_000);
        if delete_heavy {
            mix[op::DEL] = mix[op::SET] + rng.gen_range(0..10);
        }
        let large = chance(rng, 500_000);
        let batch_blocks_max = rng.gen_range(4..=32);
        // Most volumes are a few dozen batches: the log wraps many times and compaction runs all
        // the time; some are small enough to fill (writes meet the disk-full error, reads go on).
        let volume_blocks = match rng.gen_range(0..10) {
            0..=3 => u64::from(batch_blocks_max) * rng.gen_range(14..40),
            4..=7 => u64::from(batch_blocks_max) * rng.gen_range(40..200),
            _ => rng.gen_range(2_000..12_000),
        };
        let mut knobs = Knobs {
            clients: rng.gen_range(1..=12),
            pipeline_depth: rng.gen_range(1..=8),
            keys: [4, 16, 64, 256, 2000][rng.gen_range(0..5)],
            key_skew: rng.gen_range(0..4),
            mix,
            value_bytes_small_max: [0, 8, 64, 300][rng.gen_range(0..4)],
            value_large_ppm: if large { rng.gen_range(1_000..100_000) } else { 0 },
            value_bytes_large_max: rng.gen_range(4096..=3 * 4096 + 100),
            cache_bytes: [0, 2048, 64 * 1024, 16 << 20][rng.gen_range(0..4)],
            queue_depth: rng.gen_range(1..=64),
            client_pipeline_max: if chance(rng, 250_000) { rng.gen_range(1..=8) } else { 4096 },
            value_bytes_max: if chance(rng, 250_000) { rng.gen_range(256..4096) } else { VALUE_BYTES_MAX_DEFAULT },
            volume_blocks,
            batch_blocks_max,
            compaction_chunk_blocks: batch_blocks_max * rng.gen_range(1..=4),
            compaction_batch_percent: rng.gen_range(10..=90),
            compaction_chunks_per_advance: 1,
            space_amplification_percent: rng.gen_range(120..=300),
            checkpoint_slot_blocks: if chance(rng, 300_000) {
                0
            } else {
                rng.gen_range(1..=(volume_blocks / 8).min(64)) as u32
            },
            checkpoint_interval_blocks: rng.gen_range(8..=256),
            delete_heavy,
            read_latency_ticks_max: rng.gen_range(0..20),
            write_latency_ticks_max: rng.gen_range(0..60),
            read_error_ppm: 0,
            write_error_ppm: 0,
            sync_error_ppm: 0,
            misdirect_ppm: 0,
            bit_flip_per_tick_ppm: 0,
            crash_per_tick_ppm: 0,
            crashes_max: 0,
            crash_survive_ppm: rng.gen_range(0..400_000),
            crash_tear_ppm: rng.gen_range(100_000..600_000),
            network: chance(rng, 500_000),
            disconnect_per_tick_ppm: 0,
            write_through: chance(rng, 500_000),
            family: Family::Standard,
            production_config: false,
            fill_value_bytes: 0,
            drain_percent: 0,
            stale_image: false,
            mirrored: true,
            publish_cache: false,
            isolation_percent: 0,
            index_bytes_max: quill_core::engine::INDEX_BYTES_LIMIT,
            commit_pipeline_depth: 2,
            compaction_read_piece_blocks: 16,
            small_records_whole: true,
            index_partitions: 1,
            hand_out_index_work: false,
            index_work_records_min: 8192,
            index_backlog_records_max: 32768,
        };
        // A value (an APPEND's result included) must fit one batch: cap the engine's limit.
        let batch_payload_bytes = knobs.batch_blocks_max as usize * 4096 - 64;
        knobs.value_bytes_max = knobs.value_bytes_max.min(batch_payload_bytes - 4096);
        knobs.draw_faults(rng, level);
        knobs.compaction_chunks_per_advance = rng.gen_range(1..=4);
        knobs.commit_pipeline_depth = if chance(rng, 750_000) { 2 } else { 1 };
        if chance(rng, 500_000) {
            knobs.compaction_read_piece_blocks = rng.gen_range(1..=knobs.compaction_chunk_blocks.max(1));
        }
        knobs.small_records_whole = chance(rng, 750_000);
        knobs.index_partitions = rng.gen_range(1..=4);
        knobs.hand_out_index_work = chance(rng, 500_000);
        knobs.index_work_records_min = rng.gen_range(1..=512);
        knobs.index_backlog_records_max = rng.gen_range(1..=2048);
        knobs
    }

    fn draw_faults(&mut self, rng: &mut ChaCha8Rng, level: FaultLevel) {
        let scale = match level {
            FaultLevel::None => return,
            FaultLevel::Default => 1,
            FaultLevel::Heavy => 5,
        };
        // Each fault kind is off in some seeds so that the others get long runs.
        let mut rate =
            |on_ppm: u32, max_ppm: u32| if chance(rng, on_ppm) { rng.gen_range(0..max_ppm * scale) } else { 0 };
        self.read_error_ppm = rate(500_000, 4_000);
        self.write_error_ppm = rate(300_000, 1_500);
        self.sync_error_ppm = rate(300_000, 1_500);
        self.misdirect_ppm = rate(200_000, 1_000);
        self.bit_flip_per_tick_ppm = rate(300_000, 150);
        self.crash_per_tick_ppm = rate(800_000, 600);
        self.disconnect_per_tick_ppm = rate(500_000, 2_000);
        self.crashes_max = rng.gen_range(1..=4) * scale;
    }
}
