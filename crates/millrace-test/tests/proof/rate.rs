//! The rate limits' proof (issue 19, part 5): a rate limit of 50 jobs/s held within 5 % over a
//! minute by three clients fetching one queue with a backlog far above the limit. The clients
//! run in this process (each with a pool of its own, so they race through the database as
//! separate processes would); the database's clock (`attempted_at`) says how many jobs
//! started in the minute and the most in any one-second span.
//!
//! `MILLRACE_RATE_PROOF_SECS` sets the measured span (60 by default); docs/performance.md has
//! the figures of the full run and the command.

use std::time::Duration;

use millrace::{
    Client, InsertManyParams, InsertOpts, Job, JobArgs, QueueConfig, RateLimit, WorkError, Worker,
    Workers,
};
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use super::logs::run_logged;

const QUEUE: &str = "rate_proof";
const RATE: u32 = 50;

#[derive(Debug, Serialize, Deserialize)]
struct Tick {}

impl JobArgs for Tick {
    const KIND: &'static str = "rate_proof_tick";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new().queue(QUEUE)
    }
}

struct TickWorker;

impl Worker for TickWorker {
    type Args = Tick;

    async fn work(&self, _job: Job<Tick>) -> Result<(), WorkError> {
        Ok(())
    }
}

fn secs() -> u64 {
    std::env::var("MILLRACE_RATE_PROOF_SECS")
        .ok()
        .map(|v| v.parse().expect("MILLRACE_RATE_PROOF_SECS is a number"))
        .unwrap_or(60)
}

#[test]
fn a_rate_limit_of_50_per_second_holds_within_5_percent_over_a_minute() {
    run_logged(|_logs| async {
        let secs = secs();
        let db = TestDb::new().await;
        let mut clients = Vec::new();
        for n in 0..3 {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(5)
                .connect(db.url())
                .await
                .expect("connect");
            let driver = millrace_postgres::PgDriver::new(pool).with_schema(db.schema().clone());
            let mut workers = Workers::new();
            workers.register(TickWorker).unwrap();
            let client = Client::builder(driver)
                .id(format!("rate_proof_{n}"))
                .workers(workers)
                .queue(
                    QUEUE,
                    QueueConfig::new()
                        .max_workers(100)
                        .rate_limit(RateLimit::per(RATE, Duration::from_secs(1))),
                )
                .build()
                .unwrap();
            clients.push(client);
        }
        // A backlog well above what the minute lets through.
        let backlog = usize::try_from(u64::from(RATE) * (secs + 20)).unwrap();
        clients[0]
            .insert_many((0..backlog).map(|_| InsertManyParams::new(Tick {})))
            .await
            .unwrap();
        for client in &clients {
            client.start().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(secs + 2)).await;
        for client in &clients {
            client.stop().await.unwrap();
        }
        let job = format!("{}river_job", db.schema().fill("/*schema*/"));
        // Jobs started in the measured span, from the first start.
        let (started, max_second): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            r#"
WITH s AS (
    SELECT attempted_at AS at FROM {job} WHERE queue = $1 AND attempted_at IS NOT NULL
), first AS (SELECT min(at) AS t0 FROM s)
SELECT
    (SELECT count(*) FROM s, first WHERE at < t0 + $2 * interval '1 second'),
    (SELECT max(n) FROM (
        SELECT count(*) OVER (ORDER BY at RANGE BETWEEN interval '999999 microseconds' PRECEDING
                              AND CURRENT ROW) AS n
        FROM s
    ) AS w)"#
        )))
        .bind(QUEUE)
        .bind(i64::try_from(secs).unwrap())
        .fetch_one(db.pool())
        .await
        .expect("count the starts");
        let expected = i64::from(RATE) * i64::try_from(secs).unwrap();
        println!(
            "rate proof: {started} jobs started in {secs} s (expected {expected}, {:.3}x); \
             most in one second: {max_second}",
            started as f64 / expected as f64
        );
        assert!(
            (started - expected).abs() * 20 <= expected,
            "{started} jobs started in {secs} s, more than 5 % from {expected}"
        );
    });
}
