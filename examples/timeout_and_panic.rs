//! A job that overruns its worker's timeout and a job whose worker panics: both attempts are
//! recorded as errors (the panic with its stack trace), and the client goes on working jobs.
//!
//! ```text
//! cargo run -p millrace --example timeout_and_panic
//! ```
//!
//! The panic's message also appears on stderr: Millrace catches the panic, but the process's
//! panic hook still reports it.

use std::error::Error;
use std::time::Duration;

use millrace::{
    Client, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobRow, JobState, MigrateOpts,
    Migrator, QUEUE_DEFAULT, QueueConfig, Schema, WorkError, Worker, Workers,
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
struct CallPartner {
    partner: String,
}

impl JobArgs for CallPartner {
    const KIND: &'static str = "call_partner";
}

/// Calls a partner that never answers, giving up when its token fires at the timeout.
struct CallPartnerWorker;

impl Worker for CallPartnerWorker {
    type Args = CallPartner;

    async fn work(&self, job: Job<CallPartner>) -> Result<(), WorkError> {
        println!("  worker: calling {}", job.args.partner);
        tokio::select! {
            _ = job.cancelled() => Err(WorkError::msg("call abandoned")),
            _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
        }
    }

    // This worker's own timeout, over the client's (one minute by default).
    fn timeout(&self, _job: &Job<CallPartner>) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ParseUpload {
    upload_id: i64,
}

impl JobArgs for ParseUpload {
    const KIND: &'static str = "parse_upload";
}

/// Has a bug.
struct ParseUploadWorker;

impl Worker for ParseUploadWorker {
    type Args = ParseUpload;

    async fn work(&self, job: Job<ParseUpload>) -> Result<(), WorkError> {
        println!("  worker: parsing upload {}", job.args.upload_id);
        let parts: Vec<&str> = Vec::new();
        // The bug: an upload with no parts.
        let first = parts[0];
        println!("  worker: first part {first}");
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Ping {}

impl JobArgs for Ping {
    const KIND: &'static str = "ping";
}

struct PingWorker;

impl Worker for PingWorker {
    type Args = Ping;

    async fn work(&self, _job: Job<Ping>) -> Result<(), WorkError> {
        println!("  worker: pong");
        Ok(())
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let mut workers = Workers::new();
    workers.register(CallPartnerWorker)?;
    workers.register(ParseUploadWorker)?;
    workers.register(PingWorker)?;
    let client = Client::builder(PgDriver::new(pool).with_schema(schema))
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        .cancel_grace(Duration::from_millis(200))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .build()?;
    let mut events = client.subscribe();
    client.start().await?;
    // One attempt each, so the failures end the jobs rather than schedule retries.
    let once = Some(InsertOpts::new().max_attempts(1));

    let slow = client
        .insert(
            CallPartner {
                partner: "acme".into(),
            },
            once.clone(),
        )
        .await?
        .job
        .id;
    let (kind, _) = outcome(&mut events, slow).await?;
    let row = client.job_get(slow).await?;
    println!(
        "job {slow}: {kind:?}, now {}, errors {:?}",
        row.state, row.errors
    );
    ensure(
        kind == EventKind::JobFailed
            && row.state == JobState::Discarded
            && row.errors.len() == 1
            && row.errors[0].error.contains("timed out after 100ms"),
        format!("the slow job ended {kind:?} as {row:?}"),
    )?;

    let buggy = client
        .insert(ParseUpload { upload_id: 5 }, once)
        .await?
        .job
        .id;
    let (kind, _) = outcome(&mut events, buggy).await?;
    let row = client.job_get(buggy).await?;
    let error = row.errors.last().ok_or("the panic recorded no error")?;
    let trace_lines = error.trace.lines().count();
    println!(
        "job {buggy}: {kind:?}, now {}, error {:?} with a {trace_lines}-line trace",
        row.state, error.error
    );
    ensure(
        kind == EventKind::JobFailed
            && row.state == JobState::Discarded
            && error.error.starts_with("panic: index out of bounds")
            && !error.trace.is_empty(),
        format!("the panicking job ended {kind:?} as {row:?}"),
    )?;

    // The client is unharmed.
    let ping = client.insert(Ping {}, None).await?.job.id;
    let (kind, _) = outcome(&mut events, ping).await?;
    println!("job {ping}: {kind:?}");
    ensure(
        kind == EventKind::JobCompleted,
        format!("the ping ended {kind:?}"),
    )?;
    client.stop().await?;
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
    let schema = Schema::new("millrace_example_timeout_and_panic")?;
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
