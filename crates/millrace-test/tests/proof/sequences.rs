//! The sequences' proof (issue 19, part 5): 10,000 jobs in 100 sequences, worked by three
//! `millrace-load-worker` processes while they are being inserted. Each run records its
//! sequence, position, start and end (by the database's clock, which the processes share) in
//! `<schema>.seq_runs`; the database then says whether two jobs of one sequence ever
//! overlapped and whether any ran out of order.
//!
//! `MILLRACE_SEQ_PROOF_JOBS` sets the number of jobs (a multiple of 100; 10,000 by default);
//! docs/performance.md has the figures of the full run and the command.

use millrace::{Client, InsertManyParams};
use millrace_test::TestDb;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

use super::LOAD_DEADLINE;
use super::fleet::LoadProcess;
use super::jobs::wait_until;
use super::load_worker::{SeqLoadArgs, seq_runs_table_sql};
use super::logs::run_logged;

/// Sequences in the run.
const SEQUENCES: i64 = 100;
/// Jobs per insert batch: the batches go in while the fleet works, as an application's would.
const BATCH: i64 = 1_000;

fn jobs() -> i64 {
    std::env::var("MILLRACE_SEQ_PROOF_JOBS")
        .ok()
        .map(|v| v.parse().expect("MILLRACE_SEQ_PROOF_JOBS is a number"))
        .unwrap_or(10_000)
}

async fn scalar(pool: &PgPool, sql: String) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("query the ledger")
}

#[test]
fn ten_thousand_jobs_in_a_hundred_sequences_never_overlap_or_reorder() {
    run_logged(|_logs| async {
        let jobs = jobs();
        assert!(
            jobs % SEQUENCES == 0,
            "jobs must be a multiple of {SEQUENCES}"
        );
        let per_sequence = jobs / SEQUENCES;
        let db = TestDb::new().await;
        sqlx::raw_sql(AssertSqlSafe(seq_runs_table_sql(db.schema())))
            .execute(db.pool())
            .await
            .expect("create seq_runs");
        let mut processes = Vec::new();
        for n in 0..3 {
            let id = format!("seq_proof_{n}");
            processes.push(
                LoadProcess::spawn(
                    db.url(),
                    db.schema(),
                    &id,
                    &id,
                    super::CHURN_ACQUIRE_TIMEOUT,
                )
                .await,
            );
        }
        let inserter = Client::builder(db.driver())
            .build()
            .expect("build the inserter");

        let started = Instant::now();
        // Position by position, every sequence's next job in each round, so the batches
        // interleave the sequences and the fleet works the first while the last go in.
        let all: Vec<SeqLoadArgs> = (0..per_sequence)
            .flat_map(|pos| (0..SEQUENCES).map(move |seq| SeqLoadArgs { seq, pos }))
            .collect();
        for batch in all.chunks(BATCH as usize) {
            inserter
                .insert_many(batch.iter().cloned().map(InsertManyParams::new))
                .await
                .expect("insert a batch");
        }
        let inserted = started.elapsed();
        wait_until(db.pool(), db.schema(), LOAD_DEADLINE, |done| done == jobs).await;
        let elapsed = started.elapsed();
        for process in &mut processes {
            process.terminate().await;
        }

        let runs = db.schema().qualify("seq_runs");
        assert_eq!(
            scalar(db.pool(), format!("SELECT count(*) FROM {runs}")).await,
            jobs,
            "every job ran exactly once"
        );
        assert_eq!(
            scalar(
                db.pool(),
                format!("SELECT count(*) FROM {runs} WHERE ended_at IS NULL OR attempt <> 1")
            )
            .await,
            0,
            "every run ended, at its first attempt"
        );
        // In each sequence, by start time: every run starts after the one before it ended,
        // and is the next position.
        let overlaps = scalar(
            db.pool(),
            format!(
                "SELECT count(*) FROM (SELECT started_at, \
                 lag(ended_at) OVER (PARTITION BY seq ORDER BY started_at, job_id) AS prev_end \
                 FROM {runs}) AS r WHERE started_at < prev_end"
            ),
        )
        .await;
        let reordered = scalar(
            db.pool(),
            format!(
                "SELECT count(*) FROM (SELECT pos, \
                 lag(pos, 1, -1::bigint) OVER (PARTITION BY seq ORDER BY started_at, job_id) AS prev \
                 FROM {runs}) AS r WHERE pos <> prev + 1"
            ),
        )
        .await;
        let clients = scalar(
            db.pool(),
            format!("SELECT count(DISTINCT client) FROM {runs}"),
        )
        .await;
        println!(
            "sequences proof: {jobs} jobs in {SEQUENCES} sequences, 3 processes: inserted in \
             {inserted:.1?}, all done in {elapsed:.1?} ({:.0} jobs/s); overlaps {overlaps}, \
             out of order {reordered}, processes that worked jobs {clients}",
            jobs as f64 / elapsed.as_secs_f64()
        );
        assert_eq!(overlaps, 0, "two jobs of one sequence ran at once");
        assert_eq!(reordered, 0, "a sequence's jobs ran out of insertion order");
        assert_eq!(clients, 3, "every process worked jobs");
    });
}
