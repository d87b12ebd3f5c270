//! Inserts typed jobs three ways (directly, in a transaction that commits, in one that rolls
//! back), works them, and waits for their outcomes through the client's events.
//!
//! ```text
//! cargo run -p millrace --example insert_and_work
//! ```

use std::collections::HashMap;
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

/// The longest the example waits for its jobs' outcomes.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct SendWelcome {
    user_id: i64,
    email: String,
}

impl JobArgs for SendWelcome {
    const KIND: &'static str = "send_welcome";
}

/// Sends welcome emails, remembering whom it welcomed.
#[derive(Clone, Default)]
struct SendWelcomeWorker {
    welcomed: Arc<Mutex<Vec<i64>>>,
}

impl Worker for SendWelcomeWorker {
    type Args = SendWelcome;

    async fn work(&self, job: Job<SendWelcome>) -> Result<(), WorkError> {
        println!(
            "  worker: welcoming user {} at {} (job {}, attempt {})",
            job.args.user_id, job.args.email, job.row.id, job.row.attempt
        );
        self.welcomed
            .lock()
            .expect("lock poisoned")
            .push(job.args.user_id);
        Ok(())
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let worker = SendWelcomeWorker::default();
    let mut workers = Workers::new();
    workers.register(worker.clone())?;
    let client = Client::builder(PgDriver::new(pool.clone()).with_schema(schema))
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new().max_workers(10))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .build()?;
    // Subscribe before starting, so no outcome can slip by.
    let mut events = client.subscribe();
    client.start().await?;

    let direct = client
        .insert(
            SendWelcome {
                user_id: 1,
                email: "ada@example.com".into(),
            },
            None,
        )
        .await?
        .job
        .id;
    println!("inserted job {direct} directly");

    // The job commits with the transaction, together with whatever else it wrote.
    let mut tx = pool.begin().await?;
    let committed = client
        .insert_tx(
            &mut tx,
            SendWelcome {
                user_id: 2,
                email: "grace@example.com".into(),
            },
            None,
        )
        .await?
        .job
        .id;
    tx.commit().await?;
    println!("inserted job {committed} in a transaction that committed");

    // A rolled-back transaction takes its job with it: it is never stored, never worked.
    let mut tx = pool.begin().await?;
    let rolled_back = client
        .insert_tx(
            &mut tx,
            SendWelcome {
                user_id: 3,
                email: "alan@example.com".into(),
            },
            None,
        )
        .await?
        .job
        .id;
    tx.rollback().await?;
    println!("inserted job {rolled_back} in a transaction that rolled back");

    let outcomes = outcomes(&mut events, &[direct, committed]).await?;
    for (id, (kind, _)) in &outcomes {
        println!("job {id}: {kind:?}");
        ensure(
            *kind == EventKind::JobCompleted,
            format!("job {id} ended {kind:?}"),
        )?;
    }
    client.stop().await?;
    println!("client stopped");

    for id in [direct, committed] {
        let row = client.job_get(id).await?;
        ensure(
            row.state == JobState::Completed && row.attempt == 1,
            format!("job {id} is {} at attempt {}", row.state, row.attempt),
        )?;
    }
    let gone = client.job_get(rolled_back).await;
    ensure(
        matches!(gone, Err(millrace::Error::JobNotFound(_))),
        format!("the rolled-back job {rolled_back} exists: {gone:?}"),
    )?;
    println!("job {rolled_back} does not exist");
    let mut welcomed = worker.welcomed.lock().expect("lock poisoned").clone();
    welcomed.sort_unstable();
    ensure(
        welcomed == [1, 2],
        format!("the worker welcomed users {welcomed:?}"),
    )?;
    Ok(())
}

/// Waits for one outcome of each job in `ids`.
async fn outcomes(
    events: &mut broadcast::Receiver<Event>,
    ids: &[JobId],
) -> Result<HashMap<JobId, (EventKind, JobRow)>, Box<dyn Error>> {
    let mut seen = HashMap::new();
    let wait = async {
        while seen.len() < ids.len() {
            match events.recv().await? {
                Event::Job { kind, job, .. } if ids.contains(&job.id) => {
                    seen.insert(job.id, (kind, (*job).clone()));
                }
                _ => {}
            }
        }
        Ok::<_, broadcast::error::RecvError>(())
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(result) => result?,
        Err(_) => return Err(format!("no outcome for all of {ids:?} within {DEADLINE:?}").into()),
    }
    Ok(seen)
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
    let schema = Schema::new("millrace_example_insert_and_work")?;
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
