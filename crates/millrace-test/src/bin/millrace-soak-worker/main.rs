//! `millrace-soak-worker`: the processes of the chaos soak (`tests/soak.rs`), one role each.
//!
//! ```text
//! millrace-soak-worker worker   --driver pg|sqlite --database-url URL [--schema NAME]
//!                               --process NAME [--lease-ms N] [--seconds N]
//! millrace-soak-worker inserter --driver pg|sqlite --database-url URL [--schema NAME]
//!                               [--rate N] [--seconds N]
//! millrace-soak-worker lock     --database-url PATH --hold-ms N
//! ```
//!
//! A `worker` runs a Millrace client working every soak kind (see `millrace_test::soak`), and on
//! PostgreSQL also the durable periodic job and the persistent worker; it records each attempt
//! in `soak_attempts` and commits each job's work in `soak_effects` with its completion. An
//! `inserter` inserts a mix of jobs (`--rate` a second), recording each in `soak_inserted` in
//! the insert's own transaction, and cancels the `soak_cancel` jobs it finds running. A `lock`
//! holds SQLite's write lock for `--hold-ms`, as another program sharing the file might.
//!
//! Each prints `ready` on stdout once started, logs to stderr (`RUST_LOG`, default
//! `warn,millrace=info`), and exits after `--seconds` (a bound should the soak die) or on
//! SIGTERM, stopping softly.

mod ledger;
mod workers;

use std::error::Error as StdError;
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use millrace::{
    Client, Driver, InsertOpts, JobArgs, PeriodicJob, PersistentOpts, QueueConfig, Schedule,
    Schema, UniqueOpts, Workers,
};
use millrace_postgres::PgDriver;
use millrace_sqlite::SqliteDriver;
use millrace_test::soak::{
    CancelMidRun, PERIODIC_ID, PERSISTENT_NAME, Periodic, Plain, Retry, Snooze, Unique,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::ledger::Ledger;
use crate::workers::{Behaviour, Keeper, SoakWorker};

/// The command line.
#[derive(Debug)]
struct Args {
    role: String,
    driver: String,
    database_url: String,
    schema: String,
    process: String,
    lease: Duration,
    rate: u64,
    seconds: u64,
    hold: Duration,
}

const USAGE: &str = "usage: millrace-soak-worker worker|inserter|lock --database-url URL \
                     [--driver pg|sqlite] [--schema NAME] [--process NAME] [--lease-ms N] \
                     [--rate N] [--seconds N] [--hold-ms N]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        role: args.next().ok_or_else(|| USAGE.to_owned())?,
        driver: "pg".to_owned(),
        database_url: String::new(),
        schema: "public".to_owned(),
        process: format!("soak_{}", std::process::id()),
        lease: Duration::from_secs(4),
        rate: 100,
        seconds: 600,
        hold: Duration::from_secs(1),
    };
    fn number<T: FromStr>(flag: &str, value: String) -> Result<T, String> {
        value
            .parse()
            .map_err(|_| format!("{flag} takes a number, got {value:?}"))
    }
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--driver" => parsed.driver = value()?,
            "--database-url" => parsed.database_url = value()?,
            "--schema" => parsed.schema = value()?,
            "--process" => parsed.process = value()?,
            "--lease-ms" => parsed.lease = Duration::from_millis(number(&flag, value()?)?),
            "--rate" => parsed.rate = number(&flag, value()?)?,
            "--seconds" => parsed.seconds = number(&flag, value()?)?,
            "--hold-ms" => parsed.hold = Duration::from_millis(number(&flag, value()?)?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if parsed.database_url.is_empty() {
        return Err(format!("--database-url is required\n{USAGE}"));
    }
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
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = match (args.role.as_str(), args.driver.as_str()) {
        ("worker", "pg") => match pg_driver(&args) {
            Ok(driver) => run_worker(driver, &args).await,
            Err(err) => Err(err),
        },
        ("worker", "sqlite") => match sqlite_driver(&args).await {
            Ok(driver) => run_worker(driver, &args).await,
            Err(err) => Err(err),
        },
        ("inserter", "pg") => match pg_driver(&args) {
            Ok(driver) => run_inserter(driver, &args).await,
            Err(err) => Err(err),
        },
        ("inserter", "sqlite") => match sqlite_driver(&args).await {
            Ok(driver) => run_inserter(driver, &args).await,
            Err(err) => Err(err),
        },
        ("lock", _) => hold_lock(&args).await,
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = err.source();
            while let Some(inner) = source {
                message.push_str(": ");
                message.push_str(&inner.to_string());
                source = inner.source();
            }
            eprintln!("millrace-soak-worker: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A PostgreSQL driver named `application_name = <process>`, so the soak can terminate
/// exactly the fleet's backends. A short acquire timeout makes statements fail, and be
/// retried, while the server is away.
fn pg_driver(args: &Args) -> Result<PgDriver, Box<dyn StdError>> {
    let options: PgConnectOptions = args.database_url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.application_name(&args.process));
    Ok(PgDriver::new(pool).with_schema(Schema::new(args.schema.clone())?))
}

/// A SQLite driver whose every connection stops at the soak's page limit, so the soak's
/// filler can fill the file to it (`max_page_count` is per connection).
async fn sqlite_driver(args: &Args) -> Result<SqliteDriver, Box<dyn StdError>> {
    let options = SqliteDriver::connect_options(&args.database_url)?.pragma(
        "max_page_count",
        millrace_test::soak::SQLITE_MAX_PAGES.to_string(),
    );
    Ok(SqliteDriver::open_with(options).await?)
}

fn ready() -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()
}

/// Waits for SIGTERM, SIGINT or the time limit.
async fn until_stopped(seconds: u64) -> Result<(), Box<dyn StdError>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
    }
    Ok(())
}

