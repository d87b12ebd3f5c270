//! `millrace demo`: a client that inserts and works a stream of example jobs, printing each
//! outcome, as a live picture of the runtime. It runs on a SQLite file in the current folder
//! unless given a database URL, and the same code runs on either driver.

use millrace_driver::Backoff;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use millrace::{
    BoxError, Client, Driver, Event, EventKind, InsertManyParams, InsertOpts, Job, JobArgs,
    MigrateOpts, Migrator, PeriodicJob, PersistentContext, PersistentOpts, PersistentWorker,
    QueueConfig, Schedule, Schema, UniqueOpts, WorkError, Worker, Workers,
};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::database::{ConnectionArgs, Database, postgres_options, sqlite_schema};
use crate::output::{StdoutClosed, chain, errln, outln};
use crate::pooler::PoolerArgs;
use crate::signals::Signals;

/// The first wait after a failed insert; it doubles with each failure in a row, with jitter,
/// up to [`INSERT_RETRY_MAX`]: the runtime's own [`Backoff`].
const INSERT_RETRY_MIN: Duration = Duration::from_millis(50);
/// The longest wait between inserts that fail.
const INSERT_RETRY_MAX: Duration = Duration::from_secs(2);
/// Failures in a row after which an error that is not a lost connection ends the demo: such
/// an error (a dropped table, a revoked privilege) does not pass by itself, unlike a blip.
const INSERT_MAX_FAILURES: u32 = 5;

/// The database the demo uses when none is given: a SQLite file in the current folder, so a
/// fresh machine needs no database server.
const DEFAULT_DATABASE_URL: &str = "sqlite://millrace-demo.sqlite";

/// The PostgreSQL schema the demo uses when none is given.
const DEFAULT_PG_SCHEMA: &str = "millrace_demo";

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where the database is. With neither a URL nor PGHOST or PGDATABASE, the demo uses a
    /// SQLite file in the current folder (sqlite://millrace-demo.sqlite, created when
    /// missing).
    #[command(flatten)]
    connection: Box<ConnectionArgs>,
    /// PostgreSQL: the schema to use, created and migrated when missing. Defaults to
    /// millrace_demo. On SQLite only main, the file itself, is accepted.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Stop by itself after this many seconds, 1 to 86,400 (default: run until Ctrl-C or
    /// SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: Option<u64>,
    /// Example jobs inserted per second: 1 to 1,000.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    rate: u32,
    /// Lease of the demo's persistent worker and of its heartbeat, in seconds (1 to 3,600):
    /// how soon another demo takes over the instance and the jobs of a demo that was killed.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    lease: u64,
    /// Interval of the demo's periodic job, in seconds, 1 to 86,400 (one job per tick across
    /// all demos).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    periodic_secs: u64,
    #[command(flatten)]
    pooler: PoolerArgs,
    #[cfg(feature = "metrics")]
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

#[derive(Debug, Serialize, Deserialize)]
struct SendEmail {
    to: String,
}

impl JobArgs for SendEmail {
    const KIND: &'static str = "demo_send_email";
}

struct SendEmailWorker;

impl Worker for SendEmailWorker {
    type Args = SendEmail;

    async fn work(&self, job: Job<SendEmail>) -> Result<(), WorkError> {
        tokio::time::sleep(Duration::from_millis(20 + job.row.id.0 as u64 % 80)).await;
        Ok(())
    }
}

/// Fails its first attempt, so the demo shows a retry.
#[derive(Debug, Serialize, Deserialize)]
struct FlakyCall {
    endpoint: String,
}

impl JobArgs for FlakyCall {
    const KIND: &'static str = "demo_flaky_call";
}

struct FlakyCallWorker;

impl Worker for FlakyCallWorker {
    type Args = FlakyCall;

    async fn work(&self, job: Job<FlakyCall>) -> Result<(), WorkError> {
        if job.row.attempt == 1 {
            return Err(WorkError::msg(format!(
                "{} answered 503",
                job.args.endpoint
            )));
        }
        Ok(())
    }
}

/// Snoozes once, so the demo shows a snooze.
#[derive(Debug, Serialize, Deserialize)]
struct WaitForUpload {
    upload_id: u64,
}

impl JobArgs for WaitForUpload {
    const KIND: &'static str = "demo_wait_for_upload";
}

struct WaitForUploadWorker;

impl Worker for WaitForUploadWorker {
    type Args = WaitForUpload;

    async fn work(&self, job: Job<WaitForUpload>) -> Result<(), WorkError> {
        if job.row.metadata.get("snoozes").is_none() {
            return Err(WorkError::snooze(Duration::from_secs(1)));
        }
        Ok(())
    }
}

/// Inserted by the periodic job, once per tick across every demo on the database.
#[derive(Debug, Serialize, Deserialize)]
struct PeriodicTick {}

impl JobArgs for PeriodicTick {
    const KIND: &'static str = "demo_periodic_tick";
}

struct PeriodicTickWorker;

impl Worker for PeriodicTickWorker {
    type Args = PeriodicTick;

    async fn work(&self, _job: Job<PeriodicTick>) -> Result<(), WorkError> {
        Ok(())
    }
}

