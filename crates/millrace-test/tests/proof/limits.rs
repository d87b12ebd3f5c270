//! The concurrency limits' proof (issue 19, part 5): three `millrace-load-worker` processes
//! work a queue under a global limit of 2 per partition over 5 partitions
//! (`partition_by_args(["part"])`) on a private PostgreSQL cluster, while a sampler reads the
//! running rows per partition from the database every 50 ms. A third of the way through one
//! process is SIGKILLed (its running rows hold their slots until the dead-client rescue frees
//! them), two thirds of the way PostgreSQL restarts. No sample may show more than 2 running
//! jobs in a partition, and every job must complete, run once except where the killed process
//! died holding it.
//!
//! `MILLRACE_LIMIT_PROOF_JOBS` sets the number of jobs (2,000 by default); docs/limits.md has
//! the figures and the command.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use millrace::{Client, InsertManyParams, MigrateOpts, Migrator, Schema};
use millrace_postgres::PgDriver;
use millrace_test::pg_cluster::Cluster;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

use super::OUTAGE;
use super::fleet::LoadProcess;
use super::jobs::{create_runs_table, wait_until};
use super::load_worker::{
    ACQUIRE_TIMEOUT, LIMIT_PER_PARTITION, LIMITED_QUEUE, LimitLoadArgs, load_pool,
};
use super::logs::run_logged;

/// Partitions of the run: values 0 to 4 of the `part` field.
const PARTITIONS: i64 = 5;
/// How often the sampler reads the running rows.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The longest the run may take, from the first insert to the last completion.
const DEADLINE: Duration = Duration::from_secs(90);
/// The processes' heartbeat lease: the killed process's jobs are rescued within it, and a
/// process outlives PostgreSQL's restart without fencing itself.
const HEARTBEAT_LEASE_MS: &str = "10000";

fn jobs() -> i64 {
    std::env::var("MILLRACE_LIMIT_PROOF_JOBS")
        .ok()
        .map(|v| v.parse().expect("MILLRACE_LIMIT_PROOF_JOBS is a number"))
        .unwrap_or(2_000)
}

/// What the sampler saw.
#[derive(Debug, Default)]
struct Samples {
    /// Samples read.
    read: u64,
    /// Samples that failed (PostgreSQL was restarting).
    failed: u64,
    /// The most running rows seen at once, per partition.
    max: BTreeMap<String, i64>,
    /// Samples in which some partition was at its limit: the limit bound.
    at_limit: u64,
}

/// Reads the running rows of the limited queue per partition every [`SAMPLE_EVERY`] until
/// `stop`, or for at most twice the run's deadline.
async fn sample(pool: PgPool, schema: Schema, stop: Arc<AtomicBool>) -> Samples {
    let sql = format!(
        "SELECT coalesce(args->>'part', 'null'), count(*) FROM {} \
         WHERE state = 'running' AND queue = $1 GROUP BY 1",
        schema.qualify("river_job")
    );
    let mut samples = Samples::default();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + DEADLINE * 2;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        tick.tick().await;
        let rows = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql.clone()))
            .bind(LIMITED_QUEUE)
            .fetch_all(&pool)
            .await;
        match rows {
            Ok(rows) => {
                samples.read += 1;
                if rows
                    .iter()
                    .any(|(_, n)| *n >= i64::from(LIMIT_PER_PARTITION))
                {
                    samples.at_limit += 1;
                }
                for (part, n) in rows {
                    let max = samples.max.entry(part).or_default();
                    *max = (*max).max(n);
                }
            }
            Err(_) => samples.failed += 1,
        }
    }
    samples
}

async fn scalar(pool: &PgPool, sql: String) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("query the ledger")
}

