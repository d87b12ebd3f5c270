//! `millrace-load-worker`: one Millrace client that works load jobs, run as an OS process of its
//! own by the proof-under-load tests (`tests/proof.rs`), next to clients inside the test.
//!
//! ```text
//! millrace-load-worker --database-url URL --schema NAME [--application-name NAME]
//!     [--client-id ID] [--max-workers N] [--pool-size N] [--seconds N]
//! ```
//!
//! Every run of a `millrace_load` job records one row in `<schema>.load_runs` (see
//! [`runs_table_sql`]), so a test can count how often each job was worked. The process prints
//! `ready <client id>` on stdout once its client has started, logs to stderr (`RUST_LOG`,
//! default `warn,millrace=info`), and stops softly on SIGTERM or SIGINT, or after `--seconds`:
//! running jobs finish and their outcomes are stored, then it exits 0.
//!
//! The tests include this file as a module, so the worker and the client settings they use in
//! process are the ones this binary runs.

use std::error::Error as StdError;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use millrace::{Client, Job, JobArgs, QueueConfig, Schema, WorkError, Worker, Workers};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

/// How long a worker keeps trying to record its run while the database is away.
const RECORD_DEADLINE: Duration = Duration::from_secs(30);

/// The args of a load job; `n` only tells jobs apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoadArgs {
    pub(crate) n: i64,
}

impl JobArgs for LoadArgs {
    const KIND: &'static str = "millrace_load";
}

/// The statement that creates `<schema>.load_runs`: one row per run of a load job.
///
/// `run_id` is unique per run (client and a counter), so a worker can retry its insert after
/// losing the reply without recording its run twice, while two runs of one job always leave
/// two rows.
pub(crate) fn runs_table_sql(schema: &Schema) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
             run_id text PRIMARY KEY, \
             job_id bigint NOT NULL, \
             attempt int NOT NULL, \
             client text NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp())",
        schema.qualify("load_runs")
    )
}

/// Works `millrace_load` jobs by recording each run in `load_runs`.
pub(crate) struct LoadWorker {
    client: String,
    insert: Arc<str>,
    next_run: AtomicU64,
}

impl LoadWorker {
    /// A worker recording its runs under `client`.
    pub(crate) fn new(client: impl Into<String>, schema: &Schema) -> Self {
        let insert = format!(
            "INSERT INTO {} (run_id, job_id, attempt, client) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id) DO NOTHING",
            schema.qualify("load_runs")
        );
        LoadWorker {
            client: client.into(),
            insert: insert.into(),
            next_run: AtomicU64::new(0),
        }
    }
}

impl Worker for LoadWorker {
    type Args = LoadArgs;

