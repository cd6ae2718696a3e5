//! The reaper's backoff as the stores apply it in SQL: the curve is
//! `jobs::backoff::Backoff`; this file turns it into query parameters.
//!
//! `reap.sql` computes, per row, `min(base * 2^(attempts spent - 1), cap)`
//! minus a random part of up to `jitter` of it, which is
//! [`Backoff::delay`] for retry `attempts spent - 1`. The SQL stops doubling
//! after 20 doublings, far past any cap in use.

pub use jobs::backoff::Backoff;

/// The query parameters of `reap.sql`: base and cap in milliseconds, and the
/// jitter fraction.
pub(crate) fn sql_params(backoff: &Backoff) -> (i64, i64, f64) {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    (ms(backoff.base), ms(backoff.cap), backoff.jitter_fraction())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Doublings `reap.sql` applies at most (`LEAST(attempts_used, 20)`).
    const SQL_MAX_DOUBLINGS: u32 = 20;

    #[test]
    fn params_are_milliseconds_and_a_clamped_fraction() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(120), 1.5);
        assert_eq!(sql_params(&b), (1000, 120_000, 1.0));
        assert_eq!(sql_params(&Backoff::NONE), (0, 0, 0.0));
        // The SQL's doubling limit is past the cap of the reaper's curve.
        assert_eq!(b.ceiling(SQL_MAX_DOUBLINGS), b.cap);
    }
}
