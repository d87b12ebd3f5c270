//! `millrace-load-worker`: one Millrace client that works load jobs, run as an OS process of its
//! own by the proof-under-load tests (`tests/proof.rs`), next to clients inside the test.
//!
//! ```text
//! millrace-load-worker --database-url URL --schema NAME [--application-name NAME]
//!     [--client-id ID] [--max-workers N] [--pool-size N] [--acquire-timeout-ms N]
//!     [--seconds N] [--limited] [--heartbeat-lease-ms N]
//! ```
//!
//! Every run of a `millrace_load` job records one row in `<schema>.load_runs` (see
//! [`runs_table_sql`]), so a test can count how often each job was worked; every run of a
//! `millrace_seq_load` job (a sequence's, issue 19) one row in `<schema>.seq_runs` with its
//! start and end (see [`seq_runs_table_sql`]). With `--limited` it also works the
//! `millrace_limit_load` jobs of queue [`LIMITED_QUEUE`], under a global limit of
//! [`LIMIT_PER_PARTITION`] per value of their `part` field (the limits' proof, issue 19).
//! The process prints
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

use millrace::{
    Client, ConcurrencyLimit, InsertOpts, Job, JobArgs, QueueConfig, Schema, SequenceOpts,
    WorkError, Worker, Workers,
};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

/// How long a worker keeps trying to record its run while the database is away.
const RECORD_DEADLINE: Duration = Duration::from_secs(30);

/// Failed attempts at recording a run in this process, by error, for a test's report when
/// its fleet stalls: `PoolTimedOut` filling this says the pool could not hand out
/// connections, a database code that the server cut them.
pub(crate) mod record_failures {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    static FAILURES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

    pub(crate) fn count(err: &sqlx::Error) {
        let key = match err {
            sqlx::Error::PoolTimedOut => "PoolTimedOut".to_owned(),
            sqlx::Error::Io(e) => format!("Io {:?}", e.kind()),
            sqlx::Error::Database(e) => format!("Database {}", e.code().unwrap_or_default()),
            other => other.to_string().chars().take(60).collect(),
        };
        *FAILURES.lock().expect("lock").entry(key).or_default() += 1;
    }

    /// The failures so far.
    #[allow(dead_code, reason = "read by tests/proof.rs, which includes this file")]
    pub(crate) fn snapshot() -> BTreeMap<String, u64> {
        FAILURES.lock().expect("lock").clone()
    }
}

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
        self.record(&job.row, job.client::<PgDriver>()?.driver().pool(), || {
            job.is_cancelled()
        })
        .await
    }
}

impl LoadWorker {
    /// Records one run of `row` in `load_runs`, retrying while the database is away.
    async fn record(
        &self,
        row: &millrace::JobRow,
        pool: &PgPool,
        cancelled: impl Fn() -> bool,
    ) -> Result<(), WorkError> {
        let run = self.next_run.fetch_add(1, Ordering::Relaxed);
        let run_id = format!("{}:{run}", self.client);
        let deadline = Instant::now() + RECORD_DEADLINE;
        let mut backoff = Duration::from_millis(20);
        // The record goes through the client's own pool, which loses its connections with
        // the rest of the client; retrying under the same run_id keeps it to one row.
        loop {
            let result = sqlx::query(AssertSqlSafe(self.insert.clone()))
                .bind(&run_id)
                .bind(row.id.0)
                .bind(i32::from(row.attempt))
                .bind(&self.client)
                .execute(pool)
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() >= deadline || cancelled() => {
                    return Err(WorkError::msg(format!(
                        "recording run {run_id} failed: {err}"
                    )));
                }
                Err(err) => {
                    record_failures::count(&err);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}

/// The queue of the limits' proof.
pub(crate) const LIMITED_QUEUE: &str = "limited";
/// The global limit of [`LIMITED_QUEUE`], per value of the `part` field.
pub(crate) const LIMIT_PER_PARTITION: u32 = 2;
/// How long a `millrace_limit_load` job works before recording its run: long enough that
/// the limit binds, so running rows pile up against it.
pub(crate) const LIMIT_WORK: Duration = Duration::from_millis(50);

/// The args of a job of the limits' proof: job `n` of partition `part`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LimitLoadArgs {
    pub(crate) part: i64,
    pub(crate) n: i64,
}

impl JobArgs for LimitLoadArgs {
    const KIND: &'static str = "millrace_limit_load";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().queue(LIMITED_QUEUE)
    }
}

/// Works `millrace_limit_load` jobs: works for [`LIMIT_WORK`], then records the run in
/// `load_runs` as a [`LoadWorker`] does.
pub(crate) struct LimitLoadWorker(LoadWorker);

impl Worker for LimitLoadWorker {
    type Args = LimitLoadArgs;

