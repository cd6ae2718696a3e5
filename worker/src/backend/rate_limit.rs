//! An async token bucket for requests-per-minute and tokens-per-minute
//! limits.
//!
//! Callers reserve their cost up front and the bucket may go into debt; each
//! caller then sleeps exactly until its reservation is covered. That keeps
//! callers in arrival order, needs no polling, and lets a single request
//! larger than the bucket through (after waiting for it).

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Negative when reservations are outstanding.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket refilled at `per_minute / 60` per second, holding at most one
    /// second's worth (at least 1), so a limit is spread evenly over the
    /// minute instead of allowing a whole minute's burst at once.
    pub fn per_minute(per_minute: u32) -> Self {
        let per_second = f64::from(per_minute.max(1)) / 60.0;
        Self::new(per_second.max(1.0), per_second)
    }

    /// A bucket holding at most `capacity`, starting full.
    pub fn new(capacity: f64, per_second: f64) -> Self {
        TokenBucket {
            capacity,
            per_second,
            state: Mutex::new(BucketState {
                tokens: capacity,
                last: Instant::now(),
            }),
        }
    }

    /// Reserves `cost` and returns how long the caller must wait before
    /// spending it.
    pub fn reserve(&self, cost: f64) -> Duration {
        self.reserve_at(cost, Instant::now())
    }

    /// [`TokenBucket::reserve`] at the time `now` (tests give the times,
    /// which keeps them exact without a paused clock).
    fn reserve_at(&self, cost: f64, now: Instant) -> Duration {
        let mut state = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.capacity);
        state.last = now;
        state.tokens -= cost;
        if state.tokens >= 0.0 || self.per_second <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.per_second)
        }
    }

    /// Reserves `cost` and waits until it is covered.
    pub async fn acquire(&self, cost: f64) {
        let wait = self.reserve(cost);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Gives back (`delta > 0`) or charges extra (`delta < 0`) once the real
    /// cost of a reservation is known.
    pub fn adjust(&self, delta: f64) {
        let mut state = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.tokens = (state.tokens + delta).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_reservations_at_the_refill_rate() {
        let bucket = TokenBucket::per_minute(120); // 2/s, holds 2
        let start = bucket.state.lock().unwrap().last;
        assert_eq!(bucket.reserve_at(1.0, start), Duration::ZERO);
        assert_eq!(bucket.reserve_at(1.0, start), Duration::ZERO);
        assert_eq!(bucket.reserve_at(1.0, start), Duration::from_millis(500));
        assert_eq!(bucket.reserve_at(1.0, start), Duration::from_secs(1));
        let later = start + Duration::from_secs(1);
        assert_eq!(bucket.reserve_at(1.0, later), Duration::from_millis(500));
    }

    #[test]
    fn adjust_refunds_overestimates() {
        let bucket = TokenBucket::new(100.0, 10.0);
        let start = bucket.state.lock().unwrap().last;
        assert_eq!(bucket.reserve_at(100.0, start), Duration::ZERO);
        assert_eq!(bucket.reserve_at(10.0, start), Duration::from_secs(1));
        bucket.adjust(60.0);
        assert_eq!(bucket.reserve_at(10.0, start), Duration::ZERO);
    }
}