/// A unique job: one report per minute, however often it is asked for.
#[derive(Debug, Serialize, Deserialize)]
struct HourlyReport {}

impl JobArgs for HourlyReport {
    const KIND: &'static str = "demo_report";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().unique(UniqueOpts::new().by_period(Duration::from_secs(60)))
    }
}

struct HourlyReportWorker;

impl Worker for HourlyReportWorker {
    type Args = HourlyReport;

    async fn work(&self, _job: Job<HourlyReport>) -> Result<(), WorkError> {
        Ok(())
    }
}

/// The demo's persistent worker: one instance across every demo on the database, counting
/// ticks in its row's metadata. Start three demos, kill one, and watch the instance move.
struct Ticker;

impl PersistentWorker for Ticker {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = ctx.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            ticks += 1;
            ctx.record_progress(
                serde_json::json!({ "ticks": ticks, "token": ctx.fencing_token() }),
            )
            .await?;
        }
    }
}

impl DemoArgs {
    /// Opens the database the URL names, migrates it and runs the demo on it.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self
            .connection
            .database("demo", Some(DEFAULT_DATABASE_URL))?
        {
            Database::Postgres(options) => {
                let name = self.schema.as_deref().unwrap_or(DEFAULT_PG_SCHEMA);
                let schema = Schema::new(name).context("invalid --schema")?;
                let opts = postgres_options(&options).await?;
                let pool = options
                    .pool_options()
                    .max_connections(10)
                    .connect_with(opts)
                    .await
                    .context("could not connect to PostgreSQL")?;
                let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.name());
                // A simple query prepares no statement, so it also runs through a
                // transaction-mode pooler.
                sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                    .execute(&pool)
                    .await
                    .context("could not create the demo schema")?;
                let driver = self
                    .pooler
                    .apply(PgDriver::new(pool).with_schema(schema))
                    .await?;
                run(driver, &self, &format!("schema {name}")).await
            }
            Database::Sqlite(url) => {
                let schema = sqlite_schema(self.schema.as_deref())?;
                let driver = url.open(true).await?.with_schema(schema);
                run(driver, &self, &format!("sqlite {}", url.display())).await
            }
        }
    }

    /// Inserts the example jobs at `--rate`, printing each. A failed insert is retried with
    /// backoff rather than ending the demo, as the runtime rides out a connection blip: a
    /// warning when inserts start failing, and a note when they work again.
    async fn insert_stream<D: Driver>(&self, client: &Client<D>) -> anyhow::Result<()> {
        let period = Duration::from_secs_f64(1.0 / f64::from(self.rate));
        let mut tick = tokio::time::interval(period);
        // After an outage, go on at the rate rather than inserting the missed jobs at once.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut backoff = Backoff::new(INSERT_RETRY_MIN, INSERT_RETRY_MAX);
        for n in 0u64.. {
            tick.tick().await;
            let job = match n % 10 {
                3 => InsertManyParams::new(FlakyCall {
                    endpoint: "https://api.example.com/charge".to_owned(),
                }),
                6 => InsertManyParams::new(WaitForUpload { upload_id: n }),
                9 => InsertManyParams::new(HourlyReport {}),
                // A reminder due in two seconds: the leader's scheduler makes it available.
                5 => InsertManyParams::new(SendEmail {
                    to: format!("reminder{n}@example.com"),
                })
                .opts(
                    InsertOpts::new()
                        .scheduled_at(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2)),
                ),
                _ => InsertManyParams::new(SendEmail {
                    to: format!("user{n}@example.com"),
                }),
            };
            let kind = job.kind().to_owned();
            let mut inserted = match client.insert_many([job]).await {
                Ok(inserted) => inserted,
                Err(err) => {
                    let delay = backoff.next_delay();
                    let failures = backoff.failures();
                    let connection =
                        matches!(&err, millrace::Error::Driver(err) if err.is_connection());
                    if !connection && failures >= INSERT_MAX_FAILURES {
                        return Err(err)
                            .context(format!("inserting failed {failures} times in a row"));
                    }
                    if failures == 1 {
                        tracing::warn!(error = %chain(&err), "inserting failed; retrying with backoff");
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            if backoff.failures() > 0 {
                tracing::info!(failures = backoff.failures(), "inserting resumed");
                backoff.reset();
            }
            let inserted = inserted.remove(0);
            if inserted.unique_skipped_as_duplicate {
                outln!(
                    "duplicate  {kind:<22} job {} covers this minute already; skipped",
                    inserted.job.id
                )?;
            } else {
                outln!("inserted   {kind:<22} job {}", inserted.job.id)?;
            }
        }
        Ok(())
    }
}

/// Migrates the database, then runs the demo's client on it until the duration is over or
/// Ctrl-C; `on` says where, for the first line (`schema millrace_demo`, `sqlite PATH`).
async fn run<D: Driver>(driver: D, args: &DemoArgs, on: &str) -> anyhow::Result<()> {
    migrate(&driver).await?;

    let mut workers = Workers::new();
    workers.register(SendEmailWorker)?;
    workers.register(FlakyCallWorker)?;
    workers.register(WaitForUploadWorker)?;
    workers.register(HourlyReportWorker)?;
    workers.register(PeriodicTickWorker)?;
    // Listening from the start, so a signal during the start-up stops the demo gracefully too.
    let mut signals = Signals::new()?;
    let lease = Duration::from_secs(args.lease);
    #[cfg(feature = "metrics")]
    let metrics = args.metrics.setup()?;
    let builder = Client::builder(driver)
        .workers(workers)
        .persistent_worker_with("ticker", Ticker, PersistentOpts::new().lease(lease))
        .heartbeat_lease(lease)
        .periodic_job(
            PeriodicJob::new(
                Schedule::interval(Duration::from_secs(args.periodic_secs)),
                || (PeriodicTick {}, None),
            )
            .id("demo_periodic_tick"),
        )
        .queue("default", QueueConfig::new().max_workers(20))
        .fetch_cooldown(Duration::from_millis(20));
    #[cfg(feature = "metrics")]
    let builder = match &metrics {
        Some(metrics) => metrics.instrument(builder),
        None => builder,
    };
    let client = builder.build()?;
    outln!(
        "millrace demo: client {} on {on}, inserting {} jobs/s (Ctrl-C to stop)",
        client.id(),
        args.rate
    )?;
    let mut events = client.subscribe();
    client.start().await?;
    #[cfg(feature = "metrics")]
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    #[cfg(feature = "metrics")]
    if let Some(metrics) = metrics {
        let addr = metrics.serve(client.clone(), metrics_stop.clone()).await?;
        outln!("metrics at http://{addr}/metrics")?;
    }

    // The printer ends early only when stdout was closed, which stops the demo.
    let mut printer = tokio::spawn(async move {
        loop {
            let printed = match events.recv().await {
                Ok(event) => print_event(&event),
                Err(RecvError::Lagged(n)) => outln!("(skipped {n} events)"),
                Err(RecvError::Closed) => return,
            };
            if printed.is_err() {
                return;
            }
        }
    });

    let inserting = args.insert_stream(&client);
    // Ctrl-C or SIGTERM stops the demo gracefully, with or without a duration.
    let stop_signal = async {
        let duration = async {
            match args.duration {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = duration => {}
            _ = signals.recv() => {}
        }
    };
    let mut printer_done = false;
    let result = tokio::select! {
        result = inserting => result,
        () = stop_signal => Ok(()),
        _ = &mut printer => {
            printer_done = true;
            Err(StdoutClosed.into())
        }
    };
    // A closed stdout only loses the line: the demo stops either way, with status 0.
    let _ = outln!("stopping: letting running jobs finish (Ctrl-C again to exit at once)");
    // Whoever sends a second signal wants out now, whatever the stop is waiting for. What is
    // left unfinished is the rescuers' to return: the heartbeat and leases expire.
    tokio::select! {
        stopped = client.stop() => stopped?,
        signal = signals.recv() => {
            errln!("millrace demo: second {signal}, exiting without waiting for the stop");
            std::process::exit(i32::from(signal.exit_code()));
        }
    }
    #[cfg(feature = "metrics")]
    metrics_stop.cancel();
    // The printer ends once the client's events close; give it a moment to print the last
    // ones (the persistent worker's `stopped` line among them).
    drop(client);
    if !printer_done {
        let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    }
    result
}

/// Migrates the database; demos started at once on a new database take turns.
async fn migrate<D: Driver>(driver: &D) -> anyhow::Result<()> {
    Migrator::new(driver.clone())
        .migrate_up(MigrateOpts::default())
        .await
        .context("could not migrate the demo database")?;
    Ok(())
}

fn print_event(event: &Event) -> anyhow::Result<()> {
    match event {
        Event::Job {
            kind,
            job,
            duration,
        } => {
            let what = match kind {
                EventKind::JobCompleted => "completed",
                EventKind::JobFailed => "failed",
                EventKind::JobCancelled => "cancelled",
                EventKind::JobSnoozed => "snoozed",
                EventKind::JobReturned => "returned",
                _ => "event",
            };
            let detail = match kind {
                EventKind::JobFailed => format!(
                    " ({}; now {})",
                    job.errors.last().map_or("", |e| e.error.as_str()),
                    job.state
                ),
                _ => String::new(),
            };
            outln!(
                "{what:<10} {:<22} job {} attempt {} in {} ms{detail}",
                job.kind,
                job.id,
                job.attempt,
                duration.as_millis()
            )
        }
        Event::PersistentWorkerStarted { name, client, .. } => {
            outln!("persistent-worker {name} started client={client}")
        }
        Event::PersistentWorkerStopped { name, client, .. } => {
            outln!("persistent-worker {name} stopped client={client}")
        }
        Event::QueuePaused { queue } => outln!("paused     queue {queue}"),
        Event::QueueResumed { queue } => outln!("resumed    queue {queue}"),
        Event::CompletionsFencedOut { jobs } => {
            for job in jobs {
                outln!(
                    "fenced-out {:<22} job {} attempt {} (rescued meanwhile; runs again)",
                    job.kind,
                    job.id,
                    job.attempt
                )?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
