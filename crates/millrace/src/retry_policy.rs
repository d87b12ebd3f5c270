use std::time::Duration;

use jiff::Timestamp;
use millrace_types::JobRow;
use rand::Rng;

/// Decides when a failed job runs again.
///
/// ```
/// use jiff::{SignedDuration, Timestamp};
/// use millrace::{JobRow, RetryPolicy};
///
/// /// Retries every 10 seconds.
/// struct Every10s;
/// impl RetryPolicy for Every10s {
///     fn next_retry(&self, _row: &JobRow, now: Timestamp) -> Timestamp {
///         now + SignedDuration::from_secs(10)
///     }
/// }
/// ```
pub trait RetryPolicy: Send + Sync + 'static {
    /// When to retry `row`, which has just failed (its `errors` do not hold the new error yet).
    fn next_retry(&self, row: &JobRow, now: Timestamp) -> Timestamp;
}

/// River's default policy: `n⁴` seconds after the `n`th error, ±10 % jitter, so 1 s, 16 s,
/// 81 s, 256 s, … (about three weeks in all over 25 attempts).
///
/// ```
/// use millrace::DefaultRetryPolicy;
///
/// assert_eq!(DefaultRetryPolicy::base_delay(1).as_secs(), 1);
/// assert_eq!(DefaultRetryPolicy::base_delay(3).as_secs(), 81);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRetryPolicy;

impl DefaultRetryPolicy {
    /// The delay before jitter after the `n`th error, capped so that it stays representable.
    pub fn base_delay(n: usize) -> Duration {
        // Past ~24 days the delay stops growing; River caps the same way to avoid overflow.
        let n = n.clamp(1, 1000) as u64;
        Duration::from_secs(n.saturating_pow(4).min(86_400 * 24))
    }
}

impl RetryPolicy for DefaultRetryPolicy {
    fn next_retry(&self, row: &JobRow, now: Timestamp) -> Timestamp {
        let base = Self::base_delay(row.errors.len() + 1).as_secs_f64();
        let jitter = rand::rng().random_range(-0.1..=0.1) * base;
        let delay = Duration::from_secs_f64((base + jitter).max(0.0));
        now.checked_add(delay).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_delays_grow_as_fourth_powers() {
        assert_eq!(DefaultRetryPolicy::base_delay(1), Duration::from_secs(1));
        assert_eq!(DefaultRetryPolicy::base_delay(2), Duration::from_secs(16));
        assert_eq!(DefaultRetryPolicy::base_delay(4), Duration::from_secs(256));
        assert_eq!(
            DefaultRetryPolicy::base_delay(usize::MAX),
            Duration::from_secs(86_400 * 24)
        );
    }
}
