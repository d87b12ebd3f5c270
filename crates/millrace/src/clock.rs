//! A clock tests can set, in place of the system clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

/// A clock that stands still until a test sets or advances it, so schedules, retries and
/// periodic jobs can be tested without waiting (River's stubbed `Archetype.Time`).
///
/// Give it to a client with [`ClientBuilder::test_clock`](crate::ClientBuilder::test_clock).
/// The client then takes "now" from it wherever it computes a time: retry and snooze times,
/// the unique period and the scheduled time of an insert, the scheduler's horizon and
/// periodic jobs' runs; and it fetches the jobs that are due by it. The database still
/// stamps what it stamps itself: `finalized_at`, and the `scheduled_at` of a job given back at
/// a stop or made available by [`Client::job_retry`](crate::Client::job_retry), which a clock
/// set behind the database's reaches only once it passes that time.
///
/// After a test moves the clock, the client notices at its next scheduler pass and fetch
/// poll, so tests set [`schedule_interval`](crate::ClientBuilder::schedule_interval) and
/// [`fetch_poll_interval`](crate::ClientBuilder::fetch_poll_interval) short.
///
/// Cheap to clone; clones share one time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use millrace::TestClock;
///
/// let clock = TestClock::new("2030-01-01T00:00:00Z".parse().unwrap());
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(shared.now().to_string(), "2030-01-01T01:00:00Z");
/// ```
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<Mutex<Timestamp>>,
}

impl TestClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        TestClock {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// The time the clock shows.
    pub fn now(&self) -> Timestamp {
        *self.now.lock().expect("lock poisoned")
    }

    /// Sets the clock, forwards or back.
    pub fn set(&self, at: Timestamp) {
        *self.now.lock().expect("lock poisoned") = at;
    }

    /// Moves the clock forward by `by`, stopping at the latest representable time.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("lock poisoned");
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }
}

/// The time a client works by: its test clock's when one is set, else the system clock's.
/// Every time the client computes goes through it, so a test clock reaches every service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Option<TestClock>);

impl Clock {
    pub(crate) fn new(test: Option<TestClock>) -> Self {
        Clock(test)
    }

    /// Now, by the test clock when one is set.
    pub(crate) fn now(&self) -> Timestamp {
        self.0.as_ref().map_or_else(Timestamp::now, TestClock::now)
    }

    /// The test clock's time, or `None` for "the database's `now()`" in SQL that takes
    /// `coalesce($n, now())`.
    pub(crate) fn stubbed_now(&self) -> Option<Timestamp> {
        self.0.as_ref().map(TestClock::now)
    }

    /// Whether a test clock is set.
    pub(crate) fn is_stubbed(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_time() {
        let clock = TestClock::new(Timestamp::UNIX_EPOCH);
        let other = clock.clone();
        other.advance(Duration::from_secs(90));
        assert_eq!(clock.now().to_string(), "1970-01-01T00:01:30Z");
        clock.set("2030-06-01T12:00:00Z".parse().unwrap());
        assert_eq!(other.now().to_string(), "2030-06-01T12:00:00Z");
        other.advance(Duration::MAX);
        assert_eq!(clock.now(), Timestamp::MAX);
    }
}
