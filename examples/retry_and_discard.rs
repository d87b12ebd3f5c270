//! A job whose worker always fails: each failure is recorded as an `AttemptError`, the job is
//! retried after the retry policy's delay, and discarded once it has used its `max_attempts`.
//!
//! ```text
//! cargo run -p millrace --example retry_and_discard
//! ```

use std::error::Error;
use std::time::Duration;

use jiff::Timestamp;
use millrace::{
    Client, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobRow, JobState, MigrateOpts,
    Migrator, QUEUE_DEFAULT, QueueConfig, RetryPolicy, Schema, WorkError, Worker, Workers,
};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::broadcast;

/// The database used when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The longest the example waits for one outcome.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct SyncInventory {
    warehouse: String,
}

impl JobArgs for SyncInventory {
    const KIND: &'static str = "sync_inventory";
}

/// Fails every time, as a worker does while its upstream is down.
struct SyncInventoryWorker;

impl Worker for SyncInventoryWorker {
    type Args = SyncInventory;

    async fn work(&self, job: Job<SyncInventory>) -> Result<(), WorkError> {
        println!(
            "  worker: syncing {} (attempt {} of {})",
            job.args.warehouse, job.row.attempt, job.row.max_attempts
        );
        Err(WorkError::msg(format!(
            "warehouse {} is unreachable",
            job.args.warehouse
        )))
    }
}

/// Retries after a fixed delay; River's default waits `n⁴` seconds, too long for an example.
struct FixedDelay(Duration);

impl RetryPolicy for FixedDelay {
    fn next_retry(&self, _row: &JobRow, now: Timestamp) -> Timestamp {
        now.checked_add(self.0).unwrap_or(now)
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let mut workers = Workers::new();
    workers.register(SyncInventoryWorker)?;
    let client = Client::builder(PgDriver::new(pool).with_schema(schema))
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        // Long enough that the row read after the first failure still shows one error on a
        // busy machine, short enough for an example.
        .retry_policy(FixedDelay(Duration::from_millis(1_000)))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .build()?;
    let mut events = client.subscribe();
    client.start().await?;

    let id = client
        .insert(
            SyncInventory {
                warehouse: "north".into(),
            },
            Some(InsertOpts::new().max_attempts(2)),
        )
        .await?
        .job
        .id;
    println!("inserted job {id} with max_attempts 2");

    // The first failure is recorded and the job is due again a second later.
    let (kind, _) = outcome(&mut events, id).await?;
    ensure(
        kind == EventKind::JobFailed,
        format!("attempt 1 ended {kind:?}"),
    )?;
    let row = client.job_get(id).await?;
    println!(
        "attempt 1 failed; job is {}, errors: {:?}",
        row.state, row.errors
    );
    ensure(
        row.errors.len() == 1
            && row.errors[0].attempt == 1
            && row.errors[0].error == "warehouse north is unreachable",
        format!("after attempt 1 the errors are {:?}", row.errors),
    )?;
    ensure(
        matches!(
            row.state,
            JobState::Available | JobState::Retryable | JobState::Running
        ),
        format!("after attempt 1 the job is {}", row.state),
    )?;

    // The second failure is its last attempt: the job is discarded, not retried.
    let (kind, job) = outcome(&mut events, id).await?;
    ensure(
        kind == EventKind::JobFailed && job.state == JobState::Discarded,
        format!("attempt 2 ended {kind:?}, leaving the job {}", job.state),
    )?;
    client.stop().await?;

    let row = client.job_get(id).await?;
    println!("attempt 2 failed; job is {}", row.state);
    for error in &row.errors {
        println!(
            "  attempt {} at {}: {}",
            error.attempt, error.at, error.error
        );
    }
    ensure(
        row.state == JobState::Discarded
            && row.attempt == 2
            && row.errors.len() == 2
            && row.errors[1].attempt == 2
            && row.finalized_at.is_some(),
        format!("the discarded job is {row:?}"),
    )?;
    Ok(())
}

/// Waits for the next event about job `id`.
async fn outcome(
    events: &mut broadcast::Receiver<Event>,
    id: JobId,
) -> Result<(EventKind, JobRow), Box<dyn Error>> {
    let wait = async {
        loop {
            if let Event::Job { kind, job, .. } = events.recv().await? {
                if job.id == id {
                    return Ok::<_, broadcast::error::RecvError>((kind, (*job).clone()));
                }
            }
        }
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(format!("no outcome for job {id} within {DEADLINE:?}").into()),
    }
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
    let schema = Schema::new("millrace_example_retry_and_discard")?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.name()
    )))
    .execute(&pool)
    .await?;
    Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
        .migrate_up(MigrateOpts::default())
        .await?;
    // Every run starts from an empty job table, so it prints the same thing each time.
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
