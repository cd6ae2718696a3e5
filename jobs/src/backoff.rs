//! One backoff curve for every retry in Shardline: capped exponential
//! growth with a configurable share of jitter.
//!
//! The delay before retry `n` (0-based) has the ceiling
//! `min(cap, base * 2^n)`; `jitter` is the fraction of that ceiling taken
//! off at random, so the delay is uniform in
//! `[ceiling * (1 - jitter), ceiling]`. `jitter = 1.0` is "full jitter"
//! (AWS architecture blog), `0.0` no randomness. Jitter keeps many clients
//! (or shards) hit by the same outage from retrying in lockstep.

use rand::Rng;
use std::time::Duration;

/// Doublings after which the ceiling stops growing even below `cap`
/// (2^30 times `base` is past any cap in use, and keeps the factor in u32).
const MAX_DOUBLINGS: u32 = 30;

/// A capped exponential backoff curve with jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest delay ever returned.
    pub cap: Duration,
    /// Fraction of the ceiling taken off at random, in `0.0..=1.0`
    /// (values outside are clamped).
    pub jitter: f64,
}

impl Backoff {
    /// No delay at all.
    pub const NONE: Backoff = Backoff {
        base: Duration::ZERO,
        cap: Duration::ZERO,
        jitter: 0.0,
    };

    pub const fn new(base: Duration, cap: Duration, jitter: f64) -> Self {
        Backoff { base, cap, jitter }
    }

    /// "Full jitter": the delay is uniform in `[0, ceiling]`, the spread
    /// that clients retrying one server want.
    pub const fn full_jitter(base: Duration, cap: Duration) -> Self {
        Backoff::new(base, cap, 1.0)
    }

    /// Upper bound of the delay before retry `retry` (0-based), jitter left
    /// out: `min(cap, base * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.min(MAX_DOUBLINGS);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The jitter fraction, clamped to `0.0..=1.0` (NaN counts as none).
    pub fn jitter_fraction(&self) -> f64 {
        if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        }
    }

    /// A jittered delay before retry `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_at(retry, rand::rng().random_range(0.0..=1.0))
    }

    /// The delay before retry `retry` for a given draw `unit` in
    /// `0.0..=1.0` (0 takes the whole jitter off, 1 none of it): the
    /// deterministic core of [`Backoff::delay`], for callers that draw
    /// their own randomness.
    pub fn delay_at(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let unit = if unit.is_nan() {
            1.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let off = self.jitter_fraction() * (1.0 - unit);
        ceiling.mul_f64(1.0 - off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 1000 * MS, 0.5);
        assert_eq!(b.ceiling(0), 100 * MS);
        assert_eq!(b.ceiling(1), 200 * MS);
        assert_eq!(b.ceiling(3), 800 * MS);
        assert_eq!(b.ceiling(4), 1000 * MS);
        assert_eq!(b.ceiling(u32::MAX), 1000 * MS);
    }

    #[test]
    fn huge_caps_do_not_overflow() {
        let b = Backoff::new(Duration::from_secs(1), Duration::MAX, 0.0);
        assert_eq!(b.ceiling(30), Duration::from_secs(1 << 30));
        assert_eq!(b.ceiling(1000), Duration::from_secs(1 << 30));
        let big = Backoff::new(Duration::MAX, Duration::MAX, 0.0);
        assert_eq!(big.ceiling(5), Duration::MAX);
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff::new(100 * MS, 10_000 * MS, 0.5);
        assert_eq!(b.delay_at(2, 1.0), 400 * MS);
        assert_eq!(b.delay_at(2, 0.0), 200 * MS);
        assert_eq!(b.delay_at(2, 0.5), 300 * MS);
        for retry in 0..10 {
            let d = b.delay(retry);
            let c = b.ceiling(retry);
            assert!(d <= c && d >= c / 2, "{retry}: {d:?} vs {c:?}");
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let b = Backoff::new(100 * MS, 1000 * MS, 1.0);
        assert_eq!(b.delay_at(0, 0.0), Duration::ZERO);
        assert_eq!(b.delay_at(0, 1.0), 100 * MS);
        for _ in 0..100 {
            assert!(b.delay(3) <= 800 * MS);
        }
    }

    #[test]
    fn no_jitter_and_none_are_exact() {
        let b = Backoff::new(100 * MS, 1000 * MS, 0.0);
        assert_eq!(b.delay(1), 200 * MS);
        assert_eq!(Backoff::NONE.delay(7), Duration::ZERO);
        assert_eq!(Backoff::NONE.ceiling(7), Duration::ZERO);
    }

    #[test]
    fn out_of_range_jitter_and_draws_are_clamped() {
        let b = Backoff::new(100 * MS, 1000 * MS, 7.0);
        assert_eq!(b.jitter_fraction(), 1.0);
        assert_eq!(b.delay_at(0, -3.0), Duration::ZERO);
        assert_eq!(b.delay_at(0, f64::NAN), 100 * MS);
        let nan = Backoff::new(100 * MS, 1000 * MS, f64::NAN);
        assert_eq!(nan.delay(0), 100 * MS);
        let negative = Backoff::new(100 * MS, 1000 * MS, -1.0);
        assert_eq!(negative.delay(0), 100 * MS);
    }
}
