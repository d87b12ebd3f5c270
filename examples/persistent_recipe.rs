//! River's hand-made persistent job, as River's users write it, on Millrace: a periodic job
//! with RunOnStart, unique by every state but `completed`, whose worker loops until its
//! context is cancelled, with its timeout turned off.
//!
//! It works: across two clients only one copy runs, and each tick of the periodic job while it
//! runs is a duplicate skipped. The mistakes this recipe invites are refused with clear
//! errors: a billion `max_attempts` (stored as smallint), and a by-state list without
//! `pending`, also in the periodic job's own options, when the client is built. Prefer the
//! one-call API (`examples/persistent_worker.rs`), which hands its instance over at once on a
//! graceful stop; here a stopped copy waits for the next start.
//!
//! Across processes: run `node` in three terminals and `kill -9` the one that prints
//! "consuming". Its heartbeat lease (15 s by default) runs out, its job is rescued, and one of
//! the other two takes it over; at no time do two copies run.
//!
//! ```text
//! cargo run -p millrace --example persistent_recipe
//! cargo run -p millrace --example persistent_recipe -- node a   # and b, c
//! ```

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millrace::{
    Client, Error as MillraceError, InsertOpts, Job, JobArgs, JobListParams, JobState, MigrateOpts,
    Migrator, PeriodicJob, QUEUE_DEFAULT, QueueConfig, Schedule, Schema, UniqueOpts, WorkError,
    Worker, Workers,
};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};

/// The database used when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The longest the example waits for something to happen.
const DEADLINE: Duration = Duration::from_secs(15);

/// How often the periodic job tries to insert the long-running job. River's recipe uses
/// minutes; the example uses half a second so that several ticks pass while it runs.
const TICK: Duration = Duration::from_millis(500);

/// Every state but `completed` (and the other final ones): while a copy is available,
/// pending, running, waiting for a retry or scheduled, inserting another is a duplicate.
const LIVE_STATES: [JobState; 5] = [
    JobState::Available,
    JobState::Pending,
    JobState::Running,
    JobState::Retryable,
    JobState::Scheduled,
];

#[derive(Debug, Serialize, Deserialize)]
struct ConsumeStream {}

impl JobArgs for ConsumeStream {
    const KIND: &'static str = "consume_stream";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().unique(UniqueOpts::new().by_state(LIVE_STATES))
    }
}

/// Loops until its job's token fires (on a hard stop, a remote cancel or a timeout).
#[derive(Clone, Default)]
struct ConsumeStreamWorker {
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    starts: Arc<AtomicUsize>,
}

/// Counts a copy as running while it lives, however it ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Worker for ConsumeStreamWorker {
    type Args = ConsumeStream;

    async fn work(&self, job: Job<ConsumeStream>) -> Result<(), WorkError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(self.running.clone());
        self.most_running.fetch_max(now, Ordering::SeqCst);
        println!(
            "  worker: consuming the stream in job {} (attempt {})",
            job.row.id, job.row.attempt
        );
        let mut consumed = 0u64;
        loop {
            tokio::select! {
                // As River's recipe returns ctx.Err(): on a stop, the job goes back to the
                // queue and runs again on the next start.
                _ = job.cancelled() => {
                    println!("  worker: stopping after {consumed} messages");
                    return Err(WorkError::msg("stopped while consuming the stream"));
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => consumed += 1,
            }
        }
    }

    // The client's default timeout (one minute) would cancel the loop: turn it off.
    fn timeout(&self, _job: &Job<ConsumeStream>) -> Option<Duration> {
        Some(Duration::MAX)
    }
}

/// The periodic job that keeps one copy of the long-running job alive.
fn periodic() -> PeriodicJob {
    PeriodicJob::new(Schedule::interval(TICK), || (ConsumeStream {}, None)).run_on_start(true)
}

/// A client with the worker and the periodic job. A client whose heartbeat lease runs out
/// (its process died) has its running jobs rescued by another client, which then works them.
fn client(
    driver: PgDriver,
    id: &str,
    worker: ConsumeStreamWorker,
    heartbeat_lease: Duration,
) -> Result<Client<PgDriver>, Box<dyn Error>> {
    let mut workers = Workers::new();
    workers.register(worker)?;
    let client = Client::builder(driver)
        .id(id)
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        .fetch_poll_interval(Duration::from_millis(100))
        .cancel_grace(Duration::from_millis(500))
        .heartbeat_lease(heartbeat_lease)
        .periodic_job(periodic())
        .build()?;
    Ok(client)
}

/// Millrace's default heartbeat lease, which the in-process scenario keeps.
const HEARTBEAT_LEASE: Duration = Duration::from_secs(15);

