use crate::limits::ConcurrencyLimit;
use crate::rate_limit::RateLimit;

/// How a client works one queue.
///
/// ```
/// use millrace::QueueConfig;
///
/// let config = QueueConfig::new().max_workers(50);
/// assert_eq!(config.max_workers, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueConfig {
    /// The most jobs of this queue the client works at once, 1 to 10,000. Defaults to 100.
    pub max_workers: usize,
    /// How many of the queue's jobs may run at once across the fleet or on this client.
    /// Defaults to none: only `max_workers` bounds this client.
    pub concurrency: Option<ConcurrencyLimit>,
    /// How many of the queue's jobs may start per period across the fleet. Defaults to none.
    pub rate_limit: Option<RateLimit>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_workers: 100,
            concurrency: None,
            rate_limit: None,
        }
    }
}

impl QueueConfig {
    /// The most jobs worked at once: 1 to 10,000, as in River.
    pub const MAX_WORKERS_LIMIT: usize = 10_000;

    /// The limits a client declares to the fleet for this queue, which other clients compare
    /// with theirs (`runtime::limits_check`): the concurrency limit in River Pro's metadata
    /// shape and the rate limit, each `null` when not set.
    pub(crate) fn declared_limits(&self) -> serde_json::Value {
        let concurrency = self
            .concurrency
            .as_ref()
            .map(|limit| limit.to_metadata_value());
        let rate_limit = self.rate_limit.as_ref().map(|rate| {
            serde_json::json!({
                "limit": rate.limit,
                "period_ms": u64::try_from(rate.period.as_millis()).unwrap_or(u64::MAX),
                "partition": {"by_args": rate.by_args, "by_kind": rate.by_kind},
            })
        });
        serde_json::json!({ "concurrency": concurrency, "rate_limit": rate_limit })
    }

    /// 100 workers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the most jobs worked at once.
    #[must_use]
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = max_workers;
        self
    }

    /// Limits how many of the queue's jobs run at once, fleet-wide and/or on this client,
    /// enforced inside the fetch (see [`ConcurrencyLimit`] and `docs/limits.md`). Every client
    /// working the queue should configure the same limit.
    ///
    /// ```
    /// use millrace::{ConcurrencyLimit, QueueConfig};
    ///
    /// let config = QueueConfig::new().concurrency(ConcurrencyLimit::global(2).partition_by_kind());
    /// assert!(config.concurrency.is_some());
    /// ```
    #[must_use]
    pub fn concurrency(mut self, limit: ConcurrencyLimit) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// Limits how many of the queue's jobs start per period across the fleet, enforced inside
    /// the fetch (see [`RateLimit`] and `docs/limits.md`); combines with
    /// [`concurrency`](Self::concurrency). Every client working the queue should configure the
    /// same limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use millrace::{QueueConfig, RateLimit};
    ///
    /// let config = QueueConfig::new().rate_limit(RateLimit::per(100, Duration::from_secs(60)));
    /// assert!(config.rate_limit.is_some());
    /// ```
    #[must_use]
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }
}
