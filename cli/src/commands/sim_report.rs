//! `quill sim-report FILES…`: merges the `--json` summaries of a sharded swarm (one file per
//! `quill sim --shard I/N --json`) into the totals of the whole swarm, and lists every failing
//! seed with its replay command. Counts add up; lists concatenate; `elapsed_s` becomes the sum
//! over shards (machine time), and `ops_per_s` is recomputed from it.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::common::{EXIT_FAILURE, EXIT_USAGE};

#[derive(clap::Args)]
pub struct SimReportArgs {
    /// The shards' JSON summaries (`quill sim --shard I/N --json > shard-I.json`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the merged summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SimReportArgs) -> u8 {
    let mut total = Value::Object(Map::new());
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("quill sim-report: {}: {error}", path.display());
                return EXIT_FAILURE;
            }
        };
        match shard_summary(&text) {
            Ok(shard) => merge(&mut total, &shard),
            Err(what) => {
                eprintln!("quill sim-report: {}: {what}", path.display());
                return EXIT_USAGE;
            }
        }
    }
    finish(&mut total);
    print(&total, args.json);
    u8::from(total["seeds_failed"].as_u64().unwrap_or(0) > 0)
}

/// The summary in a shard's output: its last line that is a JSON object with `seeds_run`.
pub fn shard_summary(text: &str) -> Result<Value, String> {
    text.lines()
        .rev()
        .filter(|line| line.trim_start().starts_with('{'))
        .find_map(|line| serde_json::from_str::<Value>(line).ok().filter(|value| value.get("seeds_run").is_some()))
        .ok_or_else(|| "no `quill sim --json` summary in it".to_string())
}

/// Adds `shard` into `total`: numbers add, lists concatenate, objects merge key by key, flags
/// hold only if they hold everywhere.
pub fn merge(total: &mut Value, shard: &Value) {
    match (total, shard) {
        (Value::Object(total), Value::Object(shard)) => {
            for (key, value) in shard {
                if key == "swarm_trace_hash" {
                    let sum = add_hashes(total.get(key), value);
                    total.insert(key.clone(), sum);
                    continue;
                }
                match total.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        total.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(total), Value::Array(shard)) => total.extend(shard.iter().cloned()),
        (Value::Bool(total), Value::Bool(shard)) => *total = *total && *shard,
        (total @ Value::Number(_), Value::Number(shard)) => *total = add(total, shard),
        (total, shard) if total != shard => *total = Value::Null,
        _ => {}
    }
}

/// Swarm trace hashes are wrapping sums of per-seed digests (hex): shards add up.
fn add_hashes(total: Option<&Value>, shard: &Value) -> Value {
    let parse = |value: &Value| value.as_str().and_then(|text| u64::from_str_radix(text, 16).ok());
    match (total.map_or(Some(0), parse), parse(shard)) {
        (Some(total), Some(shard)) => Value::from(format!("{:016x}", total.wrapping_add(shard))),
        _ => Value::Null,
    }
}

fn add(total: &Value, shard: &serde_json::Number) -> Value {
    match (total.as_u64(), shard.as_u64()) {
        (Some(total), Some(shard)) => Value::from(total.saturating_add(shard)),
        _ => Value::from(total.as_f64().unwrap_or(0.0) + shard.as_f64().unwrap_or(0.0)),
    }
}

/// What does not add up: the throughput, the failing seeds' order, a single seed's trace hash.
fn finish(total: &mut Value) {
    let ops = total["ops"].as_f64().unwrap_or(0.0);
    let elapsed_s = total["elapsed_s"].as_f64().unwrap_or(0.0);
    total["ops_per_s"] = Value::from(ops / elapsed_s.max(1e-9));
    if let Some(failed) = total["failed_seeds"].as_array_mut() {
        failed.sort_by_key(|seed| (seed["seed"].as_u64(), seed["ops"].as_u64()));
    }
    if total["seeds_run"].as_u64() != Some(1) {
        total["trace_hash"] = Value::Null;
    }
}

fn print(total: &Value, json: bool) {
    if json {
        println!("{total}");
        return;
    }
    println!(
        "{} seeds, {} failed; {} ops; {} crashes; faults {} ({} detected); {:.1} s of machine time",
        total["seeds_run"],
        total["seeds_failed"],
        total["ops"],
        total["crashes"],
        total["faults_total"],
        total["faults_detected"],
        total["elapsed_s"].as_f64().unwrap_or(0.0)
    );
    for failed in total["failed_seeds"].as_array().into_iter().flatten() {
        let what = failed["what"].as_str().unwrap_or("a failure");
        println!("FAILED seed {}: {what}", failed["seed"]);
        println!("  replay: {}", failed["replay"].as_str().unwrap_or("(no replay command in the shard's report)"));
    }
}
