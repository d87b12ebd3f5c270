//! `millrace bench`: how fast this machine's database works jobs through Millrace.
//!
//! Two modes: `-n COUNT` inserts COUNT no-op jobs and burns them down (throughput);
//! `--duration SECS --rate R` inserts R jobs/s steadily and reports latencies. Timings of
//! jobs come from the database's own clock (`created_at`, `attempted_at`, `finalized_at`),
//! so they are what a user would see; SQLite stores them to the millisecond. Both modes run
//! the same code on PostgreSQL and SQLite. `millrace bench persistent` is a scenario of its
//! own, in `bench/persistent.rs`.

mod persistent;
mod rate_limit;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::builder::RangedU64ValueParser;
use clap::{Args, Subcommand};
use millrace::{
    Client, ConcurrencyLimit, Driver, Event, EventKind, InsertManyParams, JOB_LIST_MAX_LIMIT, Job,
    JobArgs, JobId, JobListParams, JobState, MigrateOpts, Migrator, QueueConfig, Schema, WorkError,
    Worker, Workers,
};
use millrace_postgres::{ConnectOptions, PgDriver};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::broadcast::error::RecvError;

use self::persistent::PersistentArgs;
use crate::database::{ConnectionArgs, Database, SqliteUrl, postgres_options, sqlite_schema};
use crate::output::{errln, outln};
use crate::pooler::PoolerArgs;
use crate::signals::Signals;

/// The longest `--duration` of the latency mode, in seconds: a day.
const MAX_DURATION_SECS: f64 = 86_400.0;

/// How long the benchmark's client may take to stop, on every way out, before the benchmark
/// deletes its schema or file anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `--duration`: seconds, above 0 and at most a day. `f64` parses `nan`, `inf` and
/// negative numbers, none of which is a duration.
fn parse_duration(value: &str) -> Result<f64, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| "not a number of seconds".to_owned())?;
    if secs.is_finite() && secs > 0.0 && secs <= MAX_DURATION_SECS {
        Ok(secs)
    } else {
        Err(format!(
            "must be a number of seconds above 0 and at most {MAX_DURATION_SECS}"
        ))
    }
}

/// `millrace bench`: the job modes, or a scenario given as a subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BenchCommand {
    #[command(subcommand)]
    scenario: Option<Scenario>,
    // Not an Option: clap would leave it None when only a flag of the nested connection
    // group (--database-url) is given. Without a URL, PG* variables or a scenario, BenchArgs
    // says that no database was given.
    #[command(flatten)]
    pooler: PoolerArgs,
    #[command(flatten)]
    jobs: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Measure how fast a persistent worker's instance moves between `millrace demo`
    /// processes after SIGKILL and after a graceful stop, and watch for two instances
    /// (PostgreSQL only).
    #[command(
        after_help = "The last line is machine-readable: kill_failover_p50_ms=… \
kill_failover_max_ms=… stop_handover_p50_ms=… stop_handover_max_ms=… two_instances=… trials=… \
lease_s=…. Exit status: 0 on success (and when stdout is closed early), 1 when two instances \
were seen, 2 on error or a flag out of range, 130 after SIGINT and 143 after SIGTERM; the \
benchmark's own schema is dropped on every one of these."
    )]
    Persistent(PersistentArgs),
}

