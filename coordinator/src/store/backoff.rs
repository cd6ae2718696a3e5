//! The backoff curve of shards whose lease expired: how long the reaper keeps
//! such a shard invisible before it can be claimed again. The stores apply it
//! in SQL (per row, with jitter); the curve itself is defined here once.

use std::time::Duration;

/// Capped exponential backoff with jitter, for shards whose lease expired:
/// after its n-th spent attempt a shard waits `min(base * 2^(n-1), cap)`,
/// minus up to `jitter` of that, before it can be claimed again. The jitter
/// spreads shards that expired together (a worker host died) so they do not
/// all land on the next claim at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Fraction of the delay taken off at random, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Backoff {
    /// No delay: expired shards are claimable at once.
    pub const NONE: Backoff = Backoff {
        base: Duration::ZERO,
        cap: Duration::ZERO,
        jitter: 0.0,
    };

    /// The delay after `attempts_used` spent attempts, jitter left out
    /// (the stores add the jitter in SQL, per row).
    pub fn ceiling(&self, attempts_used: u32) -> Duration {
        let exp = attempts_used.saturating_sub(1).min(BACKOFF_MAX_DOUBLINGS);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    pub(crate) fn base_ms(&self) -> i64 {
        i64::try_from(self.base.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn cap_ms(&self) -> i64 {
        i64::try_from(self.cap.as_millis()).unwrap_or(i64::MAX)
    }

    pub(crate) fn jitter_fraction(&self) -> f64 {
        if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Doublings before the backoff stops growing (the cap usually bites first).
pub(crate) const BACKOFF_MAX_DOUBLINGS: u32 = 20;
