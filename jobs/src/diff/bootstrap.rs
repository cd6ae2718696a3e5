//! The paired bootstrap: a confidence interval for the mean of B − A over
//! the documents both runs scored, from resamples of those documents drawn
//! with replacement by a seeded RNG. Pairing removes the variation between
//! documents (an easy question is easy for both runs), so the interval is
//! far narrower than one built from the two runs' separate errors.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// Above this many random draws for one interval (resamples × documents
/// whose score changed), the bootstrap gives way to the normal interval of
/// the mean difference, which it converges to at that size anyway.
pub const BOOTSTRAP_MAX_DRAWS: u64 = 20_000_000;

/// How an interval was computed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CiMethod {
    /// Percentile interval of the resampled mean differences.
    Bootstrap,
    /// Mean difference ± z × its standard error (large runs).
    Normal,
}

/// A confidence interval for the mean of `diffs`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub method: CiMethod,
}

impl Interval {
    /// Significant: the interval leaves 0 out.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The `confidence` (e.g. 0.95) interval for the mean of the paired
/// differences `diffs` from `resamples` resamples seeded by `seed`; none
/// for fewer than two documents.
///
/// Only documents whose score changed move a resample's mean, and between
/// two runs of one eval they are few. So rather than drawing every one of
/// the n documents of a resample, each resample draws how many of its n
/// draws land on a changed document (the gaps between such draws are
/// geometric) and which changed document each one is: the same
/// distribution as drawing all n, at a cost of the changed documents only.
pub fn paired_interval(
    diffs: &[f32],
    confidence: f64,
    resamples: u32,
    seed: u64,
) -> Option<Interval> {
    let n = diffs.len();
    if n < 2 || resamples == 0 {
        return None;
    }
    let alpha = 1.0 - confidence;
    let changed: Vec<f32> = diffs.iter().copied().filter(|&d| d != 0.0).collect();
    let k = changed.len();
    if k as u64 * u64::from(resamples) > BOOTSTRAP_MAX_DRAWS {
        return Some(normal_interval(diffs, alpha));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // ln of the chance that one draw misses every changed document.
    let ln_miss = (-(k as f64 / n as f64)).ln_1p();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut sum = 0.0;
            if k == 0 {
                return 0.0;
            }
            if k == n {
                for _ in 0..n {
                    sum += f64::from(changed[pick(&mut rng, k)]);
                }
                return sum / n as f64;
            }
            // `drawn` draws of the n are done; the next hit of a changed
            // document comes after a geometric number of misses.
            let mut drawn = 0usize;
            loop {
                // u in (0, 1] and 0 < k < n: `misses` is a number >= 0.
                let u = 1.0 - rng.random::<f64>();
                let misses = (u.ln() / ln_miss).floor();
                if misses >= (n - drawn) as f64 {
                    break;
                }
                drawn += misses as usize + 1;
                sum += f64::from(changed[pick(&mut rng, k)]);
            }
            sum / n as f64
        })
        .collect();
    means.sort_unstable_by(f64::total_cmp);
    Some(Interval {
        low: quantile(&means, alpha / 2.0),
        high: quantile(&means, 1.0 - alpha / 2.0),
        method: CiMethod::Bootstrap,
    })
}

/// A uniform index below `k` by multiply-shift: its bias, at most k/2^64,
/// is far below anything a bootstrap can see, and it is cheaper than
/// rejection sampling in the debug builds Shardline is often run from.
fn pick(rng: &mut StdRng, k: usize) -> usize {
    ((u128::from(rng.next_u64()) * k as u128) >> 64) as usize
}

/// The `q` quantile of sorted `values`, interpolated between neighbours.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

fn normal_interval(diffs: &[f32], alpha: f64) -> Interval {
    let n = diffs.len() as f64;
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / n;
    let var = diffs
        .iter()
        .map(|&d| (f64::from(d) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    let half = normal_quantile(1.0 - alpha / 2.0) * (var / n).sqrt();
    Interval {
        low: mean - half,
        high: mean + half,
        method: CiMethod::Normal,
    }
}

/// The standard normal distribution's `p` quantile (0 < p < 1), by
/// Acklam's rational approximation (relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_are_the_known_ones() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.995) - 2.575_829).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-5);
    }

    #[test]
    fn the_interval_is_seeded_and_brackets_the_mean() {
        let diffs: Vec<f32> = (0..500)
            .map(|i| if i % 5 == 0 { -1.0 } else { 0.0 })
            .collect();
        let a = paired_interval(&diffs, 0.95, 2000, 7).unwrap();
        assert_eq!(a, paired_interval(&diffs, 0.95, 2000, 7).unwrap());
        assert_eq!(a.method, CiMethod::Bootstrap);
        assert!(a.low < -0.2 && -0.2 < a.high, "{a:?}");
        assert!(a.excludes_zero());
        // Close to the normal interval at this size.
        let normal = normal_interval(&diffs, 0.05);
        assert!((a.low - normal.low).abs() < 0.01, "{a:?} vs {normal:?}");
        assert!((a.high - normal.high).abs() < 0.01, "{a:?} vs {normal:?}");
        let wider = paired_interval(&diffs, 0.99, 2000, 7).unwrap();
        assert!(wider.low < a.low && wider.high > a.high);
    }

    #[test]
    fn skipping_unchanged_documents_draws_the_same_distribution() {
        // 2% changed: the skipping path. Its interval must match both the
        // normal one and, at every document changed, the plain path's.
        let sparse: Vec<f32> = (0..5000)
            .map(|i| match i % 100 {
                0 => -1.0,
                1 => 1.0,
                2 | 3 => -1.0,
                _ => 0.0,
            })
            .collect();
        let a = paired_interval(&sparse, 0.95, 4000, 3).unwrap();
        let normal = normal_interval(&sparse, 0.05);
        assert!((a.low - normal.low).abs() < 0.001, "{a:?} vs {normal:?}");
        assert!((a.high - normal.high).abs() < 0.001, "{a:?} vs {normal:?}");
        // Every document changed (a graded metric): plain draws.
        let dense: Vec<f32> = (0..2000).map(|i| (i % 7) as f32 / 10.0 - 0.35).collect();
        let d = paired_interval(&dense, 0.95, 2000, 3).unwrap();
        let normal = normal_interval(&dense, 0.05);
        assert!((d.low - normal.low).abs() < 0.002, "{d:?} vs {normal:?}");
        assert!((d.high - normal.high).abs() < 0.002, "{d:?} vs {normal:?}");
        // Too many draws for one interval: the normal one, said so.
        let many: Vec<f32> = (0..20_001)
            .map(|i| if i % 2 == 0 { 1.0 } else { -0.5 })
            .collect();
        let m = paired_interval(&many, 0.95, 1000, 3).unwrap();
        assert_eq!(m.method, CiMethod::Normal);
    }

    #[test]
    fn no_change_is_not_significant_and_one_document_has_no_interval() {
        let same = paired_interval(&[0.0; 50], 0.95, 1000, 1).unwrap();
        assert_eq!((same.low, same.high), (0.0, 0.0));
        assert!(!same.excludes_zero());
        assert_eq!(paired_interval(&[1.0], 0.95, 1000, 1), None);
    }
}