/// Runs one process of a fleet on `schema`, which must be migrated: a client with the worker
/// and the periodic job, until Ctrl-C or until the process is killed.
pub async fn node(
    pool: PgPool,
    schema: Schema,
    id: &str,
    heartbeat_lease: Duration,
) -> Result<(), Box<dyn Error>> {
    let driver = PgDriver::new(pool).with_schema(schema);
    let client = client(driver, id, ConsumeStreamWorker::default(), heartbeat_lease)?;
    client.start().await?;
    println!(
        "node {id}: started, heartbeat lease {heartbeat_lease:?}; stop with Ctrl-C or SIGTERM"
    );
    // The loop ends only when its token fires: no grace, so the stop cancels it at once (see
    // `run`).
    let signal = client.run_until_shutdown(Duration::ZERO).await?;
    println!("node {id}: stopped on {signal}");
    Ok(())
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let driver = PgDriver::new(pool).with_schema(schema);
    let worker = ConsumeStreamWorker::default();
    // Two clients, as two processes would be, each with the worker and the periodic job.
    let a = client(driver.clone(), "node-a", worker.clone(), HEARTBEAT_LEASE)?;
    let b = client(driver.clone(), "node-b", worker.clone(), HEARTBEAT_LEASE)?;
    a.start().await?;
    b.start().await?;

    // 1. RunOnStart inserts the job as soon as a client schedules periodic jobs; one of the
    // two clients works it.
    wait_until("the long-running job starts", || {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await?;
    // 2. Several ticks later: every tick met the running copy and was skipped, so there is
    // still one row and one copy.
    tokio::time::sleep(TICK * 4).await;
    let rows = a
        .job_list(JobListParams::new().kinds([ConsumeStream::KIND]))
        .await?
        .jobs;
    let most = worker.most_running.load(Ordering::SeqCst);
    let starts = worker.starts.load(Ordering::SeqCst);
    println!(
        "after {} ticks: {} row(s) of {}, {starts} start(s), at most {most} running at once",
        4,
        rows.len(),
        ConsumeStream::KIND
    );
    ensure(
        rows.len() == 1 && rows[0].state == JobState::Running,
        format!("the rows are {rows:?}"),
    )?;
    ensure(
        most == 1 && starts == 1,
        format!("{starts} starts, {most} at once"),
    )?;

    // 3. The recipe's mistakes are refused before anything is stored.
    // A billion attempts, "so that it never gives up": max_attempts is a smallint.
    let billion = a
        .insert(
            ConsumeStream {},
            Some(InsertOpts::new().max_attempts(1_000_000_000)),
        )
        .await;
    match billion {
        Err(MillraceError::InvalidInsert(message)) => {
            println!("max_attempts(1_000_000_000): {message}");
            ensure(
                message.contains("smallint") && message.contains("persistent worker"),
                format!("the message does not explain smallint and persistent workers: {message}"),
            )?;
        }
        other => {
            return Err(format!("a billion attempts was not refused: {other:?}").into());
        }
    }
    // A by-state list without `pending`: a pending copy would not block a second one.
    let without_pending = InsertOpts::new().unique(UniqueOpts::new().by_state([
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Scheduled,
    ]));
    match a.insert(ConsumeStream {}, Some(without_pending)).await {
        Err(MillraceError::InvalidInsert(message)) => {
            println!("by_state without pending: {message}");
            ensure(
                message.contains("missing pending"),
                format!("the message does not name the missing state: {message}"),
            )?;
        }
        other => {
            return Err(
                format!("a by-state list without pending was not refused: {other:?}").into(),
            );
        }
    }

    // The same mistake in the periodic job's options is refused when the client is built,
    // not logged at every tick.
    let mistaken = PeriodicJob::new(Schedule::interval(TICK), || {
        let opts = InsertOpts::new().unique(UniqueOpts::new().by_state([
            JobState::Available,
            JobState::Running,
            JobState::Retryable,
            JobState::Scheduled,
        ]));
        (ConsumeStream {}, Some(opts))
    });
    match Client::builder(driver).periodic_job(mistaken).build() {
        Err(MillraceError::InvalidInsert(message)) => {
            println!("periodic job without pending: {message}");
            ensure(
                message.contains("missing pending"),
                format!("the message does not name the missing state: {message}"),
            )?;
        }
        other => {
            return Err(format!(
                "a periodic job without pending was not refused: {:?}",
                other.map(|_| "built")
            )
            .into());
        }
    }

    // 4. The loop only ends when its token fires: a soft stop would wait for ever, so stop
    // hard. The job goes back to `available`, its attempt given back, for the next start.
    tokio::time::timeout(DEADLINE, async {
        let (a, b) = tokio::join!(a.stop_and_cancel(), b.stop_and_cancel());
        a.and(b)
    })
    .await
    .map_err(|_| "the clients did not stop")??;
    let rows = a
        .job_list(JobListParams::new().kinds([ConsumeStream::KIND]))
        .await?
        .jobs;
    println!(
        "after the stop: {:?}",
        rows.iter()
            .map(|r| (r.id, r.state, r.attempt))
            .collect::<Vec<_>>()
    );
    ensure(
        rows.len() == 1 && rows[0].state == JobState::Available,
        format!("after the stop the rows are {rows:?}"),
    )?;
    ensure(
        worker.running.load(Ordering::SeqCst) == 0,
        "a copy still runs after the stop",
    )?;
    Ok(())
}

/// Polls `done` every 10 ms until it holds, up to [`DEADLINE`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), Box<dyn Error>> {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .map_err(|_| format!("{what}: not within {DEADLINE:?}").into())
}

/// Turns an unexpected outcome into an error.
fn ensure(ok: bool, what: impl Into<String>) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected outcome: {}", what.into()).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let pool = PgPool::connect(&url).await?;
    let schema = Schema::new("millrace_example_persistent_recipe")?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.name()
    )))
    .execute(&pool)
    .await?;
    Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
        .migrate_up(MigrateOpts::default())
        .await?;
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("node") {
        let id = format!("recipe-{}", args.next().unwrap_or_else(|| "a".to_owned()));
        return node(pool, schema, &id, HEARTBEAT_LEASE).await;
    }
    // Every run starts from an empty job table: the job an earlier run stopped would still be
    // there, and the periodic job's first insert would be a duplicate of it.
    sqlx::query(AssertSqlSafe(format!(
        "TRUNCATE {}",
        schema.qualify("river_job")
    )))
    .execute(&pool)
    .await?;
    run(pool, schema).await?;
    println!("ok");
    Ok(())
}
