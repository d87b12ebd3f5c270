//! A worker that writes business rows, inserts a follow-up job and completes its own job, all
//! in one transaction: they commit together, or (when a write fails) none of them does and
//! the attempt is recorded as an error.
//!
//! ```text
//! cargo run -p millrace --example complete_in_transaction
//! ```

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
struct RecordPayment {
    invoice_id: i64,
    cents: i64,
}

impl JobArgs for RecordPayment {
    const KIND: &'static str = "record_payment";
}

#[derive(Debug, Serialize, Deserialize)]
struct SendReceipt {
    invoice_id: i64,
}

impl JobArgs for SendReceipt {
    const KIND: &'static str = "send_receipt";
}

/// Records a payment, queues its receipt and completes its job in one transaction.
struct RecordPaymentWorker {
    /// The payments table, schema-qualified.
    payments: String,
}

impl Worker for RecordPaymentWorker {
    type Args = RecordPayment;

    async fn work(&self, job: Job<RecordPayment>) -> Result<(), WorkError> {
        let client = job.client::<PgDriver>()?;
        let mut tx = client.driver().pool().begin().await?;
        // A failing write returns early; dropping `tx` rolls back, and the `?` records the
        // database's error as the attempt's.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (job_id, invoice_id, cents) VALUES ($1, $2, $3)",
            self.payments
        )))
        .bind(job.row.id.0)
        .bind(job.args.invoice_id)
        .bind(job.args.cents)
        .execute(&mut *tx)
        .await?;
        client
            .insert_tx(
                &mut tx,
                SendReceipt {
                    invoice_id: job.args.invoice_id,
                },
                None,
            )
            .await?;
        job.complete_tx::<PgDriver>(&mut tx).await?;
        tx.commit().await?;
        println!(
            "  worker: recorded {} cents for invoice {} and completed job {}",
            job.args.cents, job.args.invoice_id, job.row.id
        );
        Ok(())
    }
}

struct SendReceiptWorker;

impl Worker for SendReceiptWorker {
    type Args = SendReceipt;

    async fn work(&self, job: Job<SendReceipt>) -> Result<(), WorkError> {
        println!(
            "  worker: sending the receipt for invoice {}",
            job.args.invoice_id
        );
        Ok(())
    }
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    // The application's own table, next to the job tables for the example's sake.
    let payments = schema.qualify("example_payment");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {payments} (
            job_id bigint PRIMARY KEY,
            invoice_id bigint NOT NULL,
            cents bigint NOT NULL CHECK (cents > 0)
        )"
    )))
    .execute(&pool)
    .await?;

    let mut workers = Workers::new();
    workers.register(RecordPaymentWorker {
        payments: payments.clone(),
    })?;
    workers.register(SendReceiptWorker)?;
    let client = Client::builder(PgDriver::new(pool.clone()).with_schema(schema))
        .workers(workers)
        .queue(QUEUE_DEFAULT, QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(100))
        .schedule_interval(Duration::from_millis(100))
        .build()?;
    let mut events = client.subscribe();
    client.start().await?;

    // 1. Everything commits together.
    let paid = client
        .insert(
            RecordPayment {
                invoice_id: 100,
                cents: 2_500,
            },
            None,
        )
        .await?
        .job
        .id;
    let (kind, _) = next_event(&mut events, |job| job.id == paid).await?;
    ensure(
        kind == EventKind::JobCompleted,
        format!("job {paid} ended {kind:?}"),
    )?;
    let (kind, receipt) = next_event(&mut events, |job| {
        job.kind == SendReceipt::KIND && job.args["invoice_id"] == 100
    })
    .await?;
    ensure(
        kind == EventKind::JobCompleted,
        format!("the receipt ended {kind:?}"),
    )?;
    let row = client.job_get(paid).await?;
    let stored = payment_count(&pool, &payments, paid).await?;
    println!(
        "job {paid} is {}, {stored} payment row for it, receipt job {} completed",
        row.state, receipt.id
    );
    ensure(
        row.state == JobState::Completed && stored == 1,
        format!("job {paid} is {row:?} with {stored} payment rows"),
    )?;

    // 2. The CHECK constraint refuses the write: no payment, no receipt, no completion, and
    // the attempt's error is the database's.
    let refused = client
        .insert(
            RecordPayment {
                invoice_id: 101,
                cents: -5,
            },
            Some(InsertOpts::new().max_attempts(1)),
        )
        .await?
        .job
        .id;
    let (kind, _) = next_event(&mut events, |job| job.id == refused).await?;
    client.stop().await?;
    let row = client.job_get(refused).await?;
    let stored = payment_count(&pool, &payments, refused).await?;
    let receipts = client
        .job_list(millrace::JobListParams::new().kinds([SendReceipt::KIND]))
        .await?
        .jobs
        .into_iter()
        .filter(|job| job.args["invoice_id"] == 101)
        .count();
    println!(
        "job {refused}: {kind:?}, now {}, {stored} payment rows, {receipts} receipts, errors {:?}",
        row.state, row.errors
    );
    ensure(
        kind == EventKind::JobFailed
            && row.state == JobState::Discarded
            && stored == 0
            && receipts == 0
            && row.errors.len() == 1
            && row.errors[0].error.contains("check constraint"),
        format!(
            "the refused job ended {kind:?} as {row:?} with {stored} payments, {receipts} receipts"
        ),
    )?;
    Ok(())
}

/// How many payment rows job `id` wrote.
async fn payment_count(pool: &PgPool, payments: &str, id: JobId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {payments} WHERE job_id = $1"
    )))
    .bind(id.0)
    .fetch_one(pool)
    .await
}

/// Waits for the next job event whose job matches `wanted`.
async fn next_event(
    events: &mut broadcast::Receiver<Event>,
    wanted: impl Fn(&JobRow) -> bool,
) -> Result<(EventKind, JobRow), Box<dyn Error>> {
    let wait = async {
        loop {
            if let Event::Job { kind, job, .. } = events.recv().await? {
                if wanted(&job) {
                    return Ok::<_, broadcast::error::RecvError>((kind, (*job).clone()));
                }
            }
        }
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(format!("no matching outcome within {DEADLINE:?}").into()),
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
    let schema = Schema::new("millrace_example_complete_in_transaction")?;
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
