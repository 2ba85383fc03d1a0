//! `quill sim --crash-images` and `quill replay --crash-image`: every legal crash image at a
//! seed's crash points, checked by recovery and the checker (see quill_sim::crash_images).

use std::time::Instant;

use quill_sim::crash_images::{self, CrashImageBounds, ImageCounts, SeedImages};
use quill_sim::{FaultLevel, SimOptions};
use serde_json::json;

/// The crash-image flags of `quill sim`.
#[derive(clap::Args, Clone)]
pub struct CrashImageArgs {
    /// Instead of the swarm: at each seed's crash points (before every sync or durable write
    /// completes), check every disk image a crash may leave, with faults otherwise off.
    #[arg(long)]
    pub crash_images: bool,
    /// Crash points checked per seed at most, spread evenly over the run.
    #[arg(long, default_value_t = 40)]
    pub crash_points_max: u64,
    /// Images checked per crash point at most; above it, images are sampled deterministically.
    #[arg(long, default_value_t = 64)]
    pub images_per_point: u64,
}

impl CrashImageArgs {
    fn bounds(&self) -> CrashImageBounds {
        CrashImageBounds { points_max: self.crash_points_max, images_per_point_max: self.images_per_point }
    }
}

/// Checks each seed's crash images; prints the counts and the first failing image's replay command.
pub fn run(runs: &[SimOptions], args: &CrashImageArgs, jobs: usize, json: bool) -> u8 {
    let started = Instant::now();
    let results: Vec<SeedImages> =
        runs.iter().map(|options| crash_images::check_seed(options, args.bounds(), jobs)).collect();
    let sum = |field: fn(&ImageCounts) -> u64| {
        results.iter().map(|result| field(&result.counts)).fold(0u64, u64::saturating_add)
    };
    let failed: Vec<&SeedImages> = results.iter().filter(|result| result.counts.images_failed > 0).collect();
    let first = results.iter().zip(runs).find_map(|(result, options)| {
        result.counts.first_failure.clone().map(|failure| (result.seed, options, failure))
    });
    // Point 0: the seed failed without any crash (its census run); replay that run.
    let replay = first.as_ref().map(|(_, options, failure)| {
        let image = match failure.point {
            0 => String::new(),
            point => format!(" --crash-image {point}:{} --images-per-point {}", failure.index, args.images_per_point),
        };
        let mut options = (*options).clone();
        options.faults = FaultLevel::None;
        format!("{}{image} --trace", quill_sim::reproduce_command(&options))
    });
    let summary = json!({
        "seeds_run": results.len(),
        "crash_points": sum(|result| result.points_total),
        "crash_points_checked": sum(|result| result.points_checked),
        "crash_points_exhaustive": sum(|result| result.points_exhaustive),
        "images_enumerable": sum(|result| result.images_enumerable),
        "images_checked": sum(|result| result.images_checked),
        "images_failed": sum(|result| result.images_failed),
        "seeds_failed": failed.iter().map(|result| result.seed).collect::<Vec<u64>>(),
        "first_failure": first.as_ref().map(|(seed, _, failure)| json!({
            "seed": seed, "point": failure.point, "image": failure.index, "what": failure.what,
        })),
        "replay": replay,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    if json {
        println!("{summary}");
    } else {
        println!(
            "{} seeds: {} crash points ({} checked, {} of them exhaustively), {} images checked of {} enumerable, {} failed in {:.1} s",
            summary["seeds_run"],
            summary["crash_points"],
            summary["crash_points_checked"],
            summary["crash_points_exhaustive"],
            summary["images_checked"],
            summary["images_enumerable"],
            summary["images_failed"],
            summary["elapsed_s"].as_f64().unwrap_or(0.0)
        );
        if let (Some((seed, _, failure)), Some(replay)) = (&first, &replay) {
            eprintln!(
                "first failing image: seed {seed}, crash point {}, image {}: {}",
                failure.point, failure.index, failure.what
            );
            eprintln!("  replay: {replay}");
        }
    }
    u8::from(!failed.is_empty())
}

/// `quill replay --crash-image POINT:INDEX`: the options that rerun that one image.
pub fn replay_options(base: &SimOptions, image: (u64, u64), images_per_point: u64) -> Result<SimOptions, String> {
    let points = crash_images::census(base)?;
    let mut options = crash_images::image_options(base, &points, image.0, image.1, images_per_point)?;
    options.keep_trace = base.keep_trace;
    Ok(options)
}

pub fn parse_image(text: &str) -> Result<(u64, u64), String> {
    let (point, index) = text.split_once(':').ok_or("expected POINT:IMAGE, for example 12:3")?;
    let point = point.parse().map_err(|_| "POINT must be a number")?;
    let index = index.parse().map_err(|_| "IMAGE must be a number")?;
    Ok((point, index))
}
