//! The keeper of one persistent worker on this client: claims the instance's row when it is
//! free or its holder's lease ran out, runs the instance, renews the lease, fences the instance
//! when the lease is lost, and releases the row when the instance ends. Mirrors nothing in
//! River: persistent workers are Millrace's own (see `crate::persistent`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use millrace_driver::{
    Backoff, Driver, Executor, PersistentClaimParams, PersistentReleaseParams, Topic,
};
use millrace_types::{AttemptError, JobId, JobRow};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::panic_trace::{Traced, panic_message, take_trace};
use super::shared::{Shared, WorkGuard};
use crate::event::Event;
use crate::persistent::{PersistentContext, PersistentEntry, ProgressFn};
use crate::work_error::BoxError;

/// How often a keeper without the instance looks for it.
const CLAIM_POLL: Duration = Duration::from_millis(500);

/// One keeper per registered persistent worker per client.
pub(crate) struct Keeper<D: Driver> {
    shared: Arc<Shared<D>>,
    entry: PersistentEntry,
    wake: Arc<Notify>,
    /// The restart delay after consecutive failures.
    restarts: Backoff,
    /// Dropped once the instance has ended at a stop; see [`WorkGuard`].
    work: Option<WorkGuard>,
}

/// Marks a persistent worker as run by this client, for the health report, for as long as it
/// lives.
struct HeldMark<D: Driver> {
    shared: Arc<Shared<D>>,
    name: String,
}

impl<D: Driver> HeldMark<D> {
    fn new(shared: &Arc<Shared<D>>, name: &str) -> Self {
        shared
            .persistent_held
            .lock()
            .expect("lock poisoned")
            .insert(name.to_owned());
        HeldMark {
            shared: shared.clone(),
            name: name.to_owned(),
        }
    }
}

impl<D: Driver> Drop for HeldMark<D> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.shared.persistent_held.lock() {
            held.remove(&self.name);
        }
    }
}

/// How a held instance ended.
enum Ended {
    Returned(std::result::Result<(), BoxError>),
    Panicked(String, String),
    /// Lost its lease: the row is someone else's now, or may be.
    Lost,
    /// The client is stopping.
    Stopping,
}

impl<D: Driver> Keeper<D> {
    pub(crate) fn new(
        shared: Arc<Shared<D>>,
        entry: PersistentEntry,
        wake: Arc<Notify>,
        work: WorkGuard,
    ) -> Self {
        let restarts = Backoff::new(entry.opts.backoff_min, entry.opts.backoff_max);
        Keeper {
            shared,
            entry,
            wake,
            restarts,
            work: Some(work),
        }
    }

