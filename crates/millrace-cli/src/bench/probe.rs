//! What the benchmark reads besides the jobs' own times: completions counted from the
//! client's events, progress, the drain, and the process's CPU time and peak memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use millrace::{Client, Driver, Event, EventKind, JobArgs, JobListParams, JobState};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::broadcast::error::RecvError;

use crate::output::errln;

use super::Noop;

/// Counts stored completions from the client's events.
pub(super) async fn count_completions(
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
pub(super) async fn progress_until(completed: &AtomicU64, target: u64, since: Instant) {
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
pub(super) async fn drained<D: Driver>(
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
pub(super) fn keep_first_error<T>(
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

pub(super) async fn exec(pool: &PgPool, sql: &str) -> anyhow::Result<()> {
    // A simple query prepares no statement, so it also runs through a transaction-mode pooler.
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .with_context(|| format!("could not run {sql}"))?;
    Ok(())
}

/// Deletes a SQLite database file with its WAL and shared-memory files.
pub(super) fn remove_sqlite_file(path: &Path) -> anyhow::Result<()> {
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
pub(super) fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in USER_HZ, which is 100 on every mainstream configuration.
    Some(Duration::from_millis(ticks * 10))
}

/// The peak resident memory of this process in MiB, from /proc (Linux).
pub(super) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
