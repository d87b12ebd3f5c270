//! Rebuilds the GIN indexes of `river_job` (args and metadata) daily at midnight UTC, as
//! River's reindexer, without blocking writes. Runs on the River leader; can be turned off.

use std::time::Duration;

use jiff::{Timestamp, ToSpan, tz::TimeZone};
use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

const INDEXES: [&str; 2] = ["river_job_args_index", "river_job_metadata_index"];

/// Rebuilds the GIN indexes of `river_job` daily at midnight UTC.
///
/// It has no clock: it sleeps in real time, by the system clock (see [`Reindexer::run`]).
#[derive(Clone)]
pub(crate) struct Reindexer<D: Driver> {
    pub(in crate::runtime) driver: D,
    /// Whether the client runs it; when not, it ends at once.
    pub(in crate::runtime) enabled: bool,
}

impl<D: Driver> Reindexer<D> {
    pub(crate) async fn run(self, stop: CancellationToken) {
        if !self.enabled {
            return;
        }
        loop {
            // The system clock, not the client's: the wait is slept in real time, so a test
            // clock standing still must not stretch or shrink it.
            let wait = until_next_midnight(Timestamp::now());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            for index in INDEXES {
                if let Err(err) = self.driver.executor().index_reindex(index).await {
                    tracing::warn!(%err, index, "reindex failed");
                }
            }
        }
    }
}

fn until_next_midnight(now: Timestamp) -> Duration {
    let today = now.to_zoned(TimeZone::UTC).date();
    let next = today
        .checked_add(1.day())
        .ok()
        .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
        .map(|z| z.timestamp());
    match next {
        Some(next) => {
            Duration::try_from(next.duration_since(now)).unwrap_or(Duration::from_secs(3600))
        }
        None => Duration::from_secs(3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_midnight_utc() {
        let now: Timestamp = "2024-05-06T23:00:00Z".parse().unwrap();
        assert_eq!(until_next_midnight(now), Duration::from_secs(3600));
    }
}
