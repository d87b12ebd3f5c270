//! The database's view while the benchmark runs: the worker's rows sampled every 50 ms, to
//! catch two running or two live instances.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use millrace::Schema;
use sqlx::{AssertSqlSafe, PgPool};

use crate::output::outln;

/// The kind of the demo's persistent worker.
pub(super) const TICKER_KIND: &str = "millrace_persistent:ticker";

/// How often the database is sampled for a second instance.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What the database showed of the instance's rows.
#[derive(Debug, Default, Clone)]
pub(super) struct Samples {
    pub(super) samples: u64,
    pub(super) errors: u64,
    pub(super) max_running: i64,
    pub(super) max_live: i64,
    pub(super) max_rows: i64,
    /// Moments (runs of consecutive samples) with more than one running or live row.
    pub(super) violations: u32,
}

/// Samples the instance's rows every [`SAMPLE_EVERY`] on a task of its own.
pub(super) struct DbSampler {
    task: tokio::task::JoinHandle<()>,
    samples: Arc<Mutex<Samples>>,
}

impl DbSampler {
    pub(super) fn start(pool: PgPool, schema: &Schema) -> DbSampler {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE state = 'running'), \
                    count(*) FILTER (WHERE state NOT IN ('completed', 'cancelled', 'discarded')), \
                    count(*) \
             FROM {} WHERE kind = '{TICKER_KIND}'",
            schema.qualify("river_job")
        );
        let samples = Arc::new(Mutex::new(Samples::default()));
        let shared = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut violating = false;
            loop {
                tick.tick().await;
                let row: Result<(i64, i64, i64), _> = sqlx::query_as(AssertSqlSafe(sql.clone()))
                    .fetch_one(&pool)
                    .await;
                let mut s = shared.lock().expect("lock poisoned");
                match row {
                    Ok((running, live, rows)) => {
                        s.samples += 1;
                        s.max_running = s.max_running.max(running);
                        s.max_live = s.max_live.max(live);
                        s.max_rows = s.max_rows.max(rows);
                        let two = running > 1 || live > 1;
                        if two && !violating {
                            s.violations += 1;
                            // A closed stdout is reported by the next line the benchmark checks.
                            let _ = outln!(
                                "TWO INSTANCES in the database: {running} running and {live} live rows"
                            );
                        }
                        violating = two;
                    }
                    Err(_) => s.errors += 1,
                }
            }
        });
        DbSampler { task, samples }
    }

    pub(super) fn stop(self) -> Samples {
        self.task.abort();
        self.samples.lock().expect("lock poisoned").clone()
    }
}

/// A benchmark stopped by a signal drops the sampler unstopped: its task would otherwise go on
/// querying the schema that is dropped next.
impl Drop for DbSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) async fn exec(pool: &PgPool, sql: &str) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .with_context(|| format!("could not run {sql}"))?;
    Ok(())
}
