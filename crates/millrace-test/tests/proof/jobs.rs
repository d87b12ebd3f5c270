//! Load jobs and what the database says about them: the runs table, inserting and counting
//! the jobs, waiting for them, and the exactly-once check.

use std::collections::BTreeMap;
use std::time::Duration;

use millrace::{Client, InsertManyParams, Schema};
use millrace_postgres::PgDriver;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::time::Instant;

use super::load_worker::{LoadArgs, runs_table_sql};
use super::{POLL, STALL};

pub(crate) async fn create_runs_table(pool: &PgPool, schema: &Schema) {
    sqlx::raw_sql(AssertSqlSafe(runs_table_sql(schema)))
        .execute(pool)
        .await
        .expect("create load_runs");
}

/// Inserts `count` load jobs in one COPY.
pub(crate) async fn insert_load_jobs(client: &Client<PgDriver>, count: i64) {
    let inserted = client
        .insert_many_fast((0..count).map(|n| InsertManyParams::new(LoadArgs { n })))
        .await
        .expect("insert the load jobs");
    assert_eq!(inserted, count as u64);
}

pub(crate) async fn completed(pool: &PgPool, schema: &Schema) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'completed'",
        schema.qualify("river_job")
    );
    sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(pool).await
}

pub(crate) async fn count_running(pool: &PgPool, schema: &Schema) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE state = 'running'",
        schema.qualify("river_job")
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count running jobs")
}

/// Jobs per state, for failure messages.
pub(crate) async fn states(pool: &PgPool, schema: &Schema) -> String {
    let sql = format!(
        "SELECT state::text, count(*) FROM {} GROUP BY 1 ORDER BY 1",
        schema.qualify("river_job")
    );
    match sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
    {
        Ok(rows) => format!("{rows:?}"),
        Err(err) => format!("(cannot read them: {err})"),
    }
}

/// Polls the number of completed jobs until `done` holds, and returns it; errors count as "not
/// yet", since the server may be restarting. Panics when no job completes for [`STALL`] or
/// `limit` passes.
pub(crate) async fn wait_until(
    pool: &PgPool,
    schema: &Schema,
    limit: Duration,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let mut progress = Progress::new(limit);
    loop {
        let last = match completed(pool, schema).await {
            Ok(n) if done(n) => return n,
            other => other,
        };
        if let Err(why) = progress.check(last.as_ref().ok().copied()) {
            panic!(
                "jobs did not get done: {why}: last count {last:?}; states: {}",
                states(pool, schema).await
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Tells a run that still makes progress from one that stalled or dragged on.
pub(crate) struct Progress {
    started: Instant,
    limit: Duration,
    last: i64,
    last_change: Instant,
}

impl Progress {
    pub(crate) fn new(limit: Duration) -> Self {
        let now = Instant::now();
        Progress {
            started: now,
            limit,
            last: 0,
            last_change: now,
        }
    }

    /// Records the completed count (`None` when it could not be read); an error when no job
    /// completed for [`STALL`] or the run took longer than its limit.
    pub(crate) fn check(&mut self, done: Option<i64>) -> Result<(), String> {
        let now = Instant::now();
        if let Some(done) = done
            && done != self.last
        {
            self.last = done;
            self.last_change = now;
        }
        if now.duration_since(self.last_change) >= STALL {
            return Err(format!("no job completed for {STALL:?}"));
        }
        if now.duration_since(self.started) >= self.limit {
            return Err(format!("the run took longer than {:?}", self.limit));
        }
        Ok(())
    }
}

/// Asserts that every one of `jobs` jobs completed at its first attempt without an error and
/// was recorded exactly once in `load_runs`, by the client its `attempted_by` names last.
/// Returns the runs per client.
pub(crate) async fn assert_exactly_once(
    pool: &PgPool,
    schema: &Schema,
    jobs: i64,
) -> BTreeMap<String, i64> {
    let job = schema.qualify("river_job");
    let runs = schema.qualify("load_runs");
    assert_eq!(
        states(pool, schema).await,
        format!("{:?}", [("completed", jobs)]),
        "every job should be completed"
    );
    let sql = format!(
        "SELECT \
             (SELECT count(*) FROM {runs}), \
             (SELECT count(DISTINCT job_id) FROM {runs}), \
             (SELECT count(*) FROM {job} AS j \
                  WHERE NOT EXISTS (SELECT 1 FROM {runs} AS r WHERE r.job_id = j.id)), \
             (SELECT count(*) FROM {runs} AS r JOIN {job} AS j ON j.id = r.job_id \
                  WHERE j.attempted_by[cardinality(j.attempted_by)] IS DISTINCT FROM r.client)"
    );
    let (total, distinct, never_run, other_client): (i64, i64, i64, i64) =
        sqlx::query_as(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("count runs");
    let sql = format!(
        "SELECT job_id, string_agg(client || ' attempt ' || attempt, ', ' ORDER BY at) \
         FROM {runs} GROUP BY job_id HAVING count(*) > 1 ORDER BY job_id LIMIT 5"
    );
    let twice: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("find jobs run twice");
    assert!(
        total == jobs && distinct == jobs && never_run == 0 && twice.is_empty(),
        "every job should have run exactly once: {total} runs of {distinct} distinct jobs for \
         {jobs} jobs, {never_run} jobs never run; run more than once: {twice:?}"
    );
    assert_eq!(
        other_client, 0,
        "runs recorded by a client other than attempted_by's last"
    );
    let sql = format!(
        "SELECT count(*) FILTER (WHERE attempt <> 1), \
                count(*) FILTER (WHERE coalesce(cardinality(errors), 0) > 0) \
         FROM {job}"
    );
    let (retried, errored): (i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count attempts");
    assert_eq!(
        (retried, errored),
        (0, 0),
        "every job should complete at its first attempt without an error (jobs not at attempt \
         1, jobs with errors)"
    );
    let sql = format!("SELECT client, count(*) FROM {runs} GROUP BY client");
    sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("count runs per client")
        .into_iter()
        .collect()
}
