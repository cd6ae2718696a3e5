//! Token selection: greedy, temperature, top-k and top-p with a seeded
//! random generator per sequence, plus the log-softmax helpers scoring uses.
//!
//! Each sequence draws from its own generator seeded by (seed, sample
//! index), so a sample does not depend on what else is in the batch and a
//! rerun reproduces it.

use serde::{Deserialize, Serialize};

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// `0` (or below) picks the most likely token.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose
    /// probability reaches `top_p` (`1` keeps all).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (`0` keeps all).
    pub top_k: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 1e-6 || self.top_k == 1
    }
}

/// SplitMix64: tiny, fast, and with a fixed definition, so seeds give the
/// same samples across versions and platforms.
#[derive(Clone, Debug)]
pub struct SeqRng {
    state: u64,
}

impl SeqRng {
    /// The generator of sample `sample_index` of a request seeded `seed`.
    pub fn new(seed: u64, sample_index: u64) -> SeqRng {
        let mut r = SeqRng {
            state: seed ^ sample_index.wrapping_mul(0xD1B5_4A32_D192_ED03),
        };
        // Decorrelate neighbouring seeds.
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Index of the largest logit (the first one on ties, like `argmax` in
/// PyTorch).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// `log(sum(exp(logits)))`, in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

/// Log-probability of `token` under `logits`.
pub fn log_prob(logits: &[f32], token: u32) -> f64 {
    match logits.get(token as usize) {
        Some(&v) => v as f64 - log_sum_exp(logits),
        None => f64::NEG_INFINITY,
    }
}

/// Picks a token. `scratch` is reused between calls to avoid allocating.
pub fn sample(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut SeqRng,
    scratch: &mut Vec<(f32, u32)>,
) -> u32 {
    // Draw even when greedy so the stream position does not depend on the
    // parameters of earlier steps.
    let u = rng.next_f64();
    if params.is_greedy() || logits.is_empty() {
        return argmax(logits);
    }
    let inv_t = 1.0 / params.temperature;
    let v = logits.len();
    let top_k = if params.top_k == 0 || params.top_k >= v {
        v
    } else {
        params.top_k
    };
    let top_p = params.top_p.clamp(0.0, 1.0);

    scratch.clear();
    scratch.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
    // Highest logit first, lower id first on ties: a total order, so the
    // result is deterministic.
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if top_k < v {
        scratch.select_nth_unstable_by(top_k - 1, order);
        scratch.truncate(top_k);
    }
    if top_p < 1.0 || top_k < v {
        scratch.sort_unstable_by(order);
    }
    let max = scratch.iter().fold(f32::NEG_INFINITY, |a, b| a.max(b.0));
    let mut total = 0.0f64;
    for e in scratch.iter_mut() {
        e.0 = ((e.0 - max) * inv_t).exp();
        total += e.0 as f64;
    }
    let mut keep = scratch.len();
    if top_p < 1.0 {
        let mut cum = 0.0f64;
        for (i, e) in scratch.iter().enumerate() {
            cum += e.0 as f64 / total;
            if cum >= top_p as f64 {
                keep = i + 1;
                break;
            }
        }
    }
    let kept_total: f64 = scratch[..keep].iter().map(|e| e.0 as f64).sum();
    let target = u * kept_total;
    let mut cum = 0.0f64;
    for e in &scratch[..keep] {
        cum += e.0 as f64;
        if cum > target {
            return e.1;
        }
    }
    scratch[keep - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        let mut rng = SeqRng::new(1, 0);
        let mut s = Vec::new();
        let p = SamplingParams::default();
        assert_eq!(sample(&[0.1, 3.0, 3.0, -1.0], &p, &mut rng, &mut s), 1);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_index_dependent() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
        };
        let run = |seed, idx| {
            let mut rng = SeqRng::new(seed, idx);
            let mut s = Vec::new();
            (0..20)
                .map(|_| sample(&logits, &p, &mut rng, &mut s))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5, 0), run(5, 0));
        assert_ne!(run(5, 0), run(5, 1));
        assert_ne!(run(5, 0), run(6, 0));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [5.0f32, 4.9, 1.0, 0.5, 0.0, -1.0];
        let mut s = Vec::new();
        let mut rng = SeqRng::new(0, 0);
        let k2 = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 2,
        };
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            top_k: 0,
        };
        for _ in 0..500 {
            assert!(sample(&logits, &k2, &mut rng, &mut s) < 2);
            assert_eq!(sample(&logits, &p, &mut rng, &mut s), 0);
        }
    }

    #[test]
    fn temperature_sampling_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
        };
        let mut rng = SeqRng::new(42, 0);
        let mut s = Vec::new();
        let ones = (0..20000)
            .filter(|_| sample(&logits, &p, &mut rng, &mut s) == 1)
            .count();
        let frac = ones as f64 / 20000.0;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
    }

    #[test]
    fn log_prob_is_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        assert!((log_prob(&l, 2) - (3.0f64.exp() / z).ln()).abs() < 1e-12);
        assert_eq!(log_prob(&l, 9), f64::NEG_INFINITY);
    }
}
