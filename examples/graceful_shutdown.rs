//! Stopping a client: `stop` lets a running job finish and stores its outcome;
//! `stop_and_cancel` fires the running jobs' tokens, aborts those still running after the
//! cancel grace period, and returns them to `available` without spending an attempt.
//!
//! ```text
//! cargo run -p millrace --example graceful_shutdown
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use millrace::{
    Client, Event, EventKind, Job, JobArgs, JobId, JobRow, JobState, MigrateOpts, Migrator,
    QUEUE_DEFAULT, QueueConfig, Schema, WorkError, Worker, Workers,
};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::{broadcast, mpsc};

/// The database used when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The longest the example waits for a job to start or a client to stop.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long a cancelled job may run on before it is aborted.
const CANCEL_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize, Deserialize)]
struct RenderVideo {
    video_id: i64,
    millis: u64,
}

impl JobArgs for RenderVideo {
    const KIND: &'static str = "render_video";
}

/// Renders for `millis` without ever looking at its cancellation token (blocking-style code
/// that cannot be interrupted); it says when it has started.
struct RenderVideoWorker {
    started: mpsc::UnboundedSender<JobId>,
}

impl Worker for RenderVideoWorker {
    type Args = RenderVideo;

    async fn work(&self, job: Job<RenderVideo>) -> Result<(), WorkError> {
        println!(
            "  worker: rendering video {} for {} ms (attempt {})",
            job.args.video_id, job.args.millis, job.row.attempt
        );
        let _ = self.started.send(job.row.id);
        tokio::time::sleep(Duration::from_millis(job.args.millis)).await;
        println!("  worker: video {} rendered", job.args.video_id);
        Ok(())
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let driver = PgDriver::new(pool).with_schema(schema);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let client = {
        let mut workers = Workers::new();
        workers.register(RenderVideoWorker {
            started: started_tx,
        })?;
        Client::builder(driver)
            .workers(workers)
            .queue(QUEUE_DEFAULT, QueueConfig::new())
            .job_timeout(None)
            .cancel_grace(CANCEL_GRACE)
            .fetch_cooldown(Duration::from_millis(10))
            .fetch_poll_interval(Duration::from_millis(100))
            .schedule_interval(Duration::from_millis(100))
            .build()?
    };
    let mut events = client.subscribe();

    // 1. A soft stop waits for the running job, whose completion is stored before it returns.
    client.start().await?;
    let short = client
        .insert(
            RenderVideo {
                video_id: 1,
                millis: 300,
            },
            None,
        )
        .await?
        .job
        .id;
    wait_started(&mut started, short).await?;
    println!("stopping softly while job {short} runs");
    tokio::time::timeout(DEADLINE, client.stop())
        .await
        .map_err(|_| "the soft stop did not end")??;
    let row = client.job_get(short).await?;
    println!("stopped; job {short} is {}", row.state);
    ensure(
        row.state == JobState::Completed,
        format!("after the soft stop job {short} is {row:?}"),
    )?;
    let (kind, _) = outcome(&mut events, short).await?;
    ensure(
        kind == EventKind::JobCompleted,
        format!("job {short} ended {kind:?}"),
    )?;

    // 2. A hard stop cannot wait an hour: the job ignores its token, so it is aborted after the
    // grace period and returned to the queue with its attempt given back.
    client.start().await?;
    let long = client
        .insert(
            RenderVideo {
                video_id: 2,
                millis: 3_600_000,
            },
            None,
        )
        .await?
        .job
        .id;
    wait_started(&mut started, long).await?;
    println!("stopping hard while job {long} runs");
    let stopping = Instant::now();
    tokio::time::timeout(DEADLINE, client.stop_and_cancel())
        .await
        .map_err(|_| "the hard stop did not end")??;
    let took = stopping.elapsed();
    let row = client.job_get(long).await?;
    println!(
        "stopped after {took:?} (grace {CANCEL_GRACE:?}); job {long} is {} at attempt {}, {} errors",
        row.state,
        row.attempt,
        row.errors.len()
    );
    ensure(
        took >= CANCEL_GRACE,
        format!("the hard stop took only {took:?}"),
    )?;
    ensure(
        row.state == JobState::Available && row.attempt == 0 && row.errors.is_empty(),
        format!("after the hard stop job {long} is {row:?}"),
    )?;
    let (kind, _) = outcome(&mut events, long).await?;
    ensure(
        kind == EventKind::JobReturned,
        format!("job {long} ended {kind:?}"),
    )?;
    Ok(())
}

/// Waits until the worker says job `id` has started.
async fn wait_started(
    started: &mut mpsc::UnboundedReceiver<JobId>,
    id: JobId,
) -> Result<(), Box<dyn Error>> {
    match tokio::time::timeout(DEADLINE, started.recv()).await {
        Ok(Some(started)) if started == id => Ok(()),
        other => Err(format!("job {id} did not start: {other:?}").into()),
    }
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
    let schema = Schema::new("millrace_example_graceful_shutdown")?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.name()
    )))
    .execute(&pool)
    .await?;
    Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
        .migrate_up(MigrateOpts::default())
        .await?;
    // Every run starts from an empty job table: the job an earlier run returned would
    // otherwise be worked again.
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
