//! The completer: stores job outcomes in batches, one fenced statement per batch.

use std::sync::Arc;
use std::time::Duration;

use millrace_driver::{Backoff, Driver, Executor, JobCompleteParams, JobOutcome};
use millrace_types::JobState;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::maintenance::job_scheduler;
use super::shared::{Completion, Shared};
use crate::event::{Event, EventKind};

pub(crate) struct Completer<D: Driver> {
    shared: Arc<Shared<D>>,
    rx: mpsc::Receiver<Completion>,
}

const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Attempts at a batch that fails for a reason other than the connection, before its
/// outcomes are dropped (the jobs stay running and are rescued later).
const MAX_STATEMENT_FAILURES: u32 = 5;
/// Batches stored at the same time. One: two concurrent completions update neighbouring rows,
/// so they contend for the same heap and index pages; measured with `millrace bench -n
/// 100000`, one batch at a time (gathering the next meanwhile) worked 3 to 6 % more jobs a
/// second than two.
const MAX_IN_FLIGHT: usize = 1;

impl<D: Driver> Completer<D> {
    pub(crate) fn new(shared: Arc<Shared<D>>, rx: mpsc::Receiver<Completion>) -> Self {
        Completer { shared, rx }
    }

    pub(crate) async fn run(mut self, done: CancellationToken) {
        let config = self.shared.config.clone();
        let mut batch: Vec<Completion> = Vec::new();
        let mut in_flight = tokio::task::JoinSet::new();
        // Shared by the batches in flight, so an outage is logged once, not once per batch.
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            // Wait for the first outcome of a batch, or for the end.
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    received = self.rx.recv() => match received {
                        Some(c) => batch.push(c),
                        None => break,
                    },
                    _ = done.cancelled() => {
                        while let Ok(c) = self.rx.try_recv() {
                            batch.push(c);
                        }
                        if batch.is_empty() {
                            break;
                        }
                    }
                }
            }
            // Outcomes come in bursts: the jobs of one fetch finish together. Let the tasks that
            // are ready to run hand theirs over before the batch is cut, so a burst is stored as
            // one statement rather than a lone outcome followed by the rest. This waits for
            // runnable tasks only, never for time, so a lone outcome is not delayed.
            coalesce(&mut self.rx, &mut batch, config.completer_batch_max).await;
            // With no write in flight, store at once: a quiet client gets low latency. While
            // writes are in flight, gather until one of them finishes, the batch is big
            // enough, or the flush interval passes: a busy client gets big batches.
            let flush_at = Instant::now() + config.completer_flush_interval;
            while !in_flight.is_empty()
                && batch.len() < config.completer_flush_at
                && !done.is_cancelled()
            {
                tokio::select! {
                    received = self.rx.recv() => match received {
                        Some(c) => batch.push(c),
                        None => break,
                    },
                    _ = in_flight.join_next() => break,
                    _ = tokio::time::sleep_until(flush_at) => break,
                    _ = done.cancelled() => break,
                }
            }
            while batch.len() < config.completer_batch_max {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let take = batch.len().min(config.completer_batch_max);
            let chunk: Vec<Completion> = batch.drain(..take).collect();
            // A batch is stored on its own task while the next one gathers; with
            // MAX_IN_FLIGHT batches stored, wait, which backs up the channel and so the
            // producers.
            if in_flight.len() >= MAX_IN_FLIGHT {
                in_flight.join_next().await;
            }
            in_flight.spawn(store(self.shared.clone(), chunk, failing.clone()));
        }
        while in_flight.join_next().await.is_some() {}
    }
}

/// After a batch is stored: its jobs' slots under a concurrency limit are free, so this
/// client's producers of those queues fetch again, and so do other clients', told by the
/// queue's insert notification (River's clients take it as an insert and fetch too, which
/// costs them one fetch). A notification that cannot be sent is left to the poll.
async fn slots_freed<D: Driver>(shared: &Shared<D>, chunk: &[Completion]) {
    let limited = shared.limited_queues(chunk.iter().map(|c| c.row.queue.as_str()));
    let mut exec = shared.driver.executor();
    if let Err(err) =
        job_scheduler::notify_queues(&shared.driver, shared, &mut exec, &limited).await
    {
        tracing::debug!(%err, "could not tell other clients of freed slots; they poll");
    }
}

