//! `millrace bench`: how fast this machine's database works jobs through Millrace.
//!
//! Two modes: `-n COUNT` inserts COUNT no-op jobs and burns them down (throughput);
//! `--duration SECS --rate R` inserts R jobs/s steadily and reports latencies. Timings of
//! jobs come from the database's own clock (`created_at`, `attempted_at`, `finalized_at`),
//! so they are what a user would see; SQLite stores them to the millisecond. Both modes run
//! the same code on PostgreSQL and SQLite. `millrace bench persistent` is a scenario of its
//! own, in `bench/persistent.rs`.

mod persistent;
mod probe;
mod rate_limit;
mod run;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Subcommand};
use millrace::{Job, JobArgs, QueueConfig, WorkError, Worker};
use serde::{Deserialize, Serialize};

use self::persistent::PersistentArgs;
use crate::database::ConnectionArgs;
use crate::pooler::PoolerArgs;

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
