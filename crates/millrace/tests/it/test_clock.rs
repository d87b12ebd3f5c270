//! A client on a [`TestClock`] (issue 8): retries, scheduled jobs and periodic jobs follow the
//! clock the test moves. Shared with the SQLite driver:
//! `crates/millrace-sqlite/tests/it/main.rs` compiles this file against its own `fixture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use millrace::{
    Client, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobRow, JobState, PeriodicJob,
    QueueConfig, Schedule, TestClock, WorkError, Worker, Workers,
};
use millrace_driver::{Driver as _, Executor as _};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::fixture::{D, TestDb, claim_as};

/// The longest a test waits for what it expects.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a test watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(1500);
const HOUR: Duration = Duration::from_secs(3600);
/// The precision times are stored with, at worst (SQLite's).
const MILLI: Duration = Duration::from_millis(1);

#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    /// How many attempts fail before one succeeds.
    failures: usize,
}

impl JobArgs for Flaky {
    const KIND: &'static str = "flaky";
}

#[derive(Clone, Default)]
struct FlakyWorker {
    runs: Arc<AtomicUsize>,
}

impl Worker for FlakyWorker {
    type Args = Flaky;

    async fn work(&self, job: Job<Flaky>) -> Result<(), WorkError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if job.row.errors.len() < job.args.failures {
            return Err(WorkError::msg("not yet"));
        }
        Ok(())
    }
}

struct Clocked {
    client: Client<D>,
    clock: TestClock,
    events: broadcast::Receiver<Event>,
}

async fn start(db: &TestDb, periodic: Option<PeriodicJob>) -> Clocked {
    let clock = TestClock::new(Timestamp::now());
    let mut workers = Workers::new();
    workers.register(FlakyWorker::default()).unwrap();
    let mut builder = Client::builder(db.driver())
        .test_clock(clock.clone())
        .workers(workers)
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(50))
        .schedule_interval(Duration::from_millis(100));
    if let Some(job) = periodic {
        builder = builder.periodic_job(job);
    }
    let client = builder.build().unwrap();
    let events = client.subscribe();
    client.start().await.unwrap();
    Clocked {
        client,
        clock,
        events,
    }
}

impl Clocked {
    /// The next outcome of a job matching `which`, or `None` when none comes within `wait`.
    async fn next_outcome(
        &mut self,
        wait: Duration,
        which: impl Fn(&JobRow) -> bool,
    ) -> Option<(EventKind, JobRow)> {
        tokio::time::timeout(wait, async {
            loop {
                if let Ok(Event::Job { kind, job, .. }) = self.events.recv().await {
                    if which(&job) {
                        return (kind, (*job).clone());
                    }
                }
            }
        })
        .await
        .ok()
    }

    async fn outcome(&mut self, id: JobId) -> (EventKind, JobRow) {
        self.next_outcome(DEADLINE, |j| j.id == id)
            .await
            .unwrap_or_else(|| panic!("no outcome for job {id} within {DEADLINE:?}"))
    }

    async fn assert_quiet(&mut self, id: JobId) {
        if let Some((kind, job)) = self.next_outcome(QUIET, |j| j.id == id).await {
            panic!("job {id} ran before the clock reached it: {kind:?}, {job:?}");
        }
    }
}

fn near(actual: Timestamp, expected: Timestamp, within: Duration) -> bool {
    actual.duration_since(expected).unsigned_abs() <= within
}

#[tokio::test]
async fn default_retries_are_worked_once_the_clock_passes_them() {
    let db = TestDb::new().await;
    let mut c = start(&db, None).await;
    let id = c
        .client
        .insert(Flaky { failures: 2 }, None)
        .await
        .unwrap()
        .job
        .id;
    let (kind, _) = c.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    // River's first retry is 1 s (± 10 %) after the failure, by the test clock.
    let row = c.client.job_get(id).await.unwrap();
    assert!(
        near(
            row.scheduled_at,
            c.clock.now() + SignedDuration::from_secs(1),
            Duration::from_millis(150)
        ),
        "retry at {} for a clock at {}",
        row.scheduled_at,
        c.clock.now()
    );
    c.assert_quiet(id).await;

    c.clock.advance(Duration::from_secs(2));
    let (kind, second) = c.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    assert_eq!(second.attempt, 2);
    // The second retry is 16 s (± 10 %) later: beyond the 5 s within which a retry is
    // available at once, so the scheduler makes it available by the test clock too.
    let row = c.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Retryable);
    assert!(near(
        row.scheduled_at,
        c.clock.now() + SignedDuration::from_secs(16),
        Duration::from_millis(1700)
    ));
    c.assert_quiet(id).await;

    c.clock.advance(Duration::from_secs(18));
    let (kind, third) = c.outcome(id).await;
    assert_eq!(kind, EventKind::JobCompleted);
    assert_eq!(third.attempt, 3);
    c.client.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_scheduled_an_hour_ahead_runs_once_the_clock_gets_there() {
    let db = TestDb::new().await;
    let mut c = start(&db, None).await;
    let at = c.clock.now() + SignedDuration::from_hours(1);
    let job = c
        .client
        .insert(
            Flaky { failures: 0 },
            Some(InsertOpts::new().scheduled_at(at)),
        )
        .await
        .unwrap()
        .job;
    assert_eq!(job.state, JobState::Scheduled);
    c.assert_quiet(job.id).await;
    assert_eq!(
        c.client.job_get(job.id).await.unwrap().state,
        JobState::Scheduled
    );

    c.clock.advance(HOUR);
    let (kind, row) = c.outcome(job.id).await;
    assert_eq!(kind, EventKind::JobCompleted);
    // Databases keep micro- or milliseconds.
    assert!(
        near(row.attempted_at.unwrap(), c.clock.now(), MILLI),
        "fetched by the test clock"
    );
    c.client.stop().await.unwrap();
}

