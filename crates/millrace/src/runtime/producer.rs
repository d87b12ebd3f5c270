//! One queue's producer: fetches as many jobs as it has free slots and runs each on a task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use millrace_driver::{
    Backoff, Driver, Executor, FetchLimit, FetchRate, JobGetAvailableParams, JobReturnOrphansParams,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument as _;

use crate::limits::ConcurrencyLimit;
use crate::metric_hook::Metric;
use crate::runtime::shared::{Held, Shared, WorkGuard};

pub(crate) struct Producer<D: Driver> {
    shared: Arc<Shared<D>>,
    queue: String,
    max_workers: usize,
    /// The queue's concurrency limit, which the fetch enforces: the queue's metadata
    /// override when it has a valid one, else `code_limit`.
    limit: Option<FetchLimit>,
    /// The concurrency limit the client was built with for this queue.
    code_limit: Option<ConcurrencyLimit>,
    /// The queue's metadata as notifications tell it; see `ProducerHandle::metadata`.
    metadata: watch::Receiver<Option<serde_json::Value>>,
    /// The last override refused, so it is logged once rather than at every refresh.
    refused: Option<serde_json::Value>,
    /// The queue's rate limit, which the fetch enforces; see [`Producer::with_rate`].
    rate: Option<FetchRate>,
    wake: Arc<Notify>,
    paused: watch::Receiver<bool>,
    /// Held from the last look at `paused` until a fetch returns; see `ProducerHandle`.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// Tells the completer whether this queue is under a concurrency limit; see
    /// `ProducerHandle::limited`.
    limited: Arc<AtomicBool>,
    /// Dropped once this producer's jobs have ended; see [`WorkGuard`].
    work: Option<WorkGuard>,
}

/// The producer's end of its `ProducerHandle`: how the rest of the client wakes it, pauses
/// it, and waits out its fetch.
pub(crate) struct ProducerSignals {
    pub(crate) wake: Arc<Notify>,
    pub(crate) paused: watch::Receiver<bool>,
    pub(crate) fetching: Arc<tokio::sync::Mutex<()>>,
    pub(crate) limited: Arc<AtomicBool>,
    pub(crate) metadata: watch::Receiver<Option<serde_json::Value>>,
}

/// The bounds of the backoff before fetching again after a failed fetch.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Added to a full rate-limit window's wait, so the fetch comes after its oldest entry left.
const RATE_WAKE_MARGIN: Duration = Duration::from_millis(1);

impl<D: Driver> Producer<D> {
    pub(crate) fn new(
        shared: Arc<Shared<D>>,
        queue: String,
        max_workers: usize,
        limit: Option<ConcurrencyLimit>,
        signals: ProducerSignals,
        work: WorkGuard,
    ) -> Self {
        let ProducerSignals {
            wake,
            paused,
            fetching,
            limited,
            metadata,
        } = signals;
        limited.store(limit.is_some(), Ordering::Relaxed);
        Producer {
            shared,
            queue,
            max_workers,
            limit: limit.as_ref().map(ConcurrencyLimit::to_fetch_limit),
            code_limit: limit,
            metadata,
            refused: None,
            rate: None,
            wake,
            paused,
            fetching,
            limited,
            work: Some(work),
        }
    }

    /// Sets the queue's rate limit, which the fetch enforces.
    pub(crate) fn with_rate(mut self, rate: Option<FetchRate>) -> Self {
        self.rate = rate;
        self
    }

