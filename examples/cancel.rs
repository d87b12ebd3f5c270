//! Two ways a job ends `cancelled`: its worker returns `WorkError::cancel` (no more attempts),
//! or another client cancels it while it runs, which fires the job's cancellation token.
//!
//! ```text
//! cargo run -p millrace --example cancel
//! ```

use std::error::Error;
use std::time::Duration;

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

/// The longest the example waits for one outcome.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
struct ChargeAccount {
    account_id: i64,
}

impl JobArgs for ChargeAccount {
    const KIND: &'static str = "charge_account";
}

/// Gives up for good on a closed account: retrying would never help.
struct ChargeAccountWorker;

impl Worker for ChargeAccountWorker {
    type Args = ChargeAccount;

    async fn work(&self, job: Job<ChargeAccount>) -> Result<(), WorkError> {
        println!(
            "  worker: account {} is closed; cancelling",
            job.args.account_id
        );
        Err(WorkError::cancel(format!(
            "account {} is closed",
            job.args.account_id
        )))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ExportReport {
    report_id: i64,
}

impl JobArgs for ExportReport {
    const KIND: &'static str = "export_report";
}

/// A long export that stops when its token fires; it says when it has started.
struct ExportReportWorker {
    started: mpsc::UnboundedSender<JobId>,
}

impl Worker for ExportReportWorker {
    type Args = ExportReport;

    async fn work(&self, job: Job<ExportReport>) -> Result<(), WorkError> {
        println!("  worker: exporting report {}", job.args.report_id);
        let _ = self.started.send(job.row.id);
        tokio::select! {
            _ = job.cancelled() => {
                println!("  worker: export of report {} cancelled; stopping", job.args.report_id);
                Err(WorkError::msg("export interrupted"))
            }
            _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
        }
    }

    fn timeout(&self, _job: &Job<ExportReport>) -> Option<Duration> {
        // Longer than the export: only the cancel stops it.
        Some(Duration::from_secs(120))
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    let driver = PgDriver::new(pool).with_schema(schema);
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let mut workers = Workers::new();
    workers.register(ChargeAccountWorker)?;
    workers.register(ExportReportWorker {
        started: started_tx,
    })?;
    let client = Client::builder(driver.clone())
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .build()?;
    let mut events = client.subscribe();
    client.start().await?;

    // 1. The worker cancels its own job.
    let id = client
        .insert(ChargeAccount { account_id: 42 }, None)
        .await?
        .job
        .id;
    println!("inserted job {id}");
    let (kind, _) = outcome(&mut events, id).await?;
    let row = client.job_get(id).await?;
    println!(
        "job {id}: {kind:?}, now {}, errors {:?}",
        row.state, row.errors
    );
    ensure(
        kind == EventKind::JobCancelled
            && row.state == JobState::Cancelled
            && row.finalized_at.is_some()
            && row.errors.len() == 1
            && row.errors[0].error == "account 42 is closed",
        format!("the self-cancelled job ended {kind:?} as {row:?}"),
    )?;

    // 2. Another client (an admin tool, say) cancels a job while it runs.
    let id = client
        .insert(ExportReport { report_id: 9 }, None)
        .await?
        .job
        .id;
    println!("inserted job {id}");
    match tokio::time::timeout(DEADLINE, started.recv()).await {
        Ok(Some(started)) if started == id => {}
        other => return Err(format!("job {id} did not start: {other:?}").into()),
    }
    let admin = Client::builder(driver).build()?;
    let marked = admin.job_cancel(id).await?;
    // A running job is only marked; its client is told, and its worker's token fires.
    println!(
        "admin cancelled job {id}: it is {} with metadata {}",
        marked.state, marked.metadata
    );
    ensure(
        marked.metadata.get("cancel_attempted_at").is_some(),
        format!("the cancel did not mark job {id}: {marked:?}"),
    )?;
    let (kind, _) = outcome(&mut events, id).await?;
    client.stop().await?;
    let row = client.job_get(id).await?;
    println!("job {id}: {kind:?}, now {}", row.state);
    ensure(
        kind == EventKind::JobCancelled && row.state == JobState::Cancelled,
        format!("the remotely cancelled job ended {kind:?} as {row:?}"),
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
    let schema = Schema::new("millrace_example_cancel")?;
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