async fn run_worker<D: Ledger + 'static>(driver: D, args: &Args) -> Result<(), Box<dyn StdError>>
where
    Client<D>: Send + Sync,
{
    let process = args.process.as_str();
    let mut workers = Workers::new();
    workers.register(SoakWorker::<Plain, D>::new(
        driver.clone(),
        process,
        Behaviour::Complete,
    ))?;
    workers.register(SoakWorker::<Unique, D>::new(
        driver.clone(),
        process,
        Behaviour::Complete,
    ))?;
    workers.register(SoakWorker::<Snooze, D>::new(
        driver.clone(),
        process,
        Behaviour::SnoozeOnce,
    ))?;
    workers.register(SoakWorker::<Retry, D>::new(
        driver.clone(),
        process,
        Behaviour::FailFirst,
    ))?;
    workers.register(SoakWorker::<CancelMidRun, D>::new(
        driver.clone(),
        process,
        Behaviour::AwaitCancel,
    ))?;
    workers.register(SoakWorker::<Periodic, D>::new(
        driver.clone(),
        process,
        Behaviour::Complete,
    ))?;
    let mut builder = Client::builder(driver.clone())
        .id(process)
        .workers(workers)
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new().max_workers(10))
        .fetch_cooldown(Duration::from_millis(20))
        .fetch_poll_interval(Duration::from_millis(250))
        .schedule_interval(Duration::from_millis(500))
        .maintenance_interval(Duration::from_secs(1))
        .heartbeat_lease(args.lease)
        .stop_database_timeout(Duration::from_secs(2));
    if let Some(pg) = (&driver as &dyn std::any::Any).downcast_ref::<PgDriver>() {
        builder = builder
            .periodic_job(
                PeriodicJob::new(Schedule::interval(Duration::from_secs(2)), || {
                    (Periodic { n: 0 }, None)
                })
                .id(PERIODIC_ID),
            )
            .persistent_worker_with(
                PERSISTENT_NAME,
                Keeper {
                    pool: pg.pool().clone(),
                    schema: pg.schema().clone(),
                    process: process.to_owned(),
                },
                PersistentOpts::new()
                    .lease(args.lease)
                    .restart_backoff(Duration::from_millis(200), Duration::from_secs(2)),
            );
    }
    let client = builder.build()?;
    client.start().await?;
    ready()?;
    until_stopped(args.seconds).await?;
    client.stop().await?;
    Ok(())
}