    async fn work(&self, job: Job<LimitLoadArgs>) -> Result<(), WorkError> {
        tokio::time::sleep(LIMIT_WORK).await;
        self.0
            .record(&job.row, job.client::<PgDriver>()?.driver().pool(), || {
                job.is_cancelled()
            })
            .await
    }
}

/// The args of a sequence load job (issue 19): position `pos` of sequence `seq`. The sequence
/// is keyed by the `seq` field, so jobs of one `seq` run one at a time, in insertion order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SeqLoadArgs {
    pub(crate) seq: i64,
    pub(crate) pos: i64,
}

impl JobArgs for SeqLoadArgs {
    const KIND: &'static str = "millrace_seq_load";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().sequence(SequenceOpts::new().by_args(["seq"]))
    }
}

/// The statement that creates `<schema>.seq_runs`: one row per run of a sequence load job,
/// with when it started and ended by the database's clock, which every process shares.
pub(crate) fn seq_runs_table_sql(schema: &Schema) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
             job_id bigint NOT NULL, \
             attempt int NOT NULL, \
             seq bigint NOT NULL, \
             pos bigint NOT NULL, \
             client text NOT NULL, \
             started_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
             ended_at timestamptz, \
             PRIMARY KEY (job_id, attempt))",
        schema.qualify("seq_runs")
    )
}

/// Works `millrace_seq_load` jobs: records the run's start, works for `SEQ_WORK`, records its
/// end. A sequence whose jobs overlapped, or ran out of order, shows in `seq_runs`.
pub(crate) struct SeqLoadWorker {
    client: String,
    start: Arc<str>,
    end: Arc<str>,
}

/// How long a sequence load job works between its two records: long enough that two jobs
/// of one sequence running at once would overlap in time.
const SEQ_WORK: Duration = Duration::from_millis(2);

impl SeqLoadWorker {
    /// A worker recording its runs under `client`.
    pub(crate) fn new(client: impl Into<String>, schema: &Schema) -> Self {
        let table = schema.qualify("seq_runs");
        SeqLoadWorker {
            client: client.into(),
            start: format!(
                "INSERT INTO {table} (job_id, attempt, seq, pos, client) VALUES ($1, $2, $3, $4, $5)"
            )
            .into(),
            end: format!(
                "UPDATE {table} SET ended_at = clock_timestamp() WHERE job_id = $1 AND attempt = $2"
            )
            .into(),
        }
    }
}

impl Worker for SeqLoadWorker {
    type Args = SeqLoadArgs;

    async fn work(&self, job: Job<SeqLoadArgs>) -> Result<(), WorkError> {
        let pool = job.client::<PgDriver>()?.driver().pool().clone();
        let attempt = i32::from(job.row.attempt);
        sqlx::query(AssertSqlSafe(self.start.clone()))
            .bind(job.row.id.0)
            .bind(attempt)
            .bind(job.args.seq)
            .bind(job.args.pos)
            .bind(&self.client)
            .execute(&pool)
            .await?;
        tokio::time::sleep(SEQ_WORK).await;
        sqlx::query(AssertSqlSafe(self.end.clone()))
            .bind(job.row.id.0)
            .bind(attempt)
            .execute(&pool)
            .await?;
        Ok(())
    }
}
/// The acquire timeout of [`load_pool`]: short, so that while the server is down statements
/// fail and are retried rather than wait in the pool, which is the case the runtime's retry
/// and logging must handle.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// A pool for one load client, named `application_name` in `pg_stat_activity` so a test can
/// kill exactly its connections, with the short [`ACQUIRE_TIMEOUT`].
#[allow(dead_code, reason = "used by tests/proof.rs, which includes this file")]
pub(crate) fn load_pool(
    url: &str,
    application_name: &str,
    size: u32,
) -> Result<PgPool, sqlx::Error> {
    load_pool_with(url, application_name, size, ACQUIRE_TIMEOUT)
}