    async fn work(&self, job: Job<LoadArgs>) -> Result<(), WorkError> {
        let pool = job.client::<PgDriver>()?.driver().pool().clone();
        let run = self.next_run.fetch_add(1, Ordering::Relaxed);
        let run_id = format!("{}:{run}", self.client);
        let deadline = Instant::now() + RECORD_DEADLINE;
        let mut backoff = Duration::from_millis(20);
        // The record goes through the client's own pool, which loses its connections with
        // the rest of the client; retrying under the same run_id keeps it to one row.
        loop {
            let result = sqlx::query(AssertSqlSafe(self.insert.clone()))
                .bind(&run_id)
                .bind(job.row.id.0)
                .bind(i32::from(job.row.attempt))
                .bind(&self.client)
                .execute(&pool)
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() >= deadline || job.is_cancelled() => {
                    return Err(WorkError::msg(format!(
                        "recording run {run_id} failed: {err}"
                    )));
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}

/// A pool for one load client, named `application_name` in `pg_stat_activity` so a test can
/// kill exactly its connections.
///
/// Its acquire timeout is short (a second): while the server is down, statements fail and are
/// retried rather than wait in the pool, which is the case the runtime's retry and logging
/// must handle.
pub(crate) fn load_pool(
    url: &str,
    application_name: &str,
    size: u32,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(options.application_name(application_name)))
}

/// A client that works the default queue with a [`LoadWorker`], polling often so a test does
/// not wait long for what a lost notification would have said.
pub(crate) fn load_client(
    pool: PgPool,
    schema: &Schema,
    client_id: &str,
    max_workers: usize,
) -> millrace::Result<Client<PgDriver>> {
    let mut workers = Workers::new();
    workers.register(LoadWorker::new(client_id, schema))?;
    Client::builder(PgDriver::new(pool).with_schema(schema.clone()))
        .id(client_id)
        .workers(workers)
        .queue(
            millrace::QUEUE_DEFAULT,
            QueueConfig::new().max_workers(max_workers),
        )
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(200))
        .schedule_interval(Duration::from_millis(500))
        // The proofs kill every connection every 200 ms for minutes on two shared cores; a
        // heartbeat that cannot get through for 12 s of that makes the client fence itself
        // and its jobs run again (at least once, as the README says of outages longer than
        // the lease). The proofs are about lost replies and killed connections, not an
        // expired lease, which the outage tests cover: a minute keeps the two apart.
        .heartbeat_lease(Duration::from_secs(60))
        .build()
}

/// The command line.
struct Args {
    database_url: String,
    schema: String,
    application_name: String,
    client_id: Option<String>,
    max_workers: usize,
    pool_size: u32,
    seconds: Option<u64>,
}

const USAGE: &str = "usage: millrace-load-worker --database-url URL --schema NAME \
                     [--application-name NAME] [--client-id ID] [--max-workers N] \
                     [--pool-size N] [--seconds N]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut database_url = None;
    let mut schema = None;
    let mut parsed = Args {
        database_url: String::new(),
        schema: String::new(),
        application_name: "millrace-load-worker".to_owned(),
        client_id: None,
        max_workers: 20,
        pool_size: 5,
        seconds: None,
    };
    fn number<T: std::str::FromStr>(flag: &str, value: String) -> Result<T, String> {
        value
            .parse()
            .map_err(|_| format!("{flag} takes a number, got {value:?}"))
    }
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--database-url" => database_url = Some(value()?),
            "--schema" => schema = Some(value()?),
            "--application-name" => parsed.application_name = value()?,
            "--client-id" => parsed.client_id = Some(value()?),
            "--max-workers" => parsed.max_workers = number(&flag, value()?)?,
            "--pool-size" => parsed.pool_size = number(&flag, value()?)?,
            "--seconds" => parsed.seconds = Some(number(&flag, value()?)?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    parsed.database_url =
        database_url.ok_or_else(|| format!("--database-url is required\n{USAGE}"))?;
    parsed.schema = schema.ok_or_else(|| format!("--schema is required\n{USAGE}"))?;
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,millrace=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if std::env::args().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = err.source();
            while let Some(inner) = source {
                message.push_str(": ");
                message.push_str(&inner.to_string());
                source = inner.source();
            }
            eprintln!("millrace-load-worker: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn StdError>> {
    use tokio::signal::unix::{SignalKind, signal};

    let schema = Schema::new(args.schema)?;
    let pool = load_pool(&args.database_url, &args.application_name, args.pool_size)?;
    // Usually there already; creating it here lets the binary run against any schema.
    sqlx::raw_sql(AssertSqlSafe(runs_table_sql(&schema)))
        .execute(&pool)
        .await?;
    let client_id = args
        .client_id
        .unwrap_or_else(|| format!("load_worker_{}", std::process::id()));
    let client = load_client(pool, &schema, &client_id, args.max_workers)?;
    // Listen before starting, so a signal sent as soon as `ready` is read is not missed.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    client.start().await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "ready {client_id}")?;
        stdout.flush()?;
    }
    let limit = async {
        match args.seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        () = limit => tracing::info!("time is up: stopping"),
    }
    client.stop().await?;
    Ok(())
}