impl BenchCommand {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self.scenario {
            Some(Scenario::Persistent(args)) => args.run().await,
            None => BenchArgs {
                pooler: self.pooler,
                ..self.jobs
            }
            .run()
            .await
            .map(|()| ExitCode::SUCCESS),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    connection: Box<ConnectionArgs>,
    /// Use (and keep) this schema, created and migrated if needed. By default the benchmark
    /// creates a schema of its own and drops it at the end; it never touches a user's tables.
    /// On SQLite it creates a file of its own next to the one the URL names, and deletes it at
    /// the end; `--schema main` uses (and keeps) the named file itself.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Join a --schema that other `millrace bench` processes share: skip the refusal of
    /// unfinished jobs, insert this process's -n jobs as usual, and work until the schema holds
    /// no unfinished benchmark job (not only until this process has completed -n, since the
    /// others take some of its jobs). Give it to every process; start the first, and the others
    /// once it has printed its settings line (the schema is then created and migrated).
    #[arg(long, requires = "schema", requires = "count")]
    join: bool,
    /// Insert COUNT no-op jobs first, then work them all (throughput mode); 1 to
    /// 1,000,000,000.
    #[arg(
        short = 'n',
        long = "count",
        value_name = "COUNT",
        conflicts_with_all = ["duration", "rate"],
        value_parser = clap::value_parser!(u64).range(1..=1_000_000_000)
    )]
    count: Option<u64>,
    /// Insert through the ordinary insert_many path instead of COPY (on SQLite, instead of
    /// insert_many_fast's one batched INSERT).
    #[arg(long)]
    insert_many: bool,
    /// Run a steady producer for this many seconds (latency mode): above 0, at most 86,400
    /// (a day), fractions allowed.
    #[arg(long, value_name = "SECS", requires = "rate", value_parser = parse_duration)]
    duration: Option<f64>,
    /// Jobs per second of the steady producer: 1 to 1,000,000.
    #[arg(
        long,
        value_name = "JOBS_PER_SEC",
        requires = "duration",
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    rate: Option<u64>,
    /// Workers of the benchmark queue: 1 to 10,000, as River allows.
    #[arg(
        long,
        default_value_t = 2_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=QueueConfig::MAX_WORKERS_LIMIT as u64)
    )]
    max_workers: usize,
    /// Least time between fetches, in milliseconds (River's default is 100): 0 to 60,000.
    #[arg(long, value_name = "MS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    fetch_cooldown_ms: u64,
    /// Poll interval when no notification arrives, in milliseconds (River's default is 1000):
    /// 1 to 60,000.
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    fetch_poll_ms: u64,
    /// Database connections of the client's pool: 1 to 1,000. Defaults to 20 on PostgreSQL,
    /// and to the driver's own pool on SQLite.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pool_size: Option<u32>,
    /// Jobs per insert statement: 1 to 100,000. The latency mode inserts at most this many
    /// at a time too.
    #[arg(
        long,
        default_value_t = 10_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    insert_batch: usize,
    /// Give the benchmark queue a global concurrency limit of N running jobs (per partition
    /// with --partitions), enforced by every client fetching it: 1 to 1,000,000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    global_limit: Option<u32>,
    /// Spread the jobs' args over P values of the field `p`, and partition the concurrency
    /// limit by it: 1 to 100,000.
    #[arg(
        long,
        value_name = "P",
        requires = "global_limit",
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    partitions: Option<u32>,
    /// Give the benchmark queue a fleet-wide rate limit of N jobs per PERIOD (`100/1m`,
    /// `50/1s`; the period 1 ms to 1 day), unpartitioned.
    #[arg(long, value_name = "N/PERIOD", value_parser = rate_limit::parse)]
    rate_limit: Option<millrace::RateLimit>,
    /// How long each job runs, in milliseconds (it sleeps): 0 to 60,000.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    job_ms: u64,
    /// Set from [`BenchCommand`]'s flags.
    #[arg(skip)]
    pooler: PoolerArgs,
}

/// The benchmark's job, stored as the floor's rows are: kind `noop`, empty args (`{}`). Keyed
/// args add entries to `river_job`'s GIN index on args at the insert and at both updates of
/// every job (about a tenth of the work rate here), and a longer kind makes every entry of the
/// kind index bigger (a few percent); the floor pays neither, so neither does the benchmark.
#[derive(Debug, Serialize, Deserialize)]
struct Noop {
    /// The partition, with `--partitions`; absent otherwise, so the args stay `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<u32>,
}

impl JobArgs for Noop {
    const KIND: &'static str = "noop";
}

struct NoopWorker {
    /// How long each job runs (`--job-ms`).
    job_time: Duration,
}

impl Worker for NoopWorker {
    type Args = Noop;

    async fn work(&self, _job: Job<Noop>) -> Result<(), WorkError> {
        if !self.job_time.is_zero() {
            tokio::time::sleep(self.job_time).await;
        }
        Ok(())
    }
}

