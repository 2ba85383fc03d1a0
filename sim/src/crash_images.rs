//! `quill sim --crash-images`: every legal crash image at a seed's crash points.
//!
//! A census run of the seed (faults off) counts its crash points, one before each sync or
//! durable write completes, and notes the writes not durable at each. For each chosen point,
//! every image of the enumerated model (see `images.rs`) is checked, or a deterministic sample
//! when there are more than the bound: the seed runs again to that point, crashes leaving that
//! image, recovers, settles, restarts cleanly and reads every key; the checker judges it all, and
//! an open refused on a mere crash image is a failure too. Runs are deterministic, so a failing
//! image replays from (seed, ops, point, index, bound).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::checker::Violation;
pub use crate::images::CrashImage;
use crate::images::{choose_points, sample_seed, CrashPoint};
use crate::knobs::FaultLevel;
use crate::runner::{run_seed, SeedReport, SimOptions};

/// What to enumerate for each seed.
#[derive(Clone, Copy, Debug)]
pub struct CrashImageBounds {
    /// Crash points checked per seed at most (spread evenly over the run).
    pub points_max: u64,
    /// Images checked per crash point at most (sampled above it).
    pub images_per_point_max: u64,
}

/// The first image that failed.
#[derive(Clone, Debug)]
pub struct ImageFailure {
    pub point: u64,
    pub index: u64,
    pub what: String,
}

/// What a check of crash images covered and found (a seed's, or a recorded history's).
#[derive(Clone, Debug, Default)]
pub struct ImageCounts {
    pub points_total: u64,
    pub points_checked: u64,
    /// Points whose every enumerated image was checked (no sampling).
    pub points_exhaustive: u64,
    /// Images the enumerated model holds over the checked points (saturating).
    pub images_enumerable: u64,
    pub images_checked: u64,
    pub images_failed: u64,
    pub first_failure: Option<ImageFailure>,
}

impl ImageCounts {
    /// Counts a crash point taken for checking under `images_max` per point.
    pub fn add_point(&mut self, crash_point: &CrashPoint, images_max: u64) {
        self.points_checked += 1;
        self.points_exhaustive += u64::from(crash_point.exhaustive(images_max));
        self.images_enumerable = self.images_enumerable.saturating_add(crash_point.images_enumerable());
    }

    /// Counts a failed image; the first one is kept.
    pub fn add_failure(&mut self, failure: ImageFailure) {
        self.images_failed += 1;
        self.first_failure.get_or_insert(failure);
    }
}

/// One seed's counts.
#[derive(Clone, Debug, Default)]
pub struct SeedImages {
    pub seed: u64,
    pub counts: ImageCounts,
}

/// The options of a crash-image run: `base` (seed, ops, family, planted bug) with faults off.
fn base_options(base: &SimOptions) -> SimOptions {
    let mut options = base.clone();
    options.faults = FaultLevel::None;
    options.census = false;
    options.crash_image = None;
    options
}

/// The census: each crash point's writes not durable. `Err` if the plain run already fails.
pub fn census(base: &SimOptions) -> Result<Vec<CrashPoint>, String> {
    let mut options = base_options(base);
    options.census = true;
    let report = run_seed(&options);
    match image_verdict(&report) {
        Some(what) => Err(format!("the run without a crash failed: {what}")),
        None => Ok(report.crash_points),
    }
}

/// The options that replay image `index` of crash point `point`.
pub fn image_options(
    base: &SimOptions,
    points: &[CrashPoint],
    point: u64,
    index: u64,
    images_per_point_max: u64,
) -> Result<SimOptions, String> {
    let crash_point = usize::try_from(point)
        .ok()
        .and_then(|point| point.checked_sub(1))
        .and_then(|rank| points.get(rank))
        .ok_or_else(|| format!("the seed has {} crash points; there is no point {point}", points.len()))?;
    if index >= crash_point.images_to_check(images_per_point_max) {
        let count = crash_point.images_to_check(images_per_point_max);
        return Err(format!("crash point {point} has {count} images to check; there is no image {index}"));
    }
    let masks = crash_point.image(index, images_per_point_max, sample_seed(base.seed, point));
    let mut options = base_options(base);
    options.crash_image = Some(CrashImage { point, masks });
    Ok(options)
}

/// Why an image run failed, if it did: a violation, a refused open, or a crash never taken.
pub fn image_verdict(report: &SeedReport) -> Option<String> {
    if let Some(violation) = &report.violation {
        let Violation { what, key, expected, got, .. } = violation;
        return Some(format!("{what} (key {key:?}: expected {expected}, got {got})"));
    }
    report.stopped_by_detection.as_ref().map(|reason| format!("a crash image alone stopped the run: {reason}"))
}

/// Checks one seed's crash images on `jobs` threads.
pub fn check_seed(base: &SimOptions, bounds: CrashImageBounds, jobs: usize) -> SeedImages {
    let mut result = SeedImages { seed: base.seed, ..SeedImages::default() };
    let counts = &mut result.counts;
    let points = match census(base) {
        Ok(points) => points,
        Err(what) => {
            counts.add_failure(ImageFailure { point: 0, index: 0, what });
            return result;
        }
    };
    counts.points_total = points.len() as u64;
    let chosen = choose_points(counts.points_total, bounds.points_max);
    let work: Vec<(u64, u64)> = chosen
        .iter()
        .flat_map(|point| {
            let crash_point = &points[(*point - 1) as usize];
            (0..crash_point.images_to_check(bounds.images_per_point_max)).map(move |index| (*point, index))
        })
        .collect();
    for point in &chosen {
        counts.add_point(&points[(*point - 1) as usize], bounds.images_per_point_max);
    }
    let failures = run_images(base, &points, &work, bounds, jobs);
    counts.images_checked = work.len() as u64;
    counts.images_failed = failures.len() as u64;
    counts.first_failure = failures.into_iter().min_by_key(|failure| (failure.point, failure.index));
    result
}

/// Runs every (point, index) in `work`; returns the failures.
fn run_images(
    base: &SimOptions,
    points: &[CrashPoint],
    work: &[(u64, u64)],
    bounds: CrashImageBounds,
    jobs: usize,
) -> Vec<ImageFailure> {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let taken = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(point, index)) = work.get(taken) else { break };
                let what = match image_options(base, points, point, index, bounds.images_per_point_max) {
                    Err(what) => Some(what),
                    Ok(options) => {
                        let report = run_seed(&options);
                        let never =
                            (!report.crash_image_taken).then(|| "the rerun never reached its crash point".into());
                        image_verdict(&report).or(never)
                    }
                };
                if let Some(what) = what {
                    failures.lock().expect("no thread panics holding it").push(ImageFailure { point, index, what });
                }
            });
        }
    });
    failures.into_inner().expect("no thread panicked holding it")
}