/// Moves outcomes that are ready, or that runnable tasks are about to send, into `batch`:
/// drains the channel, yields so that other tasks run, and stops once a yield brings nothing
/// new or the batch is full.
async fn coalesce(rx: &mut mpsc::Receiver<Completion>, batch: &mut Vec<Completion>, max: usize) {
    loop {
        while batch.len() < max {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if batch.len() >= max {
            return;
        }
        tokio::task::yield_now().await;
        if rx.is_empty() {
            return;
        }
    }
}

/// Stores one batch, retrying across connection failures until it is stored.
async fn store<D: Driver>(
    shared: Arc<Shared<D>>,
    chunk: Vec<Completion>,
    failing: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::AcqRel;
    {
        // Outcomes of jobs the worker completed in its own transaction are written too: the
        // fence makes the write a no-op when that transaction committed, and records the real
        // outcome when it rolled back.
        let params: Vec<JobCompleteParams> = chunk
            .iter()
            .map(|c| {
                JobCompleteParams::new(&c.row, c.outcome.clone())
                    .metadata_merge(c.metadata_merge.clone())
            })
            .collect();
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let stored = loop {
            match shared.driver.executor().job_complete_many(&params).await {
                Ok(stored) => {
                    if backoff.failures() > 0 && failing.swap(false, AcqRel) {
                        tracing::info!(jobs = params.len(), "completions stored after retrying");
                    }
                    break Some(stored);
                }
                Err(err) => {
                    if backoff.failures() == 0 && !failing.swap(true, AcqRel) {
                        tracing::warn!(%err, jobs = params.len(), "storing completions failed; retrying");
                    }
                    let delay = backoff.next_delay();
                    if !err.is_connection() && backoff.failures() >= MAX_STATEMENT_FAILURES {
                        tracing::error!(%err, jobs = params.len(), "dropping completions after repeated failures; the jobs will be rescued");
                        break None;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        };
        {
            let mut held = shared.held.lock().expect("lock poisoned");
            for c in &chunk {
                held.remove(&c.row.id);
            }
        }
        let Some(stored) = stored else {
            return;
        };
        slots_freed(&shared, &chunk).await;
        // Every row the statement did not update was fenced out. Counting costs nothing when
        // all applied, the usual case; a job completed in its worker's own transaction is
        // expected to be skipped, so it is not counted.
        let states: std::collections::HashMap<_, _> =
            if stored.len() < chunk.len() || shared.events.receiver_count() > 0 {
                stored.iter().map(|s| (s.id, s.state)).collect()
            } else {
                std::collections::HashMap::new()
            };
        if stored.len() < chunk.len() {
            report_fenced_out(&shared, &chunk, &states);
        }
        // With nobody subscribed, skip building the events: an allocation per job.
        if shared.events.receiver_count() == 0 {
            return;
        }
        for c in chunk {
            let state = match states.get(&c.row.id) {
                Some(state) => *state,
                None if c.completed_in_tx => JobState::Completed,
                // Fenced out: reported above.
                None => continue,
            };
            let kind = EventKind::from_state(
                state,
                matches!(c.outcome, JobOutcome::Snoozed { .. }),
                matches!(c.outcome, JobOutcome::Returned),
            );
            let mut job = c.row;
            job.state = state;
            if let JobOutcome::Errored { error, .. } | JobOutcome::Cancelled { error } = c.outcome {
                job.errors.push(error);
            }
            // Sending fails only when nobody subscribes, which is fine.
            let _ = shared.events.send(Event::Job {
                kind,
                job: std::sync::Arc::new(job),
                duration: c.duration,
            });
        }
    }
}

/// Warns about, and announces, the completions of `chunk` that the fence kept from applying
/// (those without a state in `stored`): their rows moved on while the workers ran, most
/// often rescued after an outage longer than the heartbeat lease, so the jobs run again.
fn report_fenced_out<D: Driver>(
    shared: &Shared<D>,
    chunk: &[Completion],
    stored: &std::collections::HashMap<millrace_types::JobId, JobState>,
) {
    let fenced: Vec<&Completion> = chunk
        .iter()
        .filter(|c| !c.completed_in_tx && !stored.contains_key(&c.row.id))
        .collect();
    if fenced.is_empty() {
        return;
    }
    let ids: Vec<i64> = fenced.iter().map(|c| c.row.id.0).collect();
    tracing::warn!(
        jobs = fenced.len(),
        ?ids,
        "completions did not apply: the jobs were no longer running at the attempt their \
         workers had (rescued, for example after an outage longer than the heartbeat \
         lease); they may be worked again"
    );
    if shared.events.receiver_count() > 0 {
        let jobs = fenced
            .iter()
            .map(|c| std::sync::Arc::new(c.row.clone()))
            .collect();
        // Sending fails only when nobody subscribes, which is fine.
        let _ = shared.events.send(Event::CompletionsFencedOut { jobs });
    }
}