async fn run_inserter<D: Ledger + 'static>(driver: D, args: &Args) -> Result<(), Box<dyn StdError>>
where
    Client<D>: Send + Sync,
{
    let schema = Schema::new(args.schema.clone())?;
    let client = Client::builder(driver.clone()).build()?;
    ready()?;
    let sqlite = (&driver as &dyn std::any::Any).is::<SqliteDriver>();
    let batch = 10u64;
    let tick = Duration::from_millis(1000 * batch / args.rate.max(1));
    let stop = until_stopped(args.seconds);
    tokio::pin!(stop);
    let mut n = 0i64;
    let mut cancel_check = tokio::time::Instant::now();
    loop {
        tokio::select! {
            result = &mut stop => return result,
            () = tokio::time::sleep(tick) => {}
        }
        // One transaction per batch: its jobs and their ledger rows commit together.
        let inserted = async {
            let mut tx = driver.begin().await?;
            for _ in 0..batch {
                n += 1;
                let (kind, result) = match (sqlite, n % 10) {
                    (true, 0..=6) | (false, 0..=3) => (
                        "soak_plain",
                        client
                            .insert_tx(D::tx_conn(&mut tx), Plain { n }, None)
                            .await,
                    ),
                    (true, _) | (false, 4) => (
                        "soak_retry",
                        client
                            .insert_tx(D::tx_conn(&mut tx), Retry { n }, None)
                            .await,
                    ),
                    (false, 5 | 6) => (
                        "soak_unique",
                        client
                            .insert_tx(
                                D::tx_conn(&mut tx),
                                Unique { n: n % 97 },
                                Some(InsertOpts::new().unique(UniqueOpts::new().by_args())),
                            )
                            .await,
                    ),
                    (false, 7 | 8) => (
                        "soak_snooze",
                        client
                            .insert_tx(D::tx_conn(&mut tx), Snooze { n }, None)
                            .await,
                    ),
                    (false, _) => (
                        "soak_cancel",
                        client
                            .insert_tx(D::tx_conn(&mut tx), CancelMidRun { n }, None)
                            .await,
                    ),
                };
                let job = result?.job;
                D::record_inserted(D::tx_conn(&mut tx), &schema, job.id, kind).await?;
            }
            D::commit(tx).await?;
            Ok::<_, Box<dyn StdError>>(())
        }
        .await;
        if let Err(err) = inserted {
            tracing::warn!(%err, "inserting a batch failed; the next batch tries again");
        }
        if !sqlite && cancel_check.elapsed() >= Duration::from_millis(200) {
            cancel_check = tokio::time::Instant::now();
            if let Err(err) = cancel_running(&client).await {
                tracing::warn!(%err, "cancelling running jobs failed");
            }
        }
    }
}

/// Cancels every `soak_cancel` job now running.
async fn cancel_running<D: Driver>(client: &Client<D>) -> millrace::Result<()> {
    let running = client
        .job_list(
            millrace::JobListParams::new()
                .kinds([CancelMidRun::KIND])
                .states([millrace::JobState::Running])
                .limit(100),
        )
        .await?;
    for job in running.jobs {
        client.job_cancel(job.id).await?;
    }
    Ok(())
}

/// Holds SQLite's write lock (`BEGIN IMMEDIATE`) for `--hold-ms`, then commits.
async fn hold_lock(args: &Args) -> Result<(), Box<dyn StdError>> {
    use sqlx::Connection;
    let options = SqliteDriver::connect_options(&args.database_url)?;
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await?;
    ready()?;
    tokio::time::sleep(args.hold).await;
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    Ok(())
}