    #[tracing::instrument(skip_all, fields(persistent_worker = %self.entry.name))]
    pub(crate) async fn run(mut self) {
        let stop = self.shared.soft_stop.clone();
        let mut polls = 0u32;
        loop {
            if polls % 20 == 0 {
                // Now and then (and first of all): make sure a live row exists, in case it was
                // cancelled, finished or deleted meanwhile. A unique insert: a no-op when live.
                // Through the client's insert pipeline (middleware, notification), as a
                // user's insert goes. Neither this nor the claim below may hold up a stop when
                // the database hangs. A claim abandoned after it committed leaves the row to be
                // taken over once its lease runs out, as if this client had died.
                let inserter = &self.shared.inserter;
                let ensured = tokio::select! {
                    ensured = inserter.insert_many([self.entry.ensure_params()]) => ensured,
                    _ = stop.cancelled() => return,
                };
                if let Err(err) = ensured {
                    tracing::debug!(%err, "could not ensure the instance's row");
                }
            }
            polls = polls.wrapping_add(1);
            let params = PersistentClaimParams {
                kind: self.entry.kind.clone(),
                queue: self.entry.opts.queue.clone(),
                client_id: self.shared.config.id.clone(),
                lease: self.entry.opts.lease,
            };
            let claim = {
                let mut exec = self.shared.driver.executor();
                tokio::select! {
                    claim = exec.persistent_claim(&params) => claim,
                    _ = stop.cancelled() => return,
                }
            };
            match claim {
                Ok(Some(row)) => {
                    self.hold(row).await;
                    if stop.is_cancelled() {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(%err, "claiming the instance failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(CLAIM_POLL) => {}
            }
        }
    }

    /// Runs a claimed instance until it ends, fencing it when the lease is lost, then releases
    /// its row (unless it was lost).
    async fn hold(&mut self, row: JobRow) {
        let lease = self.entry.opts.lease;
        let client_id = self.shared.config.id.clone();
        let token = CancellationToken::new();
        let driver = self.shared.driver.clone();
        let (id, attempt) = (row.id, row.attempt);
        let fence = row
            .metadata
            .get(millrace_driver::PERSISTENT_FENCE_KEY)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        let progress: ProgressFn = Arc::new(move |merge| {
            let driver = driver.clone();
            Box::pin(async move {
                Ok(driver
                    .executor()
                    .persistent_merge_metadata(id, fence, &merge)
                    .await?)
            })
        });
        let ctx = PersistentContext::new(
            &self.entry.name,
            &row,
            fence,
            token.clone(),
            self.shared.client_any.clone(),
            progress,
        );
        tracing::info!(client = %client_id, attempt, "persistent worker started");
        // Until the instance has ended, whichever way hold returns.
        let _held = HeldMark::new(&self.shared, &self.entry.name);
        let _ = self.shared.events.send(Event::PersistentWorkerStarted {
            name: self.entry.name.clone(),
            client: client_id.clone(),
            attempt,
        });
        let started = Instant::now();
        let mut fut = AssertUnwindSafe(Traced(Box::pin((self.entry.run)(ctx)))).catch_unwind();
        // Renew four times per lease; past 60 % of it without a renewal, stop, and abort by
        // 80 %: the instance is gone before anyone may claim it at 100 %. Renewals run on a
        // task of their own, so a renewal that hangs cannot delay the fence.
        let renew_every = lease / 4;
        let fence_after = lease.mul_f64(0.6);
        let abort_grace = lease.mul_f64(0.2);
        let (mut renewed, lost, renewer) =
            spawn_renewer(self.shared.driver.clone(), id, fence, renew_every);
        let stop = self.shared.soft_stop.clone();
        let ended = loop {
            let fence_at = *renewed.borrow_and_update() + fence_after;
            tokio::select! {
                result = &mut fut => break match result {
                    Ok(returned) => Ended::Returned(returned),
                    Err(payload) => Ended::Panicked(panic_message(payload.as_ref()), take_trace()),
                },
                _ = stop.cancelled() => break Ended::Stopping,
                _ = lost.cancelled() => {
                    tracing::warn!("persistent worker instance taken over elsewhere; stopping it");
                    break Ended::Lost;
                }
                _ = tokio::time::sleep_until(fence_at) => {
                    tracing::error!("cannot renew the persistent worker's lease; stopping the instance before it could run twice");
                    break Ended::Lost;
                }
                _ = renewed.changed() => {}
            }
        };
        renewer.abort();
        let ended = match ended {
            Ended::Lost | Ended::Stopping => {
                token.cancel();
                let grace = if matches!(ended, Ended::Lost) {
                    abort_grace
                } else {
                    self.shared.config.cancel_grace
                };
                // Whatever the instance returns now, it was stopped; past the grace it is
                // dropped, which aborts it at its next await.
                let _ = tokio::time::timeout(grace, &mut fut).await;
                drop(fut);
                ended
            }
            other => other,
        };
        if self.shared.soft_stop.is_cancelled() {
            // The instance has ended; what is left (the release) only waits on the database,
            // which a stop bounds.
            drop(self.work.take());
        }
        let ran_for = started.elapsed();
        let (error, delay) = match &ended {
            Ended::Returned(Ok(())) => {
                self.restarts.reset();
                (None, self.entry.opts.backoff_min)
            }
            Ended::Returned(Err(err)) => (
                Some((err.to_string(), String::new())),
                self.backoff(ran_for),
            ),
            Ended::Panicked(message, trace) => (
                Some((format!("panic: {message}"), trace.clone())),
                self.backoff(ran_for),
            ),
            Ended::Stopping | Ended::Lost => (None, Duration::ZERO),
        };
        let error_text = error.as_ref().map(|(e, _)| e.clone());
        tracing::info!(client = %client_id, attempt, error = ?error_text, "persistent worker stopped");
        let _ = self.shared.events.send(Event::PersistentWorkerStopped {
            name: self.entry.name.clone(),
            client: client_id,
            attempt,
            error: error_text,
        });
        if matches!(ended, Ended::Lost) {
            // The row is, or may soon be, someone else's: nothing of ours to write.
            return;
        }
        self.release(&row, fence, error, delay).await;
    }

    /// Releases the instance's row, fenced, recording the error it ended with and when it may
    /// run again; hands it over at once (a notification) when it may run again now.
    async fn release(
        &mut self,
        row: &JobRow,
        fence: i64,
        error: Option<(String, String)>,
        delay: Duration,
    ) {
        let (id, attempt) = (row.id, row.attempt);
        let now = self.shared.config.now();
        let params = PersistentReleaseParams {
            id,
            fence,
            available_at: now.checked_add(delay).unwrap_or(now),
            error: error.map(|(message, trace)| AttemptError {
                at: row.attempted_at.unwrap_or(now),
                attempt: i32::from(attempt),
                error: message,
                trace,
            }),
            keep_errors: self.entry.opts.keep_errors,
        };
        let mut exec = self.shared.driver.executor();
        let released = {
            let release = exec.persistent_release(&params);
            tokio::pin!(release);
            let stop = &self.shared.soft_stop;
            loop {
                tokio::select! {
                    released = &mut release => break released,
                    // A stop that begins while the release of an instance that ended by
                    // itself hangs must not wait for it: from here on it only waits on the
                    // database, which the stop bounds.
                    _ = stop.cancelled(), if self.work.is_some() => drop(self.work.take()),
                }
            }
        };
        match released {
            Ok(_) => {
                if delay.is_zero() && self.shared.driver.supports_listen_notify() {
                    // Handed over: other clients' keepers claim it at once.
                    let payload = serde_json::json!({ "queue": self.entry.opts.queue }).to_string();
                    let _ = exec.notify_many(&[(Topic::Insert, payload)]).await;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "could not release the persistent worker's row; it will be taken over after its lease")
            }
        }
    }

    /// The restart delay after a failure: doubling per consecutive failure with jitter, capped;
    /// a run that lasted longer than the cap starts the count again.
    fn backoff(&mut self, ran_for: Duration) -> Duration {
        if ran_for > self.entry.opts.backoff_max {
            self.restarts.reset();
        }
        self.restarts.next_delay()
    }
}

/// Renews a held instance's lease every `renew_every` on a task of its own, so that a renewal
/// that hangs cannot delay the fence. Returns when the last renewal was sent (of those that
/// succeeded), a token that fires when the row turns out to be someone else's, and the task.
fn spawn_renewer<D: Driver>(
    driver: D,
    id: JobId,
    fence: i64,
    renew_every: Duration,
) -> (
    tokio::sync::watch::Receiver<Instant>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (renewed_tx, renewed) = tokio::sync::watch::channel(Instant::now());
    let lost = CancellationToken::new();
    let task = {
        let lost = lost.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(renew_every).await;
                let sent = Instant::now();
                let result = tokio::time::timeout(
                    renew_every,
                    driver.executor().persistent_renew(id, fence),
                )
                .await;
                match result {
                    Ok(Ok(true)) => {
                        renewed_tx.send_replace(sent);
                    }
                    Ok(Ok(false)) => {
                        lost.cancel();
                        return;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(%err, "renewing the persistent worker's lease failed; retrying");
                    }
                    Err(_) => tracing::debug!(
                        "renewing the persistent worker's lease timed out; retrying"
                    ),
                }
            }
        })
    };
    (renewed, lost, task)
}