#[test]
fn a_global_limit_per_partition_holds_through_a_sigkill_and_a_postgres_restart() {
    run_logged(|_logs| async {
        let jobs = jobs();
        let cluster = tokio::task::block_in_place(Cluster::start);
        let url = cluster.url();
        let schema = Schema::new("millrace_limit_proof").expect("valid schema");
        let pool = load_pool(&url, "mrproof_limit_checker", 3).expect("checker pool");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {}", schema.name())))
            .execute(&pool)
            .await
            .expect("create the schema");
        Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
            .migrate_up(MigrateOpts::default())
            .await
            .expect("migrate the private cluster");
        create_runs_table(&pool, &schema).await;

        let ids = ["limit_proof_0", "limit_proof_1", "limit_proof_2"];
        let mut processes = Vec::new();
        for id in ids {
            processes.push(
                LoadProcess::spawn_with(
                    &url,
                    &schema,
                    id,
                    id,
                    ACQUIRE_TIMEOUT,
                    &["--limited", "--heartbeat-lease-ms", HEARTBEAT_LEASE_MS],
                )
                .await,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sampler_pool = load_pool(&url, "mrproof_limit_sampler", 1).expect("sampler pool");
        let sampler = tokio::spawn(sample(sampler_pool, schema.clone(), stop.clone()));

        let inserter = Client::builder(PgDriver::new(pool.clone()).with_schema(schema.clone()))
            .build()
            .expect("build the inserter");
        let started = Instant::now();
        let inserted = inserter
            .insert_many_fast((0..jobs).map(|n| {
                InsertManyParams::new(LimitLoadArgs {
                    part: n % PARTITIONS,
                    n,
                })
            }))
            .await
            .expect("insert the jobs");
        assert_eq!(inserted, jobs as u64);

        let killed = ids[2];
        let done = wait_until(&pool, &schema, DEADLINE, |done| done >= jobs / 3).await;
        // Kill the process while it holds running jobs, so their slots stay taken until the
        // rescue: the case the limit must survive.
        let holding = format!(
            "SELECT count(*) FROM {} WHERE state = 'running' \
             AND attempted_by[cardinality(attempted_by)] = '{killed}'",
            schema.qualify("river_job")
        );
        let kill_deadline = Instant::now() + Duration::from_secs(10);
        let mut running_at_kill = scalar(&pool, holding.clone()).await;
        while running_at_kill == 0 && Instant::now() < kill_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            running_at_kill = scalar(&pool, holding.clone()).await;
        }
        assert!(running_at_kill > 0, "{killed} never held a running job");
        processes[2].kill();
        let killed_at = (done, started.elapsed());

        let done = wait_until(&pool, &schema, DEADLINE, |done| done >= jobs * 2 / 3).await;
        assert!(
            done < jobs,
            "the run ended before PostgreSQL restarted: it proves nothing"
        );
        tokio::task::block_in_place(|| cluster.restart(OUTAGE));
        let restarted_at = (done, started.elapsed());

        wait_until(&pool, &schema, DEADLINE, |done| done == jobs).await;
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let samples = sampler.await.expect("the sampler ends");
        for process in &mut processes[..2] {
            process.terminate().await;
        }

        let job = schema.qualify("river_job");
        let runs = schema.qualify("load_runs");
        let max = samples.max.values().copied().max().unwrap_or(0);
        println!(
            "limits proof: {jobs} jobs, {PARTITIONS} partitions, global limit \
             {LIMIT_PER_PARTITION} per partition, 3 processes: all done in {elapsed:.1?}; \
             SIGKILL of {killed} at {killed_at:?} (completed, elapsed) holding \
             {running_at_kill} running jobs; PostgreSQL restarted at {restarted_at:?}; \
             {} samples every {SAMPLE_EVERY:?} ({} failed during the restart, {} with a \
             partition at its limit); max running per partition {:?}",
            samples.read, samples.failed, samples.at_limit, samples.max
        );
        assert!(
            max <= i64::from(LIMIT_PER_PARTITION),
            "a partition ran more than {LIMIT_PER_PARTITION} jobs at once: {:?}",
            samples.max
        );
        assert!(
            samples.at_limit > 0 && samples.max.len() as i64 == PARTITIONS,
            "the limit never bound, or a partition was never seen running: it proves nothing \
             ({samples:?})"
        );
        assert_eq!(
            scalar(
                &pool,
                format!("SELECT count(*) FROM {job} WHERE state <> 'completed'")
            )
            .await,
            0,
            "every job completed"
        );
        // Each job's last run was recorded by the client that completed it, and any other
        // run was the killed process's, which died holding the job (at least once, as for
        // any process that dies mid-job).
        assert_eq!(
            scalar(
                &pool,
                format!(
                    "SELECT count(*) FROM {job} AS j WHERE NOT EXISTS (SELECT 1 FROM {runs} AS r \
                     WHERE r.job_id = j.id AND r.client = j.attempted_by[cardinality(j.attempted_by)] \
                     AND r.attempt = j.attempt)"
                )
            )
            .await,
            0,
            "every job was recorded by the client that completed it"
        );
        let extra_runs = scalar(
            &pool,
            format!(
                "SELECT count(*) FROM {runs} AS r JOIN {job} AS j ON j.id = r.job_id \
                 WHERE r.attempt <> j.attempt"
            ),
        )
        .await;
        assert_eq!(
            scalar(
                &pool,
                format!(
                    "SELECT count(*) FROM {runs} AS r JOIN {job} AS j ON j.id = r.job_id \
                     WHERE r.attempt <> j.attempt AND r.client <> '{killed}'"
                )
            )
            .await,
            0,
            "only the killed process's jobs ran twice"
        );
        let retried = scalar(
            &pool,
            format!("SELECT count(*) FROM {job} WHERE attempt > 1"),
        )
        .await;
        println!(
            "limits proof: {retried} jobs run again after the SIGKILL, {extra_runs} of them \
             had recorded their first run"
        );
        assert!(
            retried <= running_at_kill + i64::from(LIMIT_PER_PARTITION) * PARTITIONS,
            "more jobs ran twice ({retried}) than the killed process can have held"
        );
        pool.close().await;
    });
}
