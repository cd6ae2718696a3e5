//! Retry timing: `Retry-After` parsing and the [`RetryPolicy`] of lease
//! calls, over the one backoff curve of `jobs::backoff` (with full jitter).
//! The worker's backends use the same parsing for their endpoints.

use reqwest::header::HeaderMap;
use std::time::Duration;

pub use jobs::backoff::Backoff;

/// The wait a server asked for, from `retry-after-ms` (OpenAI, Azure) or
/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
/// Unparseable values are ignored so the caller falls back to backoff.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    parse_retry_after_value(value, chrono::Utc::now())
}

/// Parses one `Retry-After` value relative to `now`.
pub fn parse_retry_after_value(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
        return None;
    }
    // IMF-fixdate ("Wed, 21 Oct 2015 07:28:00 GMT") is a subset of RFC 2822.
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// How long lease calls keep retrying transient failures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff::full_jitter(Duration::from_millis(200), Duration::from_secs(10)),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let b = Backoff::full_jitter(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(200), Duration::from_secs(1));
        for retry in 0..10 {
            assert!(b.delay(retry) <= b.ceiling(retry));
        }
    }

    #[test]
    fn parses_seconds_dates_and_milliseconds() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after_value("3", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after_value("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after_value("Wed, 21 Oct 2015 07:28:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after_value("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after_value("soon", now), None);
        assert_eq!(parse_retry_after_value("-1", now), None);

        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("9"));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(250))
        );
        headers.remove("retry-after-ms");
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(9)));
    }
}
