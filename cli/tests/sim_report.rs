//! `quill sim-report`: the merged totals of N shards equal the unsharded run of the same seeds,
//! and failing seeds come out with their replay commands.

use std::process::Command;

use serde_json::Value;

fn quill(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quill")).args(arguments).output().expect("run quill");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The swarm's JSON summary on seeds 120..129, whole or one shard of three.
fn swarm(shard: Option<&str>) -> (i32, String) {
    let mut arguments = vec!["sim", "--seeds", "9", "--start", "120", "--ops", "5000", "--json", "--jobs", "1"];
    arguments.extend(["--family", "standard", "--plant", "ack-before-sync"]);
    if let Some(shard) = shard {
        arguments.extend(["--shard", shard]);
    }
    quill(&arguments)
}

/// Everything but the timings, which differ from run to run.
fn without_timings(mut summary: Value) -> Value {
    let object = summary.as_object_mut().expect("an object");
    object.remove("elapsed_s");
    object.remove("ops_per_s");
    summary
}

#[test]
fn merged_shards_equal_the_whole_swarm() {
    let (whole_code, whole) = swarm(None);
    let whole: Value = serde_json::from_str(whole.trim()).expect("the whole swarm's JSON");
    assert_eq!(whole_code, 1, "seeds 120, 121, 126 and 127 fail with the planted bug");
    let directory = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for index in 0..3 {
        let (_, text) = swarm(Some(&format!("{index}/3")));
        let file = directory.path().join(format!("shard-{index}.json"));
        std::fs::write(&file, text).expect("write the shard's report");
        files.push(file.to_str().expect("UTF-8 path").to_string());
    }
    let mut arguments = vec!["sim-report", "--json"];
    arguments.extend(files.iter().map(String::as_str));
    let (code, merged) = quill(&arguments);
    assert_eq!(code, 1, "a failing seed in any shard fails the merge");
    let merged: Value = serde_json::from_str(merged.trim()).expect("the merged JSON");
    assert_eq!(without_timings(merged.clone()), without_timings(whole.clone()));
    assert_eq!(merged["seeds_run"], 9);
    let failed = merged["failed_seeds"].as_array().expect("failing seeds");
    let seeds: Vec<u64> = failed.iter().map(|seed| seed["seed"].as_u64().expect("a seed")).collect();
    assert_eq!(seeds, [120, 121, 126, 127]);
    assert!(failed[0]["replay"].as_str().expect("a replay").starts_with("quill replay --seed 120 --ops 5000"));

    let mut arguments = vec!["sim-report"];
    arguments.extend(files.iter().map(String::as_str));
    let (_, human) = quill(&arguments);
    assert!(human.contains("FAILED seed 120") && human.contains("replay: quill replay --seed 120"), "{human}");
}

#[test]
fn a_file_that_is_not_a_summary_is_a_usage_error() {
    let directory = tempfile::tempdir().expect("temp dir");
    let file = directory.path().join("notes.json");
    std::fs::write(&file, "{\"hello\": 1}\n").expect("write");
    let (code, _) = quill(&["sim-report", file.to_str().expect("UTF-8 path")]);
    assert_eq!(code, 2);
}
