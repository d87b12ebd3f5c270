//! A client's health, for readiness and liveness probes: can it reach its database, is every
//! producer fetching, is the completer keeping up, what it leads and what it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, LeaderTable};
use serde::Serialize;

use super::Client;

/// How long [`Client::health`] waits for the database before reporting it unreachable.
pub const HEALTH_DATABASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Client::health`] found. Serializes to JSON (times in RFC 3339, durations in
/// milliseconds) for a probe endpoint.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
/// let report = client.health().await;
/// if !report.is_healthy() {
///     eprintln!("unhealthy: {}", serde_json::to_string(&report).unwrap());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Whether one statement reached the database within [`HEALTH_DATABASE_TIMEOUT`].
    pub database_reachable: bool,
    /// How long that statement took, when it answered.
    pub database_round_trip_ms: Option<u64>,
    /// Why it did not answer.
    pub database_error: Option<String>,
    /// Whether the client is started (an insert-only client never is).
    pub started: bool,
    /// Each queue this client works, by name.
    pub queues: BTreeMap<String, QueueHealth>,
    /// Outcomes waiting for the completer to store them.
    pub completer_backlog: usize,
    /// Whether this client is River's leader (runs River's maintenance).
    pub river_leader: bool,
    /// Whether this client holds Millrace's own lease (dead-client rescue, periodic jobs).
    pub millrace_leader: bool,
    /// The client that holds River's leadership, as the database says, when any does.
    pub river_leader_id: Option<String>,
    /// The persistent workers this client runs an instance of now.
    pub persistent_held: BTreeSet<String>,
}

/// One queue's producer, in a [`HealthReport`].
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct QueueHealth {
    /// When its last fetch succeeded (whether or not it found jobs).
    pub last_fetch_at: Option<Timestamp>,
    /// Fetches that failed in a row since then: 0 while all is well.
    pub fetch_failures: u32,
    /// Jobs of the queue running on this client.
    pub running: usize,
    /// The concurrency limit this client's producer enforces now: the queue's metadata
    /// override when it holds a valid one, else the limit the client was built with.
    pub concurrency: Option<crate::ConcurrencyLimit>,
    /// Why the queue's metadata override is not applied (the producer keeps the limit it
    /// had), when it is not.
    pub concurrency_override_error: Option<String>,
    /// How another live client's limits for this queue (concurrency and rate, as each was
    /// built) differ from this client's, when they do: each client enforces its own, so the
    /// fleet's limit is not the one either declares. Checked at start and every 30 s.
    pub limits_disagreement: Option<String>,
}

impl HealthReport {
    /// Healthy when the database answers and, on a started client, no producer's last fetch
    /// failed: what a readiness probe should check. A liveness probe that restarts the
    /// process on an outage of the database would restart the whole fleet at once; check
    /// [`HealthReport::started`] there instead.
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// assert!(client.health().await.is_healthy());
    /// # }
    /// ```
    pub fn is_healthy(&self) -> bool {
        self.database_reachable && self.queues.values().all(|q| q.fetch_failures == 0)
    }
}

impl<D: Driver> Client<D> {
    /// Reports this client's health: one statement to the database (bounded by
    /// [`HEALTH_DATABASE_TIMEOUT`]), and what the running client knows of itself. Never
    /// fails: an unreachable database is part of the report.
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let report = client.health().await;
    /// println!("reachable: {}, leader: {}", report.database_reachable, report.river_leader);
    /// # }
    /// ```
    pub async fn health(&self) -> HealthReport {
        let sent = tokio::time::Instant::now();
        let leader = tokio::time::timeout(
            HEALTH_DATABASE_TIMEOUT,
            self.inner.driver.executor().leader_get(LeaderTable::River),
        )
        .await;
        let round_trip = sent.elapsed();
        let (database_reachable, database_error, river_leader_id) = match leader {
            Ok(Ok(row)) => (true, None, row.map(|r| r.leader_id)),
            Ok(Err(err)) => (
                false,
                Some(crate::runtime::job_executor::error_chain(&err)),
                None,
            ),
            Err(_) => (
                false,
                Some(format!(
                    "no answer within {} s",
                    HEALTH_DATABASE_TIMEOUT.as_secs()
                )),
                None,
            ),
        };
        let mut report = HealthReport {
            database_reachable,
            database_round_trip_ms: database_reachable
                .then(|| u64::try_from(round_trip.as_millis()).unwrap_or(u64::MAX)),
            database_error,
            started: false,
            queues: BTreeMap::new(),
            completer_backlog: 0,
            river_leader: false,
            millrace_leader: false,
            river_leader_id,
            persistent_held: BTreeSet::new(),
        };
        let runtime = self.inner.runtime.lock().await;
        let Some(runtime) = runtime.as_ref() else {
            return report;
        };
        let shared = &runtime.shared;
        report.started = true;
        report.river_leader = *runtime.river_leader.borrow();
        report.millrace_leader = *runtime.millrace_leader.borrow();
        let completions = &shared.completions;
        report.completer_backlog = completions.max_capacity() - completions.capacity();
        for (queue, record) in shared.fetches.lock().expect("lock poisoned").iter() {
            report.queues.insert(
                queue.clone(),
                QueueHealth {
                    last_fetch_at: record.last_ok_at,
                    fetch_failures: record.failures,
                    running: 0,
                    concurrency: record.concurrency.clone(),
                    concurrency_override_error: record.override_error.clone(),
                    limits_disagreement: record.disagreement.clone(),
                },
            );
        }
        for held in shared.held.lock().expect("lock poisoned").values() {
            if let Some(queue) = report.queues.get_mut(&held.queue) {
                queue.running += 1;
            }
        }
        report.persistent_held = shared
            .persistent_held
            .lock()
            .expect("lock poisoned")
            .clone();
        report
    }
}
