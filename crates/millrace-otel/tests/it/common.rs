//! Args, a worker and client helpers shared by the tests.

use std::collections::HashMap;
use std::time::Duration;

use millrace::{Client, Event, EventKind, JobArgs, JobId, QueueConfig, WorkError, Worker, Workers};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};

/// What a [`Task`] does when worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    Succeed,
    Fail,
    Cancel,
    Snooze,
    /// Runs until its token fires (a stop), at most 30 s.
    Hold,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Task {
    pub(crate) mode: Mode,
}

impl JobArgs for Task {
    const KIND: &'static str = "otel_task";
}

pub(crate) struct TaskWorker;

impl Worker for TaskWorker {
    type Args = Task;

    async fn work(&self, job: millrace::Job<Task>) -> Result<(), WorkError> {
        tracing::info!("working the task");
        match job.args.mode {
            Mode::Succeed => Ok(()),
            Mode::Fail => Err(WorkError::msg("the task failed")),
            Mode::Cancel => Err(WorkError::cancel("the task gave up")),
            Mode::Snooze => Err(WorkError::snooze(Duration::from_secs(3600))),
            Mode::Hold => {
                let _ = tokio::time::timeout(Duration::from_secs(30), job.cancelled()).await;
                Ok(())
            }
        }
    }
}

/// A client with the task worker on the default queue, built by `configure`.
pub(crate) fn worker_client(
    db: &TestDb,
    configure: impl FnOnce(millrace::ClientBuilder<PgDriver>) -> millrace::ClientBuilder<PgDriver>,
) -> Client<PgDriver> {
    let mut workers = Workers::new();
    workers.register(TaskWorker).unwrap();
    let builder = Client::builder(db.driver())
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new().max_workers(20))
        .workers(workers)
        .fetch_cooldown(Duration::from_millis(20))
        .fetch_poll_interval(Duration::from_millis(200));
    configure(builder).build().unwrap()
}

/// Waits for the outcome of each of `ids`, or panics after `deadline`.
pub(crate) async fn outcomes(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    ids: &[JobId],
    deadline: Duration,
) -> HashMap<JobId, EventKind> {
    let mut seen = HashMap::new();
    let until = tokio::time::Instant::now() + deadline;
    while seen.len() < ids.len() {
        let event = tokio::time::timeout_at(until, events.recv())
            .await
            .unwrap_or_else(|_| panic!("outcomes within {deadline:?}: got {seen:?} of {ids:?}"))
            .expect("the event channel stays open and keeps up");
        if let Event::Job { kind, job, .. } = event
            && ids.contains(&job.id)
        {
            seen.insert(job.id, kind);
        }
    }
    seen
}
