//! Fleet-wide rate limits: how many jobs of a queue are fetched per period, across every
//! client, optionally per partition (kind, args fields). See `docs/limits.md`.

use std::time::Duration;

use millrace_driver::FetchRate;

use crate::limits::{ConcurrencyLimit, LimitError};

/// How many jobs of a queue may start per period across the whole fleet, optionally counted
/// per partition (per kind, per values of named args fields) rather than for the queue as a
/// whole.
///
/// The window is *sliding*: in any span of `period`, at most `limit` jobs of a partition are
/// fetched, whichever clients fetch them. A job over the limit stays `available` with its
/// attempt unspent (no snooze, no error), and the producer fetches again when the window
/// frees room. A job fetched again (retried, snoozed, rescued) counts again. Combines with a
/// [`ConcurrencyLimit`]: a job is fetched only when both leave room. Enforced inside the
/// same serialized fetch as concurrency limits, so clients racing never exceed it. A River
/// client on the same database ignores it. Mirrors River Pro's rate limits in the open core.
///
/// Validated when the client is built: see [`LimitError`].
///
/// ```
/// use std::time::Duration;
/// use millrace::{QueueConfig, RateLimit};
///
/// // At most 100 calls per minute to each customer's API, fleet-wide.
/// let limit = RateLimit::per(100, Duration::from_secs(60)).partition_by_args(["customer_id"]);
/// let config = QueueConfig::new().rate_limit(limit);
/// assert_eq!(config.rate_limit.unwrap().limit, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// The most jobs fetched per partition in any window of `period`.
    pub limit: u32,
    /// The window's length.
    pub period: Duration,
    /// Whether each kind is its own partition.
    pub by_kind: bool,
    /// Top-level args fields whose values name the partition.
    pub by_args: Vec<String>,
}

impl RateLimit {
    /// The shortest period: below a millisecond the clocks that time the window disagree by
    /// more than the window.
    pub const MIN_PERIOD: Duration = Duration::from_millis(1);

    /// The longest period, one day: the fetch log holds a partition's fetches for a whole
    /// period, and a longer one is more likely a unit mistake than a rate.
    pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

    /// At most `limit` jobs fetched in any window of `period`, across every client.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let limit = millrace::RateLimit::per(50, Duration::from_secs(1));
    /// assert_eq!((limit.limit, limit.period), (50, Duration::from_secs(1)));
    /// ```
    pub fn per(limit: u32, period: Duration) -> Self {
        RateLimit {
            limit,
            period,
            by_kind: false,
            by_args: Vec::new(),
        }
    }

    /// Counts each kind separately: the limit holds per kind.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// assert!(millrace::RateLimit::per(5, Duration::from_secs(1)).partition_by_kind().by_kind);
    /// ```
    #[must_use]
    pub fn partition_by_kind(mut self) -> Self {
        self.by_kind = true;
        self
    }

    /// Counts each combination of these top-level args fields' values separately (compared
    /// as JSON, so `1` and `"1"` differ; a missing field counts as `null`). Adds to fields
    /// given before.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let limit = millrace::RateLimit::per(5, Duration::from_secs(1)).partition_by_args(["host"]);
    /// assert_eq!(limit.by_args, ["host"]);
    /// ```
    #[must_use]
    pub fn partition_by_args<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.by_args.extend(fields.into_iter().map(Into::into));
        self
    }

    /// Checks the limit: not 0, not beyond [`ConcurrencyLimit::MAX_LIMIT`], a period from
    /// [`MIN_PERIOD`](Self::MIN_PERIOD) to [`MAX_PERIOD`](Self::MAX_PERIOD), and partition
    /// fields as for a [`ConcurrencyLimit`].
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`LimitError`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use millrace::{LimitError, RateLimit};
    ///
    /// assert_eq!(RateLimit::per(0, Duration::from_secs(1)).validate(), Err(LimitError::Zero { which: "rate" }));
    /// assert_eq!(RateLimit::per(5, Duration::ZERO).validate(), Err(LimitError::ZeroPeriod));
    /// assert!(RateLimit::per(5, Duration::from_secs(1)).validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), LimitError> {
        match self.limit {
            0 => return Err(LimitError::Zero { which: "rate" }),
            n if n > ConcurrencyLimit::MAX_LIMIT => {
                return Err(LimitError::TooLarge {
                    which: "rate",
                    limit: n,
                });
            }
            _ => {}
        }
        if self.period.is_zero() {
            return Err(LimitError::ZeroPeriod);
        }
        if !(Self::MIN_PERIOD..=Self::MAX_PERIOD).contains(&self.period) {
            return Err(LimitError::PeriodOutOfRange(self.period));
        }
        // The partition fields follow the concurrency limits' rules; check them there.
        ConcurrencyLimit::global(1)
            .partition_by_args(self.by_args.iter().cloned())
            .validate()
    }

    /// What the driver's fetch enforces.
    pub(crate) fn to_fetch_rate(&self) -> FetchRate {
        FetchRate {
            // Validated at build: fits i32.
            limit: i32::try_from(self.limit).unwrap_or(i32::MAX),
            period: self.period,
            by_kind: self.by_kind,
            by_args: self.by_args.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_outside_the_range_are_refused() {
        for period in [Duration::from_micros(999), Duration::from_secs(86_401)] {
            assert_eq!(
                RateLimit::per(1, period).validate(),
                Err(LimitError::PeriodOutOfRange(period))
            );
        }
        for period in [RateLimit::MIN_PERIOD, RateLimit::MAX_PERIOD] {
            assert_eq!(RateLimit::per(1, period).validate(), Ok(()));
        }
    }

    #[test]
    fn fields_follow_the_concurrency_limits_rules() {
        let limit = RateLimit::per(1, Duration::from_secs(1)).partition_by_args(["a", "a"]);
        assert_eq!(
            limit.validate(),
            Err(LimitError::DuplicateField("a".into()))
        );
        let limit = RateLimit::per(u32::MAX, Duration::from_secs(1));
        assert_eq!(
            limit.validate(),
            Err(LimitError::TooLarge {
                which: "rate",
                limit: u32::MAX
            })
        );
    }
}
