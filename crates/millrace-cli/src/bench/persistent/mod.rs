//! `millrace bench persistent`: how fast a persistent worker's instance moves between
//! processes, and a watch for any moment with two instances.
//!
//! The benchmark runs a fleet of `millrace demo` processes (this very binary), each with the
//! demo's persistent worker `ticker`, and reads the `persistent-worker ticker started/stopped
//! client=…` lines they print. Each trial first kills the holder with SIGKILL and times the
//! failover (the kill to another process's `started` line), then stops the next holder with
//! SIGINT and times the handover (its `stopped` line to another's `started` line); a fresh
//! process replaces each one that left, so the fleet keeps its size.
//!
//! Two instances are watched for in two ways: from the lines (a `started` while another live
//! process holds the instance) and from the database (sampled every 50 ms: at most one row of
//! the worker is running, and at most one is live).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use millrace::{MigrateOpts, Migrator, Schema};
use millrace_postgres::PgDriver;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::database::{ConnectionArgs, Database, postgres_options};
use crate::output::{errln, outln};
use crate::signals::Signals;

mod fleet;
mod sampler;

use fleet::{Fleet, LINE_ORDER_SLACK, ms};
use sampler::{DbSampler, TICKER_KIND, exec};

/// How long the fleet runs undisturbed after a process joins, before the next trial.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub(crate) struct PersistentArgs {
    /// PostgreSQL only; the URL reaches the demo processes through their environment, the
    /// other connection flags through their command lines.
    #[command(flatten)]
    connection: Box<ConnectionArgs>,
    /// Use (and keep) this schema, created and migrated if needed. By default the benchmark
    /// creates a schema of its own and drops it at the end.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// How many times to measure each of failover after SIGKILL and handover after SIGINT:
    /// 1 to 1,000.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    trials: u32,
    /// The persistent worker's lease (and the demos' heartbeat lease), in seconds: 1 to
    /// 3,600, as `millrace demo --lease` accepts.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    lease: u64,
    /// How many `millrace demo` processes make up the fleet: 2 to 32.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=32))]
    clients: u32,
}

/// What the trials measured.
struct Report {
    kill_failover: Vec<Duration>,
    stop_handover: Vec<Duration>,
    two_instances: u32,
}