/// The machine-readable summary, printed as the last line.
#[derive(Default)]
struct Summary {
    fields: Vec<(&'static str, f64)>,
}

impl Summary {
    fn add(&mut self, name: &'static str, value: f64) {
        self.fields.push((name, value));
    }

    fn line(&self) -> String {
        let mut line = String::new();
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            let _ = if value.fract() == 0.0 || *value >= 100.0 {
                write!(line, "{name}={value:.0}")
            } else {
                write!(line, "{name}={value:.2}")
            };
        }
        line
    }
}

impl BenchArgs {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        if let (Some(secs), Some(rate)) = (self.duration, self.rate) {
            if (secs * rate as f64).round() < 1.0 {
                bail!(
                    "--duration {secs} at --rate {rate} inserts no job: give a longer duration \
                     or a higher rate"
                );
            }
        }
        // From here on SIGINT and SIGTERM end the benchmark through its cleanup, which deletes
        // its schema or file, rather than killing it.
        let mut signals = Signals::new()?;
        let summary = match self.connection.database("bench", None)? {
            Database::Postgres(options) => self.on_postgres(&options, &mut signals).await?,
            Database::Sqlite(url) => self.on_sqlite(&url, &mut signals).await?,
        };
        outln!("{}", summary.line())
    }

    async fn on_postgres(
        &self,
        options: &ConnectOptions,
        signals: &mut Signals,
    ) -> anyhow::Result<Summary> {
        let pool_size = self.pool_size.unwrap_or(20);
        let opts = signals.interruptible(postgres_options(options)).await?;
        let pool = signals
            .interruptible(async {
                PgPoolOptions::new()
                    .max_connections(pool_size)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .context("could not connect to PostgreSQL")
            })
            .await?;
        let (schema, owned) = match &self.schema {
            Some(name) => (Schema::new(name).context("invalid --schema")?, false),
            None => (
                Schema::new(format!("millrace_bench_{}", std::process::id()))?,
                true,
            ),
        };
        let result = async {
            let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.name());
            signals.interruptible(exec(&pool, &create)).await?;
            let driver = PgDriver::new(pool.clone()).with_schema(schema.clone());
            let driver = signals.interruptible(self.pooler.apply(driver)).await?;
            self.bench(driver, pool_size, signals).await
        }
        .await;
        if !owned {
            return result;
        }
        // On every way out: the benchmark's schema is its own, and a user's database is left
        // as it was found.
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema.name());
        let dropped = tokio::select! {
            dropped = exec(&pool, &drop) => dropped,
            signal = signals.recv() => Err(anyhow::anyhow!(
                "{signal} while dropping the benchmark's schema: it is left behind; run {drop}"
            )),
        };
        keep_first_error(result, dropped)
    }

    async fn on_sqlite(&self, url: &SqliteUrl, signals: &mut Signals) -> anyhow::Result<Summary> {
        let schema = sqlite_schema(self.schema.as_deref())?;
        // A file of the benchmark's own, on the same disk as the named one; an in-memory
        // database is the benchmark's own already.
        let owned = match (&self.schema, url.path()) {
            (None, Some(path)) => {
                let dir = path.parent().unwrap_or(Path::new(""));
                let file = format!("millrace-bench-{}.sqlite", std::process::id());
                Some(SqliteUrl::file(dir.join(file))?)
            }
            _ => None,
        };
        let target = owned.as_ref().unwrap_or(url);
        let result = async {
            let driver = signals
                .interruptible(async {
                    match self.pool_size {
                        Some(size) => target.open_pool(size).await,
                        None => target.open(true).await,
                    }
                })
                .await?
                .with_schema(schema);
            let pool_size = driver.pool().options().get_max_connections();
            let result = self.bench(driver.clone(), pool_size, signals).await;
            driver.pool().close().await;
            result
        }
        .await;
        // On every way out, as on PostgreSQL.
        let removed = match owned.as_ref().and_then(SqliteUrl::path) {
            Some(path) => remove_sqlite_file(path),
            None => Ok(()),
        };
        keep_first_error(result, removed)
    }

    async fn bench<D: Driver>(
        &self,
        driver: D,
        pool_size: u32,
        signals: &mut Signals,
    ) -> anyhow::Result<Summary> {
        signals
            .interruptible(async {
                Migrator::new(driver.clone())
                    .migrate_up(MigrateOpts::default())
                    .await
                    .context("could not migrate the benchmark database")
            })
            .await?;
        let mut workers = Workers::new();
        workers.register(NoopWorker {
            job_time: Duration::from_millis(self.job_ms),
        })?;
        let fast_insert = if driver.name() == "postgres" {
            "copy"
        } else {
            "batch"
        };
        let client = Client::builder(driver)
            .workers(workers)
            .queue("default", self.queue_config())
            .fetch_cooldown(Duration::from_millis(self.fetch_cooldown_ms))
            .fetch_poll_interval(Duration::from_millis(self.fetch_poll_ms))
            .build()?;
        let measured = signals
            .interruptible(self.measure(&client, pool_size, fast_insert))
            .await;
        // Every way out stops the client first (the modes stop it themselves when all goes
        // well): its tasks would otherwise go on using the schema or file deleted next.
        match client.stop_with_timeout(STOP_TIMEOUT).await {
            Ok(()) | Err(millrace::Error::NotStarted) => measured,
            Err(err) => keep_first_error(measured, Err(err.into())),
        }
    }

    /// The benchmark queue's configuration: its workers and, with `--global-limit`, its
    /// concurrency limit.
    fn queue_config(&self) -> QueueConfig {
        let config = QueueConfig::new().max_workers(self.max_workers);
        let config = match (self.global_limit, self.partitions) {
            (None, _) => config,
            (Some(n), None) => config.concurrency(ConcurrencyLimit::global(n)),
            (Some(n), Some(_)) => {
                config.concurrency(ConcurrencyLimit::global(n).partition_by_args(["p"]))
            }
        };
        match &self.rate_limit {
            Some(limit) => config.rate_limit(limit.clone()),
            None => config,
        }
    }

    /// The args of the `i`th job.
    fn job_args(&self, i: u64) -> Noop {
        Noop {
            p: self
                .partitions
                .map(|p| u32::try_from(i % u64::from(p)).unwrap_or(0)),
        }
    }

    async fn measure<D: Driver>(
        &self,
        client: &Client<D>,
        pool_size: u32,
        fast_insert: &str,
    ) -> anyhow::Result<Summary> {
        outln!(
            "settings: max_workers={} global_limit={} rate_limit={} partitions={} job_ms={} fetch_cooldown={}ms fetch_poll={}ms pool={pool_size} insert_batch={} insert={}",
            self.max_workers,
            self.global_limit
                .map_or_else(|| "none".to_owned(), |n| n.to_string()),
            rate_limit::describe(self.rate_limit.as_ref()),
            self.partitions.unwrap_or(1),
            self.job_ms,
            self.fetch_cooldown_ms,
            self.fetch_poll_ms,
            self.insert_batch,
            if self.insert_many {
                "insert_many"
            } else {
                fast_insert
            },
        )?;
        // A kept schema (--schema) may hold jobs of earlier runs, or anybody's jobs of the
        // benchmark's kind. Unfinished ones would be worked and counted, so refuse them;
        // finished ones are left out of the figures by id.
        let unfinished = client
            .job_list(
                JobListParams::new()
                    .kinds([Noop::KIND])
                    .states([
                        JobState::Available,
                        JobState::Pending,
                        JobState::Retryable,
                        JobState::Running,
                        JobState::Scheduled,
                    ])
                    .limit(1),
            )
            .await?;
        if let Some(job) = unfinished.jobs.first().filter(|_| !self.join) {
            bail!(
                "the benchmark's schema holds unfinished jobs of kind {:?} (job {} is {}); \
                 the benchmark would work them: use another --schema",
                Noop::KIND,
                job.id,
                job.state.as_str()
            );
        }
        let last_before = client
            .job_list(JobListParams::new().unfiltered().descending().limit(1))
            .await?
            .jobs
            .first()
            .map(|job| job.id);
        let completed = Arc::new(AtomicU64::new(0));
        let counter = tokio::spawn(count_completions(client.subscribe(), completed.clone()));
        let cpu_before = cpu_time();
        let summary = match (self.count, self.duration, self.rate) {
            (Some(n), _, _) => self.throughput(client, n, &completed).await,
            (None, Some(secs), Some(rate)) => {
                self.latency(client, secs, rate, &completed, last_before)
                    .await
            }
            _ => Err(anyhow::anyhow!(
                "give -n COUNT, or --duration SECS with --rate JOBS_PER_SEC"
            )),
        };
        counter.abort();
        let mut summary = summary?;
        let jobs = completed.load(Ordering::Relaxed).max(1);
        if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
            summary.add(
                "cpu_us_per_job",
                (after - before).as_secs_f64() * 1e6 / jobs as f64,
            );
        }
        if let Some(rss) = peak_rss_mb() {
            summary.add("peak_rss_mb", rss);
        }
        Ok(summary)
    }

    async fn throughput<D: Driver>(
        &self,
        client: &Client<D>,
        n: u64,
        completed: &AtomicU64,
    ) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let mut inserted = 0u64;
        while inserted < n {
            let batch = (n - inserted).min(self.insert_batch as u64);
            let jobs =
                (inserted..inserted + batch).map(|i| InsertManyParams::new(self.job_args(i)));
            if self.insert_many {
                client.insert_many(jobs).await?;
            } else {
                client.insert_many_fast(jobs).await?;
            }
            inserted += batch;
        }
        let insert_time = started.elapsed();
        outln!(
            "inserted {n} jobs in {:.2}s ({:.0} jobs/s)",
            insert_time.as_secs_f64(),
            n as f64 / insert_time.as_secs_f64()
        )?;
        let work_started = Instant::now();
        client.start().await?;
        if self.join {
            drained(client, completed, work_started).await?;
        } else {
            progress_until(completed, n, work_started).await;
        }
        let work_time = work_started.elapsed();
        let overall = started.elapsed();
        client.stop().await?;
        let mut summary = Summary::default();
        summary.add("jobs_per_sec", n as f64 / overall.as_secs_f64());
        summary.add("work_jobs_per_sec", n as f64 / work_time.as_secs_f64());
        summary.add("insert_jobs_per_sec", n as f64 / insert_time.as_secs_f64());
        if self.join {
            summary.add("completed_here", completed.load(Ordering::Relaxed) as f64);
        }
        Ok(summary)
    }

    async fn latency<D: Driver>(
        &self,
        client: &Client<D>,
        secs: f64,
        rate: u64,
        completed: &AtomicU64,
        last_before: Option<JobId>,
    ) -> anyhow::Result<Summary> {
        client.start().await?;
        let started = Instant::now();
        let total = (secs * rate as f64).round() as u64;
        // Insert in small batches every 10 ms, so arrivals are spread like real traffic.
        let tick_every = Duration::from_millis(10);
        let mut tick = tokio::time::interval(tick_every);
        let mut inserted = 0u64;
        let mut last_report = Instant::now();
        while inserted < total {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64)
                .min(total)
                // A producer that fell behind catches up in batches of --insert-batch.
                .min(inserted + self.insert_batch as u64);
            if due > inserted {
                let jobs = (inserted..due).map(|i| InsertManyParams::new(self.job_args(i)));
                client.insert_many(jobs).await?;
                inserted = due;
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                outln!(
                    "{:>6.1}s inserted {inserted} completed {}",
                    started.elapsed().as_secs_f64(),
                    completed.load(Ordering::Relaxed)
                )?;
            }
        }
        progress_until(completed, total, started).await;
        client.stop().await?;
        let mut pickup = hdrhistogram::Histogram::<u64>::new(3)?;
        let mut end_to_end = hdrhistogram::Histogram::<u64>::new(3)?;
        let mut first_page = JobListParams::new()
            .kinds([Noop::KIND])
            .states([JobState::Completed])
            .limit(JOB_LIST_MAX_LIMIT);
        if let Some(id) = last_before {
            first_page = first_page.after(id);
        }
        let mut page = Some(first_page);
        while let Some(params) = page.take() {
            let listed = client.job_list(params).await?;
            for job in &listed.jobs {
                let (Some(attempted), Some(finalized)) = (job.attempted_at, job.finalized_at)
                else {
                    continue;
                };
                // In microseconds, as the histograms count.
                let micros = |at: jiff::Timestamp| {
                    at.duration_since(job.created_at).as_micros().max(0) as u64
                };
                pickup.record(micros(attempted))?;
                end_to_end.record(micros(finalized))?;
            }
            page = listed.next;
        }
        let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        outln!(
            "pickup (insert to start): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            ms(&pickup, 0.5),
            ms(&pickup, 0.95),
            ms(&pickup, 0.99)
        )?;
        outln!(
            "end to end (insert to completion): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            ms(&end_to_end, 0.5),
            ms(&end_to_end, 0.95),
            ms(&end_to_end, 0.99)
        )?;
        let mut summary = Summary::default();
        summary.add("pickup_p95_ms", ms(&pickup, 0.95));
        summary.add("p50_ms", ms(&end_to_end, 0.5));
        summary.add("p95_ms", ms(&end_to_end, 0.95));
        summary.add("p99_ms", ms(&end_to_end, 0.99));
        Ok(summary)
    }
}

