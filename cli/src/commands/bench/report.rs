//! The benchmark's report, for humans or as one JSON object.

use quill_core::EngineStats;
use serde_json::json;

use super::{BenchArgs, PhaseResult};

pub struct BenchReport {
    op: &'static str,
    driver: &'static str,
    direct: bool,
    keys: u64,
    value_size: usize,
    concurrency: usize,
    cache_bytes: Option<usize>,
    pub errors: u64,
    ops: u64,
    elapsed_s: f64,
    ops_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    mean_us: f64,
    stats: EngineStats,
    batch_records_avg: f64,
    /// Figures beyond the core set: space use, restarts.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BenchReport {
    pub fn new(args: &BenchArgs, driver: &'static str, direct: bool, phase: &PhaseResult, stats: &EngineStats) -> Self {
        let elapsed_s = phase.elapsed.as_secs_f64();
        let histogram = &phase.latency_us;
        let batch_records_avg = if stats.batches_committed == 0 {
            0.0
        } else {
            stats.records_committed as f64 / stats.batches_committed as f64
        };
        BenchReport {
            op: args.op.name(),
            driver,
            direct,
            keys: args.keys,
            value_size: args.value_size,
            concurrency: args.concurrency,
            cache_bytes: args.cache_bytes,
            errors: phase.errors,
            ops: phase.ops,
            elapsed_s,
            ops_per_s: if elapsed_s > 0.0 { phase.ops as f64 / elapsed_s } else { 0.0 },
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
            stats: stats.clone(),
            batch_records_avg,
            extra: serde_json::Map::new(),
        }
    }
}

pub fn print_report(report: &BenchReport, as_json: bool) {
    if as_json {
        println!("{}", to_json(report));
        return;
    }
    let stats = &report.stats;
    println!(
        "{} x{} ({} driver, O_DIRECT {}): {} ops in {:.2} s = {:.0} ops/s, {} errors",
        report.op,
        report.concurrency,
        report.driver,
        report.direct,
        report.ops,
        report.elapsed_s,
        report.ops_per_s,
        report.errors
    );
    println!(
        "latency us: p50 {} p99 {} p99.9 {} max {} mean {:.1}",
        report.p50_us, report.p99_us, report.p999_us, report.max_us, report.mean_us
    );
    println!(
        "I/O: {} reads ({} bytes), {} writes ({} bytes), {} syncs; reads in flight max {}",
        stats.reads, stats.bytes_read, stats.writes, stats.bytes_written, stats.syncs, stats.reads_in_flight_max
    );
    println!(
        "group commit: {} batches ({} sealed while another was in flight), {} records, {:.1} records per batch; checksum failures {}",
        stats.batches_committed,
        stats.batches_pipelined,
        stats.records_committed,
        report.batch_records_avg,
        stats.checksum_failures
    );
    for (name, value) in &report.extra {
        println!("{name}: {value}");
    }
}

fn to_json(report: &BenchReport) -> serde_json::Value {
    let stats = &report.stats;
    let mut value = json!({
        "op": report.op,
        "io": report.driver,
        "direct": report.direct,
        "keys": report.keys,
        "value_size": report.value_size,
        "concurrency": report.concurrency,
        "cache_bytes": report.cache_bytes,
        "ops": report.ops,
        "errors": report.errors,
        "elapsed_s": report.elapsed_s,
        "ops_per_s": report.ops_per_s,
        "p50_us": report.p50_us,
        "p99_us": report.p99_us,
        "p999_us": report.p999_us,
        "max_us": report.max_us,
        "mean_us": report.mean_us,
        "reads": stats.reads,
        "writes": stats.writes,
        "syncs": stats.syncs,
        "bytes_read": stats.bytes_read,
        "bytes_written": stats.bytes_written,
        "batches": stats.batches_committed,
        "batches_pipelined": stats.batches_pipelined,
        "records": stats.records_committed,
        "batch_records_avg": report.batch_records_avg,
        "payload_bytes_sealed": stats.payload_bytes_sealed,
        "record_padding_bytes": stats.record_padding_bytes,
        "reads_in_flight_max": stats.reads_in_flight_max,
        "checksum_failures": stats.checksum_failures,
    });
    if let Some(object) = value.as_object_mut() {
        object.extend(report.extra.clone());
    }
    value
}