impl PersistentArgs {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let Database::Postgres(options) = self.connection.database("bench persistent", None)?
        else {
            bail!("millrace bench persistent runs on PostgreSQL only: give a postgres:// URL");
        };
        // From here on SIGINT and SIGTERM end the benchmark through its cleanup: the demos
        // are killed and the schema dropped.
        let mut signals = Signals::new()?;
        let opts = signals.interruptible(postgres_options(&options)).await?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(opts);
        let (schema, owned) = match &self.schema {
            Some(name) => (Schema::new(name).context("invalid --schema")?, false),
            None => (
                Schema::new(format!("millrace_bench_persistent_{}", std::process::id()))?,
                true,
            ),
        };
        let work = async {
            exec(
                &pool,
                &format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.name()),
            )
            .await?;
            // Migrated here, so the demos, started one after another, find nothing to do.
            Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
                .migrate_up(MigrateOpts::default())
                .await
                .context("could not migrate the benchmark schema")?;
            self.bench(&pool, &schema).await
        };
        // A signal drops the fleet, whose demos are killed with it, and the sampler.
        let result = signals.interruptible(work).await;
        if owned {
            let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema.name());
            let dropped = tokio::select! {
                dropped = exec(&pool, &drop) => dropped,
                signal = signals.recv() => Err(anyhow::anyhow!(
                    "{signal} while dropping the benchmark's schema: it is left behind; run {drop}"
                )),
            };
            match (&result, dropped) {
                (_, Ok(())) => {}
                (Ok(_), Err(err)) => return Err(err),
                (Err(_), Err(err)) => errln!("warning: {err:#}"),
            }
        }
        let report = result?;
        let kill = Stats::of(&report.kill_failover);
        let stop = Stats::of(&report.stop_handover);
        outln!(
            "kill failover (SIGKILL of the holder to another's start): p50 {} ms, max {} ms \
             (promised: within the lease plus 2 s, {} ms)",
            kill.p50_ms,
            kill.max_ms,
            (self.lease + 2) * 1000
        )?;
        outln!(
            "stop handover (the holder's stop to another's start): p50 {} ms, max {} ms \
             (promised: within 2000 ms)",
            stop.p50_ms,
            stop.max_ms
        )?;
        outln!(
            "kill_failover_p50_ms={} kill_failover_max_ms={} stop_handover_p50_ms={} \
             stop_handover_max_ms={} two_instances={} trials={} lease_s={}",
            kill.p50_ms,
            kill.max_ms,
            stop.p50_ms,
            stop.max_ms,
            report.two_instances,
            self.trials,
            self.lease
        )?;
        Ok(if report.two_instances == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    async fn bench(&self, pool: &PgPool, schema: &Schema) -> anyhow::Result<Report> {
        let lease = Duration::from_secs(self.lease);
        let promised_failover = lease + Duration::from_secs(2);
        // Deadlines are generous: a trial that misses one is a failure of the guarantee, and is
        // reported as an error rather than as a figure.
        let failover_deadline = promised_failover * 3;
        let exit_deadline = Duration::from_secs(30);
        outln!(
            "settings: clients={} trials={} lease={}s schema={}",
            self.clients,
            self.trials,
            self.lease,
            schema.name()
        )?;

        let sampler = DbSampler::start(pool.clone(), schema);
        let mut fleet = Fleet::new(
            std::env::current_exe().context("could not find the millrace binary")?,
            [
                "demo".to_owned(),
                "--schema".to_owned(),
                schema.name().to_owned(),
                "--lease".to_owned(),
                self.lease.to_string(),
                "--rate".to_owned(),
                "1".to_owned(),
            ]
            .into_iter()
            .chain(self.connection.child_args())
            .collect(),
            self.connection.database_url.clone(),
        );
        let result = async {
            let spawned = Instant::now();
            for _ in 0..self.clients {
                fleet.spawn().await?;
            }
            let (first, at) = fleet
                .wait_start(spawned, None, failover_deadline)
                .await
                .context("no demo started the instance")?;
            outln!(
                "the instance started on {} {} ms after the first demo was spawned",
                fleet.procs[first].client_id,
                ms(at - spawned)
            )?;
            fleet.settle(SETTLE).await?;

            let mut report = Report {
                kill_failover: Vec::new(),
                stop_handover: Vec::new(),
                two_instances: 0,
            };
            for trial in 1..=self.trials {
                // The holder renews four times per lease, and the failover depends on how long
                // before the kill it last did: kill at a random point of that cycle, as a crash
                // would, rather than always at the same one.
                fleet.settle(random_below(lease / 4)).await?;
                let holder = fleet.wait_holder(failover_deadline).await?;
                let killed_at = fleet.kill(holder);
                let (next, at) = fleet
                    .wait_start(killed_at, Some(holder), failover_deadline)
                    .await
                    .with_context(|| {
                        format!("trial {trial}: no demo took the instance over after SIGKILL")
                    })?;
                let failover = at - killed_at;
                outln!(
                    "trial {trial}/{}: SIGKILL of {}; {} started the instance {} ms later",
                    self.trials,
                    fleet.procs[holder].client_id,
                    fleet.procs[next].client_id,
                    ms(failover)
                )?;
                report.kill_failover.push(failover);
                fleet.wait_exit(holder, exit_deadline).await?;
                fleet.spawn().await?;
                fleet.settle(SETTLE).await?;

                let holder = fleet.wait_holder(failover_deadline).await?;
                let asked = fleet.interrupt(holder)?;
                let stopped = fleet
                    .wait_stop(holder, asked, exit_deadline)
                    .await
                    .with_context(|| format!("trial {trial}: the holder did not stop"))?;
                let (next, started) = fleet
                    .wait_start(asked, Some(holder), failover_deadline)
                    .await
                    .with_context(|| {
                        format!("trial {trial}: no demo took the instance over after SIGINT")
                    })?;
                // A start before the stop is counted as two instances by the fleet's watch.
                let handover = started.saturating_duration_since(stopped);
                outln!(
                    "trial {trial}/{}: SIGINT of {}, stopped {} ms later; {} started the \
                     instance {} ms after the stop",
                    self.trials,
                    fleet.procs[holder].client_id,
                    ms(stopped - asked),
                    fleet.procs[next].client_id,
                    ms(handover)
                )?;
                report.stop_handover.push(handover);
                fleet.wait_exit(holder, exit_deadline).await?;
                fleet.spawn().await?;
                fleet.settle(SETTLE).await?;
            }
            // The last starts may still be unresolved: give them their slack.
            fleet.settle(LINE_ORDER_SLACK * 2).await?;
            Ok::<_, anyhow::Error>(report)
        }
        .await;
        let samples = sampler.stop();
        fleet.shutdown().await;
        let mut report = result?;
        outln!(
            "lines: {} starts, {} while another process held the instance; {} pairs of lines \
             read out of order (by at most {} ms)",
            fleet.starts.len(),
            fleet.overlaps,
            fleet.reordered,
            ms(fleet.max_reorder)
        )?;
        outln!(
            "database: {} samples, at most {} running and {} live rows of {TICKER_KIND} \
             ({} rows at most in all), {} moments with two, {} failed samples",
            samples.samples,
            samples.max_running,
            samples.max_live,
            samples.max_rows,
            samples.violations,
            samples.errors
        )?;
        report.two_instances = fleet.overlaps + samples.violations;
        Ok(report)
    }
}

/// The median and the worst of some durations, in whole milliseconds.
struct Stats {
    p50_ms: u128,
    max_ms: u128,
}

impl Stats {
    fn of(values: &[Duration]) -> Stats {
        let mut sorted: Vec<u128> = values.iter().map(|d| d.as_millis()).collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let p50_ms = match n {
            0 => 0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]).div_ceil(2),
        };
        Stats {
            p50_ms,
            max_ms: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// A duration picked evenly below `bound`, random enough to spread the kills.
fn random_below(bound: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    bound.mul_f64(f64::from(nanos % 1_000_000) / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let d = |ms| Duration::from_millis(ms);
        let stats = Stats::of(&[d(40), d(10), d(30), d(20)]);
        assert_eq!((stats.p50_ms, stats.max_ms), (25, 40));
        let stats = Stats::of(&[d(7), d(3), d(5)]);
        assert_eq!((stats.p50_ms, stats.max_ms), (5, 7));
    }
}
