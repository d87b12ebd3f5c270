//! A worker that snoozes its job once, then completes it: a snooze runs the job again later
//! without spending an attempt or recording an error, and counts itself in the job's
//! `snoozes` metadata.
//!
//! ```text
//! cargo run -p millrace --example snooze
//! ```

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{
    Client, Event, EventKind, Job, JobArgs, JobId, JobRow, JobState, MigrateOpts, Migrator,
    QUEUE_DEFAULT, QueueConfig, Schema, WorkError, Worker, Workers,
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
struct PublishPost {
    post_id: i64,
}

impl JobArgs for PublishPost {
    const KIND: &'static str = "publish_post";
}

/// What the worker saw on one run: the attempt and the snoozes so far.
type Run = (i16, i64);

/// Snoozes until its post has been snoozed once (standing in for "until the images are
/// ready"), then publishes it.
#[derive(Clone, Default)]
struct PublishPostWorker {
    runs: Arc<Mutex<Vec<Run>>>,
}

impl Worker for PublishPostWorker {
    type Args = PublishPost;

    async fn work(&self, job: Job<PublishPost>) -> Result<(), WorkError> {
        let snoozes = job.row.metadata["snoozes"].as_i64().unwrap_or(0);
        self.runs
            .lock()
            .expect("lock poisoned")
            .push((job.row.attempt, snoozes));
        if snoozes == 0 {
            println!(
                "  worker: post {} is not ready at attempt {}; snoozing",
                job.args.post_id, job.row.attempt
            );
            return Err(WorkError::snooze(Duration::from_millis(200)));
        }
        println!(
            "  worker: publishing post {} at attempt {} after {snoozes} snooze",
            job.args.post_id, job.row.attempt
        );
        Ok(())
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let worker = PublishPostWorker::default();
    let mut workers = Workers::new();
    workers.register(worker.clone())?;
    let client = Client::builder(PgDriver::new(pool).with_schema(schema))
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .build()?;
    let mut events = client.subscribe();
    client.start().await?;

    let id = client
        .insert(PublishPost { post_id: 7 }, None)
        .await?
        .job
        .id;
    println!("inserted job {id}");

    let (kind, _) = outcome(&mut events, id).await?;
    ensure(
        kind == EventKind::JobSnoozed,
        format!("the first run ended {kind:?}"),
    )?;
    let row = client.job_get(id).await?;
    println!(
        "snoozed: job is {} at attempt {}, metadata {}, {} errors",
        row.state,
        row.attempt,
        row.metadata,
        row.errors.len()
    );
    ensure(
        row.metadata["snoozes"] == 1 && row.errors.is_empty(),
        format!("the snoozed job is {row:?}"),
    )?;

    let (kind, _) = outcome(&mut events, id).await?;
    ensure(
        kind == EventKind::JobCompleted,
        format!("the second run ended {kind:?}"),
    )?;
    client.stop().await?;

    let row = client.job_get(id).await?;
    println!(
        "completed: job is {} at attempt {}, metadata {}",
        row.state, row.attempt, row.metadata
    );
    // The snooze gave its attempt back: the second run is attempt 1 again, not 2.
    let runs = worker.runs.lock().expect("lock poisoned").clone();
    ensure(
        runs == [(1, 0), (1, 1)],
        format!("the worker saw (attempt, snoozes) {runs:?}"),
    )?;
    ensure(
        row.state == JobState::Completed
            && row.attempt == 1
            && row.metadata["snoozes"] == 1
            && row.errors.is_empty(),
        format!("the completed job is {row:?}"),
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
    let schema = Schema::new("millrace_example_snooze")?;
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