#[tokio::test]
async fn an_hourly_periodic_job_inserts_its_next_run_once_the_clock_advances() {
    let db = TestDb::new().await;
    let hourly = PeriodicJob::new(Schedule::interval(HOUR), || (Flaky { failures: 0 }, None))
        .id("hourly_flaky");
    let mut c = start(&db, Some(hourly)).await;
    let started = c.clock.now();
    let ids = ["hourly_flaky".to_owned()];
    // The leaseholder stores the first run an hour after the clock's start.
    let first = tokio::time::timeout(DEADLINE, async {
        loop {
            let stored = db.driver().executor().periodic_job_get(&ids).await.unwrap();
            if let Some((_, next)) = stored.first() {
                return *next;
            }
            // Polling a row: nothing announces that the schedule was stored.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the periodic job's first run is stored");
    assert!(near(first, started + SignedDuration::from_hours(1), MILLI));
    let periodic = |job: &JobRow| job.kind == Flaky::KIND;
    assert!(
        c.next_outcome(QUIET, periodic).await.is_none(),
        "nothing runs before the hour"
    );

    c.clock.advance(HOUR);
    let (kind, job) = c
        .next_outcome(DEADLINE, periodic)
        .await
        .expect("the periodic job runs once the clock reaches the hour");
    assert_eq!(kind, EventKind::JobCompleted);
    assert_eq!(
        job.metadata[millrace::METADATA_PERIODIC_JOB_ID],
        "hourly_flaky"
    );
    assert!(
        near(job.created_at, first, MILLI),
        "inserted at the test clock's time"
    );
    let stored = db.driver().executor().periodic_job_get(&ids).await.unwrap();
    assert!(near(
        stored[0].1,
        started + SignedDuration::from_hours(2),
        MILLI
    ));
    c.client.stop().await.unwrap();
}

/// Issue 21: a rescue's attempt error is stamped with the client's clock at the rescue, as
/// River's rescuer stamps it, not with the time the rescued attempt started; for a dead
/// client's job (the Millrace rescuer) and a stuck job (River's rescuer) alike.
#[tokio::test]
async fn rescues_are_stamped_with_the_clock_at_the_rescue() {
    let db = TestDb::new().await;
    // Half an hour ahead of the system clock, so a time taken from the system or the database
    // cannot pass for the test clock's.
    let clock = TestClock::new(Timestamp::now() + SignedDuration::from_mins(30));
    let mut workers = Workers::new();
    workers.register(FlakyWorker::default()).unwrap();
    let client = Client::builder(db.driver())
        .test_clock(clock.clone())
        .workers(workers)
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new())
        .fetch_poll_interval(Duration::from_millis(50))
        .maintenance_interval(Duration::from_millis(100))
        .heartbeat_lease(Duration::from_secs(2))
        .build()
        .unwrap();
    let of_dead = client
        .insert(Flaky { failures: 0 }, None)
        .await
        .unwrap()
        .job
        .id;
    let stuck = client
        .insert(Flaky { failures: 0 }, None)
        .await
        .unwrap()
        .job
        .id;
    // A Millrace client took one job two minutes ago and died: its lease has run out. A River
    // client (no heartbeat) took the other two hours ago, past RescueStuckJobsAfter.
    claim_as(&db, of_dead, "ghost", Duration::from_secs(120)).await;
    claim_as(&db, stuck, "river-go", 2 * HOUR).await;
    db.driver()
        .executor()
        .client_heartbeat("ghost", Duration::ZERO)
        .await
        .unwrap();
    client.start().await.unwrap();

    for id in [of_dead, stuck] {
        let rescued = tokio::time::timeout(DEADLINE, async {
            loop {
                let row = client.job_get(id).await.unwrap();
                if !row.errors.is_empty() {
                    return row;
                }
                // Polling a row: a rescue sends no event.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("job {id} was not rescued within {DEADLINE:?}"));
        let error = &rescued.errors[0];
        assert!(error.error.contains("rescued"), "{error:?}");
        assert_eq!(
            error.at,
            clock.now(),
            "job {id}: stamped at the rescue by the test clock, attempted at {:?}",
            rescued.attempted_at
        );
    }
    client.stop().await.unwrap();
}
