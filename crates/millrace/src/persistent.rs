//! Persistent workers: one long-running instance of a loop across the whole fleet.
//!
//! An instance is an ordinary row of `river_job` (kind `millrace_persistent:<name>`, a queue of
//! its own, unique while live), so every River tool shows it. Every client with the worker
//! registered runs a keeper that claims the row in one conditional UPDATE when it is available
//! or when its holder stopped renewing it for a whole lease; no leader is involved. The holder
//! renews the row's `attempted_at` (so no River rescuer takes it for stuck) and fences itself:
//! when a renewal finds the row no longer running at its attempt, or renewals fail for most of
//! the lease, it fires the instance's token and, shortly after, aborts it, before any other
//! client could claim it.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use millrace_driver::{
    Backoff, Driver, Executor, PersistentClaimParams, PersistentReleaseParams, Topic,
};
use millrace_types::{AttemptError, JobId, JobRow, JobState};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::insert_opts::{InsertOpts, UniqueOpts};
use crate::insert_params::InsertManyParams;
use crate::runtime::panic_trace::{Traced, panic_message, take_trace};
use crate::runtime::{Shared, WorkGuard};
use crate::worker::BoxError;

pub use millrace_driver::PERSISTENT_KIND_PREFIX;

/// The queue persistent workers use unless configured otherwise: no River client serving
/// `default` ever fetches them.
pub const PERSISTENT_QUEUE_DEFAULT: &str = "millrace_persistent";

/// A long-running loop that runs as exactly one instance across every client that registers
/// it.
///
/// `run` should loop until [`PersistentContext::cancelled`] fires (on shutdown and on lease
/// loss). Returning `Ok` or an error ends the instance; it is started again, after a capped
/// exponential backoff when it failed. Cancellation is cooperative: code that blocks without
/// awaiting cannot be stopped, so keep blocking work in `spawn_blocking` and watch the token.
///
/// ```
/// use millrace::{BoxError, PersistentContext, PersistentWorker};
///
/// struct OrderStream;
///
/// impl PersistentWorker for OrderStream {
///     async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
///         let mut cursor = 0u64;
///         while !ctx.is_cancelled() {
///             cursor += 1; // consume the next batch of the stream
///             ctx.record_progress(serde_json::json!({ "cursor": cursor })).await?;
///             tokio::select! {
///                 _ = ctx.cancelled() => break,
///                 _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait PersistentWorker: Send + Sync + 'static {
    /// Runs one instance until its token fires.
    fn run(
        &self,
        ctx: PersistentContext,
    ) -> impl Future<Output = std::result::Result<(), BoxError>> + Send;
}

/// Settings of one persistent worker.
///
/// ```
/// use std::time::Duration;
/// use millrace::PersistentOpts;
///
/// let opts = PersistentOpts::new().lease(Duration::from_secs(5)).restart_backoff(
///     Duration::from_millis(500),
///     Duration::from_secs(30),
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PersistentOpts {
    /// The queue of the instance's row. Defaults to [`PERSISTENT_QUEUE_DEFAULT`].
    pub queue: String,
    /// How long a holder that stopped renewing keeps the instance before another client may
    /// take it over. Defaults to 15 s.
    pub lease: Duration,
    /// The first restart delay after a failure; it doubles per consecutive failure, and each
    /// delay gets random jitter of up to as much again (capped at the longest), so that
    /// instances failing together do not restart in lockstep. Defaults to 1 s.
    pub backoff_min: Duration,
    /// The longest restart delay. Defaults to 60 s.
    pub backoff_max: Duration,
    /// How many of the most recent errors the row keeps. Defaults to 10.
    pub keep_errors: i32,
}

impl Default for PersistentOpts {
    fn default() -> Self {
        PersistentOpts {
            queue: PERSISTENT_QUEUE_DEFAULT.to_owned(),
            lease: Duration::from_secs(15),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            keep_errors: 10,
        }
    }
}

impl PersistentOpts {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the queue.
    #[must_use]
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the lease (at least one second).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the restart backoff bounds.
    #[must_use]
    pub fn restart_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Sets how many recent errors the row keeps (at least 1).
    #[must_use]
    pub fn keep_errors(mut self, keep: i32) -> Self {
        self.keep_errors = keep;
        self
    }
}

type RunFn = Arc<
    dyn Fn(
            PersistentContext,
        ) -> Pin<Box<dyn Future<Output = std::result::Result<(), BoxError>> + Send>>
        + Send
        + Sync,
>;

/// A registered persistent worker, type-erased.
#[derive(Clone)]
pub(crate) struct PersistentEntry {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) opts: PersistentOpts,
    run: RunFn,
}

