//! A hook for measurements the middleware cannot see, such as how long a fetch took.

use std::time::Duration;

/// A measurement the client took, handed to each [`MetricHook`].
///
/// Mirrors River's `HookMetricEmit` metrics: a fetch of available jobs reports its duration
/// and how many jobs it locked, as River's `JobGetAvailableDurationMetric` and
/// `JobGetAvailableCountMetric` do.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Metric<'a> {
    /// A fetch of available jobs for one queue succeeded.
    JobGetAvailable {
        /// The queue fetched from.
        queue: &'a str,
        /// How long the fetch statement took.
        duration: Duration,
        /// How many jobs it locked (and this client now works).
        count: usize,
    },
    /// A batch went in by the fast path ([`Client::insert_many_fast`] and its `_tx` twin),
    /// which no insert middleware sees: COPY returns no rows for the middleware chain to
    /// hand back. Emitted once the batch was sent, stored or not; a batch refused before
    /// anything was sent (bad options) is not.
    ///
    /// [`Client::insert_many_fast`]: crate::Client::insert_many_fast
    InsertManyFast {
        /// Jobs in the batch.
        count: usize,
        /// How long storing it took.
        duration: Duration,
        /// Whether it was stored.
        ok: bool,
    },
}

/// Receives the client's own measurements (River's `HookMetricEmit`).
///
/// Called on the client's runtime tasks, inline: keep it quick and never block (record into
/// a metric, do not write to a socket). Registered with
/// [`ClientBuilder::metric_hook`](crate::ClientBuilder::metric_hook).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use millrace::{Metric, MetricHook};
///
/// /// Counts the jobs every fetch locked.
/// #[derive(Default)]
/// struct Fetched(AtomicUsize);
///
/// impl MetricHook for Fetched {
///     fn emit(&self, metric: &Metric<'_>) {
///         if let Metric::JobGetAvailable { count, .. } = metric {
///             self.0.fetch_add(*count, Ordering::Relaxed);
///         }
///     }
/// }
/// ```
pub trait MetricHook: Send + Sync + 'static {
    /// One measurement.
    fn emit(&self, metric: &Metric<'_>);
}
