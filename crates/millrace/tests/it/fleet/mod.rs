//! Leadership, maintenance, heartbeats and periodic jobs with several clients in one
//! process, on the fixture's database: a PostgreSQL schema here, a SQLite file in
//! `crates/millrace-sqlite/tests/it/`, which compiles this file with `#[path]`. The raw SQL
//! that differs between the two (times, JSON, arrays, how a resign request travels) comes from
//! the fixture. On SQLite, leadership notifications travel through the polled
//! `river_notification` outbox instead of `NOTIFY`, about 100 ms late, which the bounds allow
//! for. Tests with killed OS processes live in millrace-cli.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millrace::{
    Client, ClientBuilder, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobState,
    QueueConfig, WorkError, Worker, Workers,
};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::fixture::{D, Db, TestDb};

mod periodic;
mod rescue;

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Tick {}

impl JobArgs for Tick {
    const KIND: &'static str = "tick";
}

#[derive(Clone, Default)]
struct TickWorker {
    runs: Arc<AtomicUsize>,
}

impl Worker for TickWorker {
    type Args = Tick;

    async fn work(&self, _job: Job<Tick>) -> Result<(), WorkError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn builder(db: &TestDb, id: &str) -> ClientBuilder<D> {
    let mut workers = Workers::new();
    workers.register(TickWorker::default()).unwrap();
    Client::builder(db.driver())
        .id(id)
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(10))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .maintenance_interval(Duration::from_millis(100))
        .heartbeat_lease(Duration::from_secs(2))
}

/// `sql` with its table placeholders (`{job}`, `{queue}`, `{leader}`, `{client}`,
/// `{periodic}`) replaced by the test schema's qualified names.
fn qualify_tables(db: &TestDb, sql: &str) -> String {
    sql.replace("{job}", &db.schema().qualify("river_job"))
        .replace("{queue}", &db.schema().qualify("river_queue"))
        .replace("{leader}", &db.schema().qualify("river_leader"))
        .replace("{client}", &db.schema().qualify("millrace_client"))
        .replace("{periodic}", &db.schema().qualify("millrace_periodic_job"))
}

async fn exec(db: &TestDb, sql: &str) {
    sqlx::query(AssertSqlSafe(qualify_tables(db, sql)))
        .execute(db.pool())
        .await
        .unwrap();
}

async fn scalar<T>(db: &TestDb, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, Db> + sqlx::Type<Db> + Send + Unpin,
{
    sqlx::query_scalar(AssertSqlSafe(qualify_tables(db, sql)))
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Waits, up to [`DEADLINE`], until `check` holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    millrace_test::eventually(what, DEADLINE, check).await;
}

async fn river_leader(db: &TestDb) -> Option<String> {
    scalar::<Option<String>>(db, "SELECT max(leader_id) FROM {leader}").await
}

async fn wait_for_outcome(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    id: JobId,
) -> (EventKind, millrace::JobRow) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(Event::Job { kind, job, .. }) = events.recv().await {
                if job.id == id {
                    return (kind, (*job).clone());
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no outcome for job {id}"))
}

#[tokio::test]
async fn one_leader_and_failover_when_it_stops() {
    let db = TestDb::new().await;
    let a = builder(&db, "client-a").build().unwrap();
    let b = builder(&db, "client-b").build().unwrap();
    a.start().await.unwrap();
    b.start().await.unwrap();
    eventually("a leader elected", || async {
        river_leader(&db).await.is_some()
    })
    .await;
    let first = river_leader(&db).await.unwrap();
    let (leader, follower) = if first == "client-a" {
        (&a, "client-b")
    } else {
        (&b, "client-a")
    };
    leader.stop().await.unwrap();
    // The leader resigns on stop and tells the others, who elect within moments, well before
    // the 15 s TTL could run out.
    let started = std::time::Instant::now();
    eventually("the follower takes over", || async {
        river_leader(&db).await.as_deref() == Some(follower)
    })
    .await;
    assert!(
        // Within moments in practice; a generous bound under load.
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let other = if first == "client-a" { &b } else { &a };
    other.stop().await.unwrap();
}

// Regression (SQLite): the follower's listener can read `request_resign` and the leader's
// `resigned` in one poll of the outbox; the wake-up for the request then lingered and made the
// follower resign the moment it was elected. A leader now acts only on requests that arrived
// after its election.
#[tokio::test]
async fn leader_resigns_on_request() {
    let db = TestDb::new().await;
    let a = builder(&db, "client-a").build().unwrap();
    let b = builder(&db, "client-b").build().unwrap();
    a.start().await.unwrap();
    b.start().await.unwrap();
    eventually("a leader elected", || async {
        river_leader(&db).await.is_some()
    })
    .await;
    let first = river_leader(&db).await.unwrap();
    crate::fixture::request_resign(&db).await;
    eventually("another client leads", || async {
        river_leader(&db).await.is_some_and(|l| l != first)
    })
    .await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_river_clients_leadership_is_respected() {
    let db = TestDb::new().await;
    // A River client leads: Millrace must not run River's maintenance (here, the scheduler).
    crate::fixture::insert_river_leader(&db, "river-go").await;
    let client = builder(&db, "client-a").build().unwrap();
    let id = client
        .insert(
            Tick {},
            Some(InsertOpts::new().scheduled_at(jiff::Timestamp::now())),
        )
        .await
        .unwrap()
        .job
        .id;
    client.start().await.unwrap();
    // A second, unscheduled job proves the client is working meanwhile.
    let mut events = client.subscribe();
    let probe = client.insert(Tick {}, None).await.unwrap().job.id;
    wait_for_outcome(&mut events, probe).await;
    assert_eq!(river_leader(&db).await.as_deref(), Some("river-go"));
    assert_eq!(client.job_get(id).await.unwrap().state, JobState::Scheduled);
    client.stop().await.unwrap();
}
