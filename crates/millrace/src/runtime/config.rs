//! A client's runtime settings, fixed when it is built.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::metric_hook::MetricHook;
use crate::middleware::{ErrorHandler, WorkMiddleware};
use crate::retry_policy::RetryPolicy;

/// The runtime settings of a client, fixed at build time.
#[derive(Clone)]
pub(crate) struct RuntimeConfig {
    pub(crate) id: String,
    pub(crate) fetch_cooldown: Duration,
    pub(crate) fetch_poll_interval: Duration,
    pub(crate) poll_only: bool,
    pub(crate) job_timeout: Option<Duration>,
    pub(crate) cancel_grace: Duration,
    /// How long a stop waits on the database once the jobs have ended.
    pub(crate) stop_database_timeout: Duration,
    pub(crate) retry_policy: Arc<dyn RetryPolicy>,
    pub(crate) schedule_interval: Duration,
    pub(crate) queue_touch_interval: Duration,
    pub(crate) completer_batch_max: usize,
    pub(crate) completer_flush_at: usize,
    pub(crate) completer_flush_interval: Duration,
    pub(crate) heartbeat_lease: Duration,
    pub(crate) maintenance: MaintenanceConfig,
    pub(crate) work_middleware: Vec<Arc<dyn WorkMiddleware>>,
    pub(crate) metric_hooks: Vec<Arc<dyn MetricHook>>,
    pub(crate) error_handler: Option<Arc<dyn ErrorHandler>>,
    /// The time the client works by, when a test set one; else the system clock.
    pub(crate) clock: Clock,
}

/// Settings of the maintenance services.
#[derive(Debug, Clone)]
pub(crate) struct MaintenanceConfig {
    pub(crate) rescue_stuck_jobs_after: Option<Duration>,
    pub(crate) rescuer_interval: Duration,
    pub(crate) cleaner_interval: Duration,
    pub(crate) completed_retention: Option<Duration>,
    pub(crate) cancelled_retention: Option<Duration>,
    pub(crate) discarded_retention: Option<Duration>,
    pub(crate) reindexer: bool,
}

impl RuntimeConfig {
    /// Now: the test clock's time when one is set, else the system clock's.
    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// The time a fetch is due by: the test clock's, or `None` for the database's `now()`.
    pub(crate) fn fetch_now(&self) -> Option<jiff::Timestamp> {
        self.clock.stubbed_now()
    }

    /// River's RescueStuckJobsAfter: as configured, else the job timeout plus an hour, else an
    /// hour.
    pub(crate) fn rescue_stuck_jobs_after(&self) -> Duration {
        let hour = Duration::from_secs(3600);
        self.maintenance
            .rescue_stuck_jobs_after
            .unwrap_or(match self.job_timeout {
                Some(timeout) if timeout != Duration::MAX => timeout.saturating_add(hour),
                _ => hour,
            })
    }
}
