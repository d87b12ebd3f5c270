//! The benchmark's run: connect (a schema or a file of its own), start a client, insert,
//! work and measure in either mode, and clean up on every exit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use millrace::{
    Client, ConcurrencyLimit, Driver, InsertManyParams, JOB_LIST_MAX_LIMIT, JobArgs, JobId,
    JobListParams, JobState, MigrateOpts, Migrator, QueueConfig, Schema, Workers,
};
use millrace_postgres::{ConnectOptions, PgDriver};
use sqlx::postgres::PgPoolOptions;

use crate::database::{Database, SqliteUrl, postgres_options, sqlite_schema};
use crate::output::outln;
use crate::signals::Signals;

use super::probe::{
    count_completions, cpu_time, drained, exec, keep_first_error, peak_rss_mb, progress_until,
    remove_sqlite_file,
};
use super::rate_limit;
use super::{BenchArgs, Noop, NoopWorker, STOP_TIMEOUT, Summary};

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