/// [`load_pool`] with another acquire timeout.
///
/// sqlx's acquire timeout bounds the wait for a turn in the pool *and* the opening of a
/// connection when the pool has none left: a caller that reaches the head of a long queue late
/// in its timeout has too little of it left to connect. Where every connection dies at once
/// and dozens of workers queue, a one-second timeout sat on that cliff: each caller reached
/// the head with no time left, none opened a connection, and nothing got through until the
/// workers gave up (see `jobs_are_worked_exactly_once_while_connections_are_killed`).
pub(crate) fn load_pool_with(
    url: &str,
    application_name: &str,
    size: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
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
    workers.register(SeqLoadWorker::new(client_id, schema))?;
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

/// [`load_client`] that also works [`LIMITED_QUEUE`] under its limit, with a heartbeat lease
/// of `heartbeat_lease`, so the jobs of a killed process are rescued within it.
pub(crate) fn limited_load_client(
    pool: PgPool,
    schema: &Schema,
    client_id: &str,
    max_workers: usize,
    heartbeat_lease: Duration,
) -> millrace::Result<Client<PgDriver>> {
    let mut workers = Workers::new();
    workers.register(LoadWorker::new(client_id, schema))?;
    workers.register(LimitLoadWorker(LoadWorker::new(client_id, schema)))?;
    let limit = ConcurrencyLimit::global(LIMIT_PER_PARTITION).partition_by_args(["part"]);
    Client::builder(PgDriver::new(pool).with_schema(schema.clone()))
        .id(client_id)
        .workers(workers)
        .queue(
            millrace::QUEUE_DEFAULT,
            QueueConfig::new().max_workers(max_workers),
        )
        .queue(
            LIMITED_QUEUE,
            QueueConfig::new()
                .max_workers(max_workers)
                .concurrency(limit),
        )
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(200))
        .schedule_interval(Duration::from_millis(500))
        .heartbeat_lease(heartbeat_lease)
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
    acquire_timeout: Duration,
    seconds: Option<u64>,
    limited: bool,
    heartbeat_lease: Duration,
}

const USAGE: &str = "usage: millrace-load-worker --database-url URL --schema NAME \
                     [--application-name NAME] [--client-id ID] [--max-workers N] \
                     [--pool-size N] [--acquire-timeout-ms N] [--seconds N] [--limited] \
                     [--heartbeat-lease-ms N]";

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
        acquire_timeout: ACQUIRE_TIMEOUT,
        seconds: None,
        limited: false,
        heartbeat_lease: Duration::from_secs(10),
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
            "--acquire-timeout-ms" => {
                parsed.acquire_timeout = Duration::from_millis(number(&flag, value()?)?);
            }
            "--seconds" => parsed.seconds = Some(number(&flag, value()?)?),
            "--limited" => parsed.limited = true,
            "--heartbeat-lease-ms" => {
                parsed.heartbeat_lease = Duration::from_millis(number(&flag, value()?)?);
            }
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
    let pool = load_pool_with(
        &args.database_url,
        &args.application_name,
        args.pool_size,
        args.acquire_timeout,
    )?;
    // Usually there already; creating it here lets the binary run against any schema.
    sqlx::raw_sql(AssertSqlSafe(runs_table_sql(&schema)))
        .execute(&pool)
        .await?;
    sqlx::raw_sql(AssertSqlSafe(seq_runs_table_sql(&schema)))
        .execute(&pool)
        .await?;
    let client_id = args
        .client_id
        .unwrap_or_else(|| format!("load_worker_{}", std::process::id()));
    let client = if args.limited {
        limited_load_client(
            pool,
            &schema,
            &client_id,
            args.max_workers,
            args.heartbeat_lease,
        )?
    } else {
        load_client(pool, &schema, &client_id, args.max_workers)?
    };
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
