//! Crash images: the disk states a crash may leave at one point of a run.
//!
//! At a crash point, every write that is not durable yet (issued, completed but not covered by a
//! sync, or still in flight) independently lands whole, vanishes, or tears at 512-byte sectors.
//! The enumerated model gives each write of `n` sectors `n + 1` fates: its first `k` sectors new
//! and the rest old, for `k` in `0..=n` (`0`: vanished, `n`: landed whole), the way a device that
//! writes a request's sectors in order tears it. A point's images are the product of its writes'
//! fates. When that count passes the bound, images are sampled deterministically from the wider
//! model in which any subset of a write's sectors may be new (image 0 lands everything, image 1
//! drops everything), so the same (seed, point, index) is always the same image.
//!
//! Used twice: by the simulator (`quill sim --crash-images`, crash points at each sync boundary of
//! a seed) and by the checker of a real run's recorded I/O history (`history.rs`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which sectors of one write hold its new bytes (`true`) rather than the old ones.
pub type SectorMask = Vec<bool>;

/// The writes that are not durable at a crash point: their lengths in sectors, in issue order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashPoint {
    pub write_sectors: Vec<usize>,
}

impl CrashPoint {
    /// How many images the enumerated (in-order tear) model holds at this point, saturating.
    pub fn images_enumerable(&self) -> u64 {
        self.write_sectors.iter().fold(1u64, |count, sectors| count.saturating_mul(*sectors as u64 + 1))
    }

    /// How many images are checked with a bound of `images_max` per point.
    pub fn images_to_check(&self, images_max: u64) -> u64 {
        self.images_enumerable().min(images_max.max(1))
    }

    /// Whether every image of the enumerated model is checked under `images_max`.
    pub fn exhaustive(&self, images_max: u64) -> bool {
        self.images_enumerable() <= images_max.max(1)
    }

    /// Image `index` (below [`CrashPoint::images_to_check`]): one mask per write.
    pub fn image(&self, index: u64, images_max: u64, sample_seed: u64) -> Vec<SectorMask> {
        assert!(index < self.images_to_check(images_max), "image {index} beyond the point's images");
        if self.exhaustive(images_max) {
            return self.enumerated(index);
        }
        match index {
            0 => self.write_sectors.iter().map(|sectors| vec![true; *sectors]).collect(),
            1 => self.write_sectors.iter().map(|sectors| vec![false; *sectors]).collect(),
            _ => {
                let mut rng = ChaCha8Rng::seed_from_u64(sample_seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                self.write_sectors.iter().map(|sectors| sampled_mask(&mut rng, *sectors)).collect()
            }
        }
    }

    /// Mixed radix: digit `i` is how many leading sectors of write `i` are new.
    fn enumerated(&self, mut index: u64) -> Vec<SectorMask> {
        let masks = self
            .write_sectors
            .iter()
            .map(|sectors| {
                let radix = *sectors as u64 + 1;
                let new_sectors = (index % radix) as usize;
                index /= radix;
                (0..*sectors).map(|sector| sector < new_sectors).collect()
            })
            .collect();
        debug_assert_eq!(index, 0, "index within the enumerated images");
        masks
    }
}

/// One write's fate in the sampled model: a quarter each vanish, land, tear in order, tear at
/// random sectors.
fn sampled_mask(rng: &mut ChaCha8Rng, sectors: usize) -> SectorMask {
    match rng.gen_range(0..4) {
        0 => vec![false; sectors],
        1 => vec![true; sectors],
        2 => {
            let new_sectors = rng.gen_range(0..=sectors);
            (0..sectors).map(|sector| sector < new_sectors).collect()
        }
        _ => (0..sectors).map(|_| rng.gen_bool(0.5)).collect(),
    }
}

/// The crash points to check out of `total` (numbered from 1): all of them up to `points_max`,
/// else `points_max` of them spread evenly, the last one included.
pub fn choose_points(total: u64, points_max: u64) -> Vec<u64> {
    if total <= points_max {
        return (1..=total).collect();
    }
    let points_max = points_max.max(1);
    (1..=points_max).map(|rank| rank * total / points_max).collect()
}

/// The sampling seed of one crash point, so images are the same from run to run.
pub fn sample_seed(seed: u64, point: u64) -> u64 {
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ point.rotate_left(32) ^ 0x494d_4147_4553
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumeration_covers_every_in_order_tear_once() {
        let point = CrashPoint { write_sectors: vec![2, 1] };
        assert_eq!(point.images_enumerable(), 6);
        let images: Vec<_> = (0..6).map(|index| point.image(index, 100, 7)).collect();
        let mut unique = images.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 6, "every image distinct: {images:?}");
        assert!(images.contains(&vec![vec![false, false], vec![false]]));
        assert!(images.contains(&vec![vec![true, true], vec![true]]));
        assert!(images.contains(&vec![vec![true, false], vec![true]]));
    }

    #[test]
    fn sampling_is_deterministic_and_starts_with_the_extremes() {
        let point = CrashPoint { write_sectors: vec![64, 64, 8] };
        assert!(!point.exhaustive(50));
        assert_eq!(point.images_to_check(50), 50);
        assert_eq!(point.image(0, 50, 3), vec![vec![true; 64], vec![true; 64], vec![true; 8]]);
        assert_eq!(point.image(1, 50, 3), vec![vec![false; 64], vec![false; 64], vec![false; 8]]);
        assert_eq!(point.image(17, 50, 3), point.image(17, 50, 3));
        assert_ne!(point.image(17, 50, 3), point.image(18, 50, 3));
    }

    #[test]
    fn points_are_spread_and_include_the_last() {
        assert_eq!(choose_points(3, 10), vec![1, 2, 3]);
        assert_eq!(choose_points(100, 4), vec![25, 50, 75, 100]);
        assert!(choose_points(0, 4).is_empty());
    }
}

/// Crash points in a run: how many were met, the writes at each (with `SimOptions::census`),
/// and the image a chosen one leaves (`SimOptions::crash_image`).
#[derive(Default)]
pub struct CrashPlan {
    pub points_seen: u64,
    /// Crash points count until the clean restart before the final check (which then crashes
    /// on its own terms).
    pub closed: bool,
    pub points: Vec<CrashPoint>,
    /// The image the next crash leaves.
    pub forced_image: Option<Vec<SectorMask>>,
    pub image_taken: bool,
}

/// One crash, at crash point `point` (from 1), leaving the image `masks` describes.
#[derive(Clone, Debug)]
pub struct CrashImage {
    pub point: u64,
    pub masks: Vec<SectorMask>,
}