impl fmt::Debug for PersistentEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentWorker")
            .field("name", &self.name)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl PersistentEntry {
    pub(crate) fn new<W: PersistentWorker>(
        name: &str,
        worker: W,
        opts: PersistentOpts,
    ) -> Result<Self> {
        let kind = format!("{PERSISTENT_KIND_PREFIX}{name}");
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid_name || crate::names::validate_kind(&kind).is_err() {
            return Err(Error::Config(format!(
                "persistent worker name {name:?} is invalid: use letters, digits, '_', '-' and '.'"
            )));
        }
        crate::names::validate_queue(&opts.queue)
            .map_err(|err| Error::Config(format!("persistent worker {name:?}: {err}")))?;
        if opts.lease < Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "persistent worker {name:?}: the lease must be at least 1 s"
            )));
        }
        if opts.backoff_min.is_zero() || opts.backoff_max < opts.backoff_min {
            return Err(Error::Config(format!(
                "persistent worker {name:?}: restart backoff needs 0 < min <= max"
            )));
        }
        let worker = Arc::new(worker);
        Ok(PersistentEntry {
            name: name.to_owned(),
            kind,
            opts,
            run: Arc::new(move |ctx| {
                let worker = worker.clone();
                Box::pin(async move { worker.run(ctx).await })
            }),
        })
    }

    /// The unique insert that keeps one live row for the worker: blocking in every state
    /// but the final ones, so a cancelled or finished row is replaced.
    fn ensure_params(&self) -> InsertManyParams {
        let opts = InsertOpts::new()
            .queue(self.opts.queue.clone())
            .max_attempts(i32::from(i16::MAX))
            .unique(UniqueOpts::new().by_state([
                JobState::Available,
                JobState::Pending,
                JobState::Retryable,
                JobState::Running,
                JobState::Scheduled,
            ]));
        let args = serde_json::json!({ "name": self.name }).to_string();
        InsertManyParams::raw(self.kind.clone(), args, opts)
    }
}

/// What an instance of a persistent worker sees.
#[derive(Clone)]
pub struct PersistentContext {
    name: Arc<str>,
    job: JobId,
    attempt: i16,
    fence: i64,
    token: CancellationToken,
    client: Arc<dyn std::any::Any + Send + Sync>,
    progress: ProgressFn,
}

/// Writes a metadata merge to the instance's row, fenced; `false` when the row was lost.
type ProgressFn =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<bool>> + Send>> + Send + Sync>;

impl fmt::Debug for PersistentContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentContext")
            .field("name", &self.name)
            .field("job", &self.job)
            .field("attempt", &self.attempt)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl PersistentContext {
    /// The persistent worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id of the instance's row in `river_job`.
    pub fn job_id(&self) -> JobId {
        self.job
    }

    /// The instance's attempt number: it grows with every start, anywhere in the fleet, so
    /// it is a fencing token to pass on to what the instance writes (a store that refuses
    /// writes with a lower token than it has seen never takes a stale instance's write).
    pub fn attempt(&self) -> i16 {
        self.attempt
    }

    /// Fires on shutdown and when the instance is lost (its lease could not be renewed, or
    /// another client holds it).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Waits until the instance should stop.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Whether the instance should stop.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The client running the instance.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `D` is not the client's driver type.
    pub fn client<D: Driver>(&self) -> Result<Client<D>> {
        self.client
            .downcast_ref::<Client<D>>()
            .cloned()
            .ok_or_else(|| {
                Error::Config("PersistentContext::client asked for another driver type".to_owned())
            })
    }

    /// Records progress in the row's metadata under `progress`, fenced on the token.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotRunning`] when this instance no longer holds the row (stop at once);
    /// [`Error::Driver`] when the database fails.
    pub async fn record_progress(&self, progress: serde_json::Value) -> Result<()> {
        let merge = serde_json::json!({ "progress": progress }).to_string();
        if (self.progress)(merge).await? {
            Ok(())
        } else {
            self.token.cancel();
            Err(Error::JobNotRunning(self.job))
        }
    }
}

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

    fn client(&self) -> Option<Client<D>> {
        self.shared.client_any.downcast_ref::<Client<D>>().cloned()
    }

    #[tracing::instrument(skip_all, fields(persistent_worker = %self.entry.name))]
    pub(crate) async fn run(mut self) {
        let stop = self.shared.soft_stop.clone();
        let mut polls = 0u32;
        loop {
            if polls % 20 == 0 {
                // Now and then (and first of all): make sure a live row exists, in case it was
                // cancelled, finished or deleted meanwhile. A unique insert: a no-op when live.
                if let Some(client) = self.client() {
                    // Neither this nor the claim below may hold up a stop when the database
                    // hangs. A claim abandoned after it committed leaves the row to be taken
                    // over once its lease runs out, as if this client had died.
                    let ensured = tokio::select! {
                        ensured = client.insert_many([self.entry.ensure_params()]) => ensured,
                        _ = stop.cancelled() => return,
                    };
                    if let Err(err) = ensured {
                        tracing::debug!(%err, "could not ensure the instance's row");
                    }
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
        let ctx = PersistentContext {
            name: self.entry.name.as_str().into(),
            job: id,
            attempt,
            fence,
            token: token.clone(),
            client: self.shared.client_any.clone(),
            progress: Arc::new(move |merge| {
                let driver = driver.clone();
                Box::pin(async move {
                    Ok(driver
                        .executor()
                        .persistent_merge_metadata(id, fence, &merge)
                        .await?)
                })
            }),
        };
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
        let (renewed_tx, mut renewed) = tokio::sync::watch::channel(Instant::now());
        let lost = CancellationToken::new();
        let renewer = {
            let driver = self.shared.driver.clone();
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
        let now = Timestamp::now();
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