/// Counts stored completions from the client's events.
async fn count_completions(
    mut events: tokio::sync::broadcast::Receiver<Event>,
    completed: Arc<AtomicU64>,
) {
    loop {
        match events.recv().await {
            Ok(Event::Job {
                kind: EventKind::JobCompleted,
                ..
            }) => {
                completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                // Lagging loses events, not completions: count them anyway, since every job
                // of the benchmark completes.
                completed.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Waits until `target` jobs completed, printing progress every second.
async fn progress_until(completed: &AtomicU64, target: u64, since: Instant) {
    let mut last_print = Instant::now();
    while completed.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let done = completed.load(Ordering::Relaxed);
            errln!(
                "{:>6.1}s completed {done}/{target} ({:.0} jobs/s)",
                since.elapsed().as_secs_f64(),
                done as f64 / since.elapsed().as_secs_f64()
            );
        }
    }
}

/// With `--join`: waits until the shared schema holds no unfinished benchmark job, whoever
/// works them, printing this process's completions every second.
async fn drained<D: Driver>(
    client: &Client<D>,
    completed: &AtomicU64,
    since: Instant,
) -> anyhow::Result<()> {
    let mut last_print = Instant::now();
    loop {
        let unfinished = client
            .job_list(
                JobListParams::new()
                    .kinds([Noop::KIND])
                    .states([
                        JobState::Available,
                        JobState::Pending,
                        JobState::Retryable,
                        JobState::Running,
                        JobState::Scheduled,
                    ])
                    .limit(1),
            )
            .await?;
        if unfinished.jobs.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let done = completed.load(Ordering::Relaxed);
            errln!(
                "{:>6.1}s completed {done} here, the schema still has unfinished jobs",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// The first error of a step and its cleanup; a cleanup that also failed is noted on stderr,
/// so neither is lost.
fn keep_first_error<T>(
    result: anyhow::Result<T>,
    cleanup: anyhow::Result<()>,
) -> anyhow::Result<T> {
    match (result, cleanup) {
        (result, Ok(())) => result,
        (Ok(_), Err(err)) => Err(err),
        (Err(err), Err(cleanup)) => {
            errln!("warning: {cleanup:#}");
            Err(err)
        }
    }
}

async fn exec(pool: &PgPool, sql: &str) -> anyhow::Result<()> {
    // A simple query prepares no statement, so it also runs through a transaction-mode pooler.
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .with_context(|| format!("could not run {sql}"))?;
    Ok(())
}

/// Deletes a SQLite database file with its WAL and shared-memory files.
fn remove_sqlite_file(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err)
                    .with_context(|| format!("could not delete {}", Path::new(&file).display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// User plus system CPU time of this process, from /proc (Linux); `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in USER_HZ, which is 100 on every mainstream configuration.
    Some(Duration::from_millis(ticks * 10))
}

/// The peak resident memory of this process in MiB, from /proc (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
