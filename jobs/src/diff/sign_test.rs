//! The exact two-sided sign test of paired differences (McNemar's exact
//! test for 0/1 scores): how likely a split of `worse` against `better`
//! changed documents at least this uneven is when neither run is better.
//!
//! A bootstrap interval alone calls a handful of changed documents
//! significant: with 4 of 1,000 documents worse and none better, a resample
//! misses all four only e⁻⁴ ≈ 2% of the time, so a 95% interval leaves out
//! 0, while the exact chance of 4-0 by luck is 2 × 2⁻⁴ = 12.5%. For 0/1
//! metrics both must agree before a difference is called significant.

/// The two-sided p-value of `worse` against `better` changed documents.
pub fn sign_test_p(worse: u64, better: u64) -> f64 {
    let n = worse + better;
    if n == 0 {
        return 1.0;
    }
    let m = worse.min(better);
    // P(X <= m) for X ~ Binomial(n, 1/2), summed in log space: 2^-n
    // underflows past n = 1074.
    let mut log_term = -(n as f64) * std::f64::consts::LN_2;
    let mut log_sum = log_term;
    for k in 0..m {
        log_term += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
        let (hi, lo) = if log_sum > log_term {
            (log_sum, log_term)
        } else {
            (log_term, log_sum)
        };
        log_sum = hi + (lo - hi).exp().ln_1p();
    }
    (2.0 * log_sum.exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values() {
        assert_eq!(sign_test_p(0, 0), 1.0);
        assert!((sign_test_p(4, 0) - 0.125).abs() < 1e-12);
        assert!((sign_test_p(0, 4) - 0.125).abs() < 1e-12);
        // 9 against 1: 2 × (1 + 10) / 1024.
        assert!((sign_test_p(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(sign_test_p(5, 5), 1.0);
        // Large counts stay finite and tiny.
        let p = sign_test_p(6_000, 4_000);
        assert!(p > 0.0 && p < 1e-80, "{p}");
        assert!(sign_test_p(500_000, 500_000) > 0.99);
    }
}