    #[tracing::instrument(skip_all, fields(queue = %self.queue))]
    pub(crate) async fn run(mut self) {
        let config = self.shared.config.clone();
        let stop = self.shared.soft_stop.clone();
        let mut jobs = JoinSet::new();
        let mut poll = tokio::time::interval(config.fetch_poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut touch = tokio::time::interval(config.queue_touch_interval);
        touch.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Learn whether the queue is paused before the first fetch, as River's producer does:
        // a client started on a paused queue must not take a batch from it first.
        // (A refresh that hangs gives way to a stop.)
        self.shared
            .fetches
            .lock()
            .expect("lock poisoned")
            .entry(self.queue.clone())
            .or_default()
            .concurrency = self.code_limit.clone();
        self.touch().await;
        touch.reset();
        // The first fetch follows at once; an interval's first tick is immediate, and would
        // fetch a second time right after it.
        poll.reset();
        let mut next_fetch = Instant::now();
        let mut want_fetch = true;
        // Whether the last fetch filled every free slot, so more jobs probably wait.
        let mut more = false;
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut sweep_orphans = false;
        // Under a concurrency limit a fetch may come back short because the limit binds, not
        // because the queue is empty. A job ending frees its slot only once the completer has
        // stored its outcome: fetching at the job's end raced the store, found the slot still
        // taken, and waited for the next poll (a fleet at a limit of 10 worked 48 jobs/s of
        // 50 ms jobs). The completer wakes the producer after the store instead, and
        // notifies the queue so other clients' producers fetch too.
        self.limited.store(self.limit.is_some(), Ordering::Relaxed);
        // Under a rate limit a fetch may come back short because the window is full: fetch
        // again when its oldest fetch leaves it (not before, and without polling faster).
        let mut rate_wake: Option<Instant> = None;

        loop {
            // Count finished tasks as free slots before deciding how many jobs to fetch: the
            // select below joins one task per turn, and a fetch sized by unjoined tasks comes
            // back small while most slots are in fact free.
            while jobs.try_join_next().is_some() {
                if more {
                    want_fetch = true;
                }
            }
            let paused = *self.paused.borrow();
            let free = self.max_workers.saturating_sub(jobs.len());
            let ready = want_fetch && !paused && free > 0;
            if ready && Instant::now() >= next_fetch {
                want_fetch = false;
                // A fetch that hangs (the database is gone) must not hold up a stop. One
                // abandoned after its statement committed leaves rows running that no task
                // holds: the sweep below gives them back.
                let fetched = tokio::select! {
                    biased;
                    fetched = self.fetch(free, &mut jobs, &mut sweep_orphans) => Some(fetched),
                    _ = stop.cancelled() => None,
                };
                let Some(fetched) = fetched else {
                    sweep_orphans = true;
                    break;
                };
                self.record_fetch(fetched.is_ok());
                match fetched {
                    Ok(fetched) => {
                        if backoff.failures() > 0 {
                            tracing::info!("fetching works again");
                            backoff.reset();
                        }
                        more = fetched == free;
                        next_fetch = Instant::now() + config.fetch_cooldown;
                        if !more {
                            rate_wake = self.rate_wake().await;
                        }
                        if more {
                            want_fetch = true;
                        }
                    }
                    Err(err) => {
                        if backoff.failures() == 0 {
                            tracing::warn!(%err, "fetch failed; retrying with backoff");
                        }
                        if err.is_connection() {
                            sweep_orphans = true;
                        }
                        next_fetch = Instant::now() + backoff.next_delay();
                        want_fetch = true;
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {
                    if more {
                        want_fetch = true;
                    }
                }
                _ = tokio::time::sleep_until(next_fetch), if ready => {}
                _ = tokio::time::sleep_until(rate_wake.unwrap_or(next_fetch)), if rate_wake.is_some() => {
                    rate_wake = None;
                    want_fetch = true;
                }
                _ = self.wake.notified() => want_fetch = true,
                _ = poll.tick() => want_fetch = true,
                _ = touch.tick() => self.touch().await,
                Ok(()) = self.metadata.changed() => {
                    let metadata = self.metadata.borrow_and_update().clone();
                    if let Some(metadata) = metadata {
                        self.apply_override(&metadata);
                        // A raised or lifted limit may leave room now.
                        want_fetch = true;
                    }
                }
                Ok(()) = self.paused.changed() => {
                    if !*self.paused.borrow() {
                        want_fetch = true;
                    }
                }
            }
        }
        // Soft stop: let running jobs finish. A hard stop reaches them through their tokens.
        while jobs.join_next().await.is_some() {}
        // From here on only the database is waited on, which a stop bounds.
        drop(self.work.take());
        // A fetch whose reply was lost may have left rows running that no task holds, and no
        // next fetch will give them back. Nothing else would before River's one-hour rescue:
        // a clean stop deletes this client's heartbeat, so the dead-client rescue never sees
        // them.
        if sweep_orphans && let Err(err) = self.return_orphans().await {
            tracing::warn!(
                %err,
                "could not give back the jobs of a fetch whose reply was lost; they stay \
                 running until rescued"
            );
        }
    }

    /// Records a fetch's result for the health report.
    fn record_fetch(&self, ok: bool) {
        let mut fetches = self.shared.fetches.lock().expect("lock poisoned");
        let record = fetches.entry(self.queue.clone()).or_default();
        if ok {
            record.last_ok_at = Some(self.shared.config.now());
            record.failures = 0;
        } else {
            record.failures = record.failures.saturating_add(1);
        }
    }

    /// Records the queue in `river_queue` (or refreshes it, so River's queue cleaner keeps it)
    /// and picks up a pause this client may have missed.
    async fn touch(&mut self) {
        // A pause or resume that lands while the row is read is newer than what the read
        // returns: apply the read only if none did.
        let generation = self.shared.pause_generation();
        let shared = self.shared.clone();
        let mut exec = shared.driver.executor();
        // A refresh that hangs must not hold up a stop; it has nothing to finish.
        let touched = tokio::select! {
            touched = exec.queue_create_or_touch(&self.queue) => touched,
            _ = self.shared.soft_stop.cancelled() => return,
        };
        match touched {
            Ok(row) => {
                if self.shared.pause_generation() == generation {
                    self.shared.set_paused(&self.queue, row.paused_at.is_some());
                }
                self.apply_override(&row.metadata);
            }
            Err(err) => tracing::debug!(%err, "queue refresh failed"),
        }
    }

    /// Applies the concurrency override in the queue's metadata (River Pro's shape; see
    /// [`ConcurrencyLimit::from_queue_metadata`]), or the code's limit when there is none.
    /// An invalid override is not applied: the producer keeps the limit it enforces, logs the
    /// reason once per value, and the health report shows it.
    fn apply_override(&mut self, metadata: &serde_json::Value) {
        let (effective, error) = match ConcurrencyLimit::from_queue_metadata(metadata) {
            Ok(Some(limit)) => (Some(limit), None),
            Ok(None) => (self.code_limit.clone(), None),
            Err(err) => {
                let value = metadata.get(ConcurrencyLimit::METADATA_KEY).cloned();
                if self.refused != value {
                    tracing::warn!(%err, "ignoring the queue's concurrency override");
                    self.refused = value;
                }
                let mut fetches = self.shared.fetches.lock().expect("lock poisoned");
                fetches
                    .entry(self.queue.clone())
                    .or_default()
                    .override_error = Some(err.to_string());
                return;
            }
        };
        self.refused = None;
        let limit = effective.as_ref().map(ConcurrencyLimit::to_fetch_limit);
        if limit != self.limit {
            tracing::info!(limit = ?effective, "the queue's concurrency limit changed");
        }
        self.limit = limit;
        self.limited.store(self.limit.is_some(), Ordering::Relaxed);
        let mut fetches = self.shared.fetches.lock().expect("lock poisoned");
        let record = fetches.entry(self.queue.clone()).or_default();
        record.concurrency = effective;
        record.override_error = error;
    }

    /// Returns to `available`, attempt unspent, this queue's rows that are running under this
    /// client's id but held by none of its tasks: those of a fetch that committed while its
    /// reply was lost.
    async fn return_orphans(&self) -> millrace_driver::Result<()> {
        let held = {
            let held = self.shared.held.lock().expect("lock poisoned");
            held.iter()
                .filter(|(_, h)| h.queue == self.queue)
                .map(|(id, _)| *id)
                .collect()
        };
        let returned = self
            .shared
            .driver
            .executor()
            .job_return_orphans(&JobReturnOrphansParams {
                client_id: self.shared.config.id.clone(),
                queue: self.queue.clone(),
                held,
            })
            .await?;
        if returned > 0 {
            tracing::warn!(returned, "returned jobs whose fetch reply was lost");
        }
        Ok(())
    }

    /// When a full rate-limit window of the queue frees room, if the queue has a rate limit
    /// and a partition is full. A failure leaves it to the poll.
    async fn rate_wake(&self) -> Option<Instant> {
        let rate = self.rate.as_ref()?;
        let mut exec = self.shared.driver.executor();
        let wait = tokio::select! {
            wait = exec.job_rate_limit_wait(&self.queue, rate) => wait,
            _ = self.shared.soft_stop.cancelled() => return None,
        };
        match wait {
            // The window excludes its start, and the clocks round: a millisecond more makes
            // sure the oldest fetch has left it.
            Ok(wait) => wait.map(|w| Instant::now() + w + RATE_WAKE_MARGIN),
            Err(err) => {
                tracing::debug!(%err, "reading the rate limit's window failed");
                None
            }
        }
    }

    async fn fetch(
        &mut self,
        free: usize,
        jobs: &mut JoinSet<()>,
        sweep_orphans: &mut bool,
    ) -> millrace_driver::Result<usize> {
        if *sweep_orphans {
            // A fetch may have committed while its reply was lost. Give its rows back before
            // fetching again.
            self.return_orphans().await?;
            *sweep_orphans = false;
        }
        // A pause applied on this client waits for this gate: look at `paused` again under it,
        // so no fetch that starts after `queue_pause` returns takes a job.
        let gate = self.fetching.clone();
        let _fetching = gate.lock().await;
        if *self.paused.borrow() {
            return Ok(0);
        }
        // One span per fetch batch; it costs nothing unless a subscriber enables `debug`.
        let span = tracing::debug_span!("fetch", queue = %self.queue, max = free, fetched = tracing::field::Empty);
        let started = Instant::now();
        let rows = self
            .shared
            .driver
            .executor()
            .job_get_available(&JobGetAvailableParams {
                queue: self.queue.clone(),
                max: free as i32,
                client_id: self.shared.config.id.clone(),
                now: self.shared.config.fetch_now(),
                limit: self.limit.clone(),
                rate: self.rate.clone(),
            })
            .instrument(span.clone())
            .await?;
        let fetched = rows.len();
        span.record("fetched", fetched);
        for hook in &self.shared.config.metric_hooks {
            hook.emit(&Metric::JobGetAvailable {
                queue: &self.queue,
                duration: started.elapsed(),
                count: fetched,
            });
        }
        let mut undecodable = Vec::new();
        for row in rows {
            let row = match row {
                Ok(row) => row,
                Err(job) => {
                    undecodable.push(job);
                    continue;
                }
            };
            let token = self.shared.hard_stop.child_token();
            self.shared.held.lock().expect("lock poisoned").insert(
                row.id,
                Held {
                    queue: self.queue.clone(),
                    token: token.clone(),
                },
            );
            jobs.spawn(crate::runtime::job_executor::run_job(
                self.shared.clone(),
                row,
                token,
            ));
        }
        if !undecodable.is_empty()
            && let Err(err) =
                crate::runtime::undecodable::fail_fetched(&self.shared, undecodable).await
        {
            // The rows stay running under this client, held by no task: give them back
            // before the next fetch, which fails them again.
            tracing::warn!(%err, "could not record the failed attempts of undecodable jobs");
            *sweep_orphans = true;
        }
        Ok(fetched)
    }
}
