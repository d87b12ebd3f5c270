use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The one backoff every retry loop of Millrace uses: delays double from `min` up to `max`,
/// each with random jitter, so that a fleet that lost its database does not reconnect in
/// lockstep when it returns.
///
/// Each delay is the exponential step plus a random part of up to the step again, capped at
/// `max` (so retries spread over `[step, 2 × step)`), as `backon` computes it.
///
/// ```
/// use std::time::Duration;
/// use millrace_driver::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(100) && first <= Duration::from_secs(5));
/// assert_eq!(backoff.failures(), 1);
/// backoff.reset();
/// assert_eq!(backoff.failures(), 0);
/// ```
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff from `min` to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build(),
            max,
            failures: 0,
        }
    }

    /// Counts one more failure and returns how long to wait before trying again.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Failures counted since the last [`reset`](Backoff::reset): 0 while all is well.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts again from `min`, after a success.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_within_bounds_and_differ_between_loops() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut a = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| a.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= min && *d <= max), "{delays:?}");
        assert!(delays[8] > delays[0], "grows: {delays:?}");
        // Two loops that fail together wait different times: jitter.
        let mut b = Backoff::new(min, max);
        let theirs: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert_ne!(delays, theirs);
        a.reset();
        assert!(a.next_delay() < min * 2, "reset starts from min");
    }
}
