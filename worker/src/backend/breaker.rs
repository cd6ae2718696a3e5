//! A per-backend circuit breaker for failures that say the endpoint itself is
//! unusable (unreachable, API key rejected), as opposed to one request being
//! bad.
//!
//! After `threshold` such failures in a row the breaker opens: requests fail
//! at once with one message naming the endpoint and the likely cause, so a
//! shard fails in seconds instead of paying every request's retries. After
//! `cooldown` it lets requests through again (half-open); the next failure of
//! the same kind re-opens it at once, any success closes it.
//!
//! An error that says the job cannot work with the endpoint at all (see
//! [`BackendError::Incompatible`]) trips the breaker at its first occurrence:
//! the requests queued behind it fail at once with the same error instead of
//! each paying a request to learn it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::BackendError;

/// Endpoint-level failures in a row that open the breaker.
pub const DEFAULT_THRESHOLD: u32 = 20;
/// How long an open breaker fails fast before it probes the endpoint again.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    /// Set while open: since when, and the error requests fail with.
    open: Option<(Instant, BackendError)>,
}

impl CircuitBreaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// `Err(error)` while open; after the cooldown lets requests through
    /// again, one failure away from re-opening.
    pub(crate) fn check(&self) -> Result<(), BackendError> {
        let mut state = self.state();
        if let Some((since, error)) = &state.open {
            if since.elapsed() < self.cooldown {
                return Err(error.clone());
            }
            state.open = None;
            state.consecutive = self.threshold.saturating_sub(1);
        }
        Ok(())
    }

    /// The endpoint answered usefully (success, or an error about this
    /// request only): it is reachable and accepts the key and the model.
    pub(crate) fn record_healthy(&self) {
        let mut state = self.state();
        state.consecutive = 0;
        state.open = None;
    }

    /// One more endpoint-level failure. Returns the open error when this
    /// failure opened the breaker (or it was open already). `error` gets
    /// the count of failures in a row and is only built when opening.
    pub(crate) fn record_unusable(
        &self,
        error: impl FnOnce(u32) -> BackendError,
    ) -> Option<BackendError> {
        let mut state = self.state();
        if let Some((_, open)) = &state.open {
            return Some(open.clone());
        }
        state.consecutive = state.consecutive.saturating_add(1);
        if state.consecutive < self.threshold {
            return None;
        }
        let error = error(state.consecutive);
        state.open = Some((Instant::now(), error.clone()));
        Some(error)
    }

    /// Opens at once with `error`, which every request would meet (see the
    /// module's documentation); returns it. After the cooldown requests go
    /// through again, so a server fixed meanwhile is found.
    pub(crate) fn trip(&self, error: BackendError) -> BackendError {
        let mut state = self.state();
        state.consecutive = self.threshold;
        state.open = Some((Instant::now(), error.clone()));
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(n: u32) -> BackendError {
        BackendError::EndpointUnusable {
            url: "http://x".into(),
            message: format!("down {n}"),
        }
    }

    #[test]
    fn opens_after_threshold_resets_on_health_and_half_opens() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(50));
        assert!(breaker.record_unusable(down).is_none());
        assert!(breaker.record_unusable(down).is_none());
        // A healthy answer in between restarts the count.
        breaker.record_healthy();
        assert!(breaker.record_unusable(down).is_none());
        assert!(breaker.record_unusable(down).is_none());
        assert_eq!(breaker.record_unusable(down), Some(down(3)));
        assert_eq!(breaker.check(), Err(down(3)));
        std::thread::sleep(Duration::from_millis(60));
        // Half-open: requests pass, and one more failure re-opens at once.
        assert_eq!(breaker.check(), Ok(()));
        assert!(breaker.record_unusable(down).is_some());
        assert!(breaker.check().is_err());
        breaker.record_healthy();
        assert_eq!(breaker.check(), Ok(()));
    }

    #[test]
    fn a_trip_opens_at_once_with_its_error_until_the_cooldown() {
        let breaker = CircuitBreaker::new(20, Duration::from_millis(50));
        let incompatible = BackendError::Incompatible {
            url: "https://x".into(),
            message: "certificate not trusted".into(),
        };
        assert_eq!(breaker.trip(incompatible.clone()), incompatible);
        assert_eq!(breaker.check(), Err(incompatible.clone()));
        // Other failures report the open error, not their own.
        assert_eq!(breaker.record_unusable(down), Some(incompatible));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.check(), Ok(()));
    }
}
