//! The insert pipeline every insert goes through, a user's and the runtime's own (periodic
//! runs, persistent instances' rows): resolve each job's options by the client's clock, let the
//! insert middleware see it, fold duplicates of one batch, store, and tell the queues that got
//! work (other clients through a rate-limited notification, this client's own producers
//! directly).
//!
//! It imports neither the client nor the runtime: the client owns an [`Inserter`] and hands
//! it to the runtime it starts, which registers itself as the [`LocalQueues`] to wake.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use millrace_driver::{Driver, Executor, JobInsertParams, Topic};
use millrace_types::JobState;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::insert_opts::InsertOpts;
use crate::insert_params::{InsertManyParams, InsertResult};
use crate::middleware::{InsertMiddleware, run_insert_chain};

/// The least time between two `river_insert` notifications for one queue, as River's
/// FetchCooldown.
const INSERT_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);

/// What an insert wakes on this client: the producers and keepers of a queue that got work.
pub(crate) trait LocalQueues: Send + Sync {
    /// Wakes whatever works `queue` here.
    fn wake_queue(&self, queue: &str);
}

/// A weak handle wakes the queues while the runtime it points to lives, and does nothing after.
impl LocalQueues for Weak<dyn LocalQueues> {
    fn wake_queue(&self, queue: &str) {
        if let Some(local) = self.upgrade() {
            local.wake_queue(queue);
        }
    }
}

/// A client's insert pipeline, shared by the client and the runtime it starts.
pub(crate) struct Inserter<D: Driver> {
    driver: D,
    /// The client's insert options, below the args type's and the insert's own.
    insert_opts: InsertOpts,
    clock: Clock,
    middleware: Vec<Arc<dyn InsertMiddleware>>,
    /// When each queue last had an insert notification sent, for the 100 ms limit.
    notified: Mutex<HashMap<String, Instant>>,
    /// The started runtime, weakly: it holds this inserter, and must not be kept alive by it.
    local: Mutex<Option<Weak<dyn LocalQueues>>>,
}

impl<D: Driver> Inserter<D> {
    pub(crate) fn new(
        driver: D,
        insert_opts: InsertOpts,
        clock: Clock,
        middleware: Vec<Arc<dyn InsertMiddleware>>,
    ) -> Self {
        Inserter {
            driver,
            insert_opts,
            clock,
            middleware,
            notified: Mutex::new(HashMap::new()),
            local: Mutex::new(None),
        }
    }

    /// Sets (at start) or clears (at stop) what inserts wake on this client.
    pub(crate) fn set_local(&self, local: Option<Weak<dyn LocalQueues>>) {
        *self.local.lock().expect("lock poisoned") = local;
    }

    /// Resolves and stores jobs on a connection of the pool.
    pub(crate) async fn insert_many(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        // Fills the `count` of the client's `insert_many` span; a no-op in any other span.
        tracing::Span::current().record("count", jobs.len());
        self.insert_jobs(&mut self.driver.executor(), jobs).await
    }

    /// Resolves and stores jobs on the caller's connection or transaction.
    pub(crate) async fn insert_many_on<E: Executor>(
        &self,
        exec: &mut E,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<InsertResult>> {
        let jobs = self.resolve_all(params)?;
        tracing::Span::current().record("count", jobs.len());
        self.insert_jobs(exec, jobs).await
    }

    /// Stores resolved jobs through the insert middleware, then notifies.
    pub(crate) async fn insert_jobs<E: Executor>(
        &self,
        exec: &mut E,
        jobs: Vec<JobInsertParams>,
    ) -> Result<Vec<InsertResult>> {
        let middleware = &self.middleware;
        if middleware.is_empty() {
            let results = insert_deduplicated(exec, &jobs).await?;
            self.notify_inserted(exec, &jobs).await?;
            return Ok(results);
        }
        run_insert_chain(middleware, jobs, move |jobs| {
            Box::pin(async move {
                let results = insert_deduplicated(exec, &jobs).await?;
                self.notify_inserted(exec, &jobs).await?;
                Ok(results)
            })
        })
        .await
    }

    /// Resolves and validates each job's options, then lets the insert middleware see it.
    pub(crate) fn resolve_all(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<JobInsertParams>> {
        let now = self.clock.now();
        let test_clock = self.clock.is_stubbed();
        params
            .into_iter()
            .map(|p| {
                let mut job = p.resolve(&self.insert_opts, now)?;
                if test_clock {
                    // Stamped by the test clock rather than the database's, so the job is due
                    // by the clock the client fetches by, as River stamps inserts with its
                    // stubbed time.
                    job.created_at.get_or_insert(now);
                    job.scheduled_at.get_or_insert(now);
                }
                for m in &self.middleware {
                    m.insert_job(&mut job)?;
                }
                Ok(job)
            })
            .collect()
    }

    pub(crate) fn resolve_fast(
        &self,
        params: impl IntoIterator<Item = InsertManyParams>,
    ) -> Result<Vec<JobInsertParams>> {
        let jobs = self.resolve_all(params)?;
        if let Some(job) = jobs.iter().find(|j| j.unique_key.is_some()) {
            return Err(Error::InvalidInsert(format!(
                "a job of kind {:?} has unique options, which the fast (COPY) insert cannot \
                 honour; insert it with insert_many",
                job.kind
            )));
        }
        Ok(jobs)
    }

    /// Sends `river_insert` for each queue that got available jobs, at most once per queue per
    /// 100 ms from this client. On a transaction the notification is delivered at commit.
    pub(crate) async fn notify_inserted<E: Executor>(
        &self,
        exec: &mut E,
        jobs: &[JobInsertParams],
    ) -> Result<()> {
        let queues: BTreeSet<&str> = jobs
            .iter()
            .filter(|j| j.state == JobState::Available)
            .map(|j| j.queue.as_str())
            .collect();
        if queues.is_empty() {
            return Ok(());
        }
        if self.driver.supports_listen_notify() {
            let due: Vec<(Topic, String)> = {
                let now = Instant::now();
                let mut last = self.notified.lock().expect("lock poisoned");
                queues
                    .iter()
                    .filter(|queue| {
                        let recent = last
                            .get(**queue)
                            .is_some_and(|at| now.duration_since(*at) < INSERT_NOTIFY_INTERVAL);
                        if !recent {
                            last.insert((**queue).to_owned(), now);
                        }
                        !recent
                    })
                    .map(|queue| {
                        let payload = serde_json::json!({ "queue": queue }).to_string();
                        (Topic::Insert, payload)
                    })
                    .collect()
            };
            exec.notify_many(&due).await?;
        }
        // This client's own producers need no notification: wake them now, whatever the
        // 100 ms limit held back. (On a transaction this may be before commit; they then find
        // nothing, and the notification at commit or their poll wakes them again.)
        let local = self.local.lock().expect("lock poisoned").clone();
        if let Some(local) = local.and_then(|weak| weak.upgrade()) {
            for queue in &queues {
                local.wake_queue(queue);
            }
        }
        Ok(())
    }
}

/// Inserts a batch after folding jobs with equal unique keys into their first occurrence, since
/// PostgreSQL fails a statement that conflicts with itself. Repeats get the first job's row,
/// flagged as duplicates.
async fn insert_deduplicated<E: Executor>(
    exec: &mut E,
    jobs: &[JobInsertParams],
) -> Result<Vec<InsertResult>> {
    let mut first_of: HashMap<&[u8], usize> = HashMap::new();
    // For each input job: the index of the job actually sent that stands for it.
    let mut sent_index = Vec::with_capacity(jobs.len());
    let mut to_send: Vec<&JobInsertParams> = Vec::with_capacity(jobs.len());
    let mut is_repeat = Vec::with_capacity(jobs.len());
    for job in jobs {
        let live_key = job.unique_key.as_deref().filter(|_| {
            job.unique_states
                .is_some_and(|states| states.contains(job.state))
        });
        match live_key.and_then(|key| first_of.get(key).copied()) {
            Some(index) => {
                sent_index.push(index);
                is_repeat.push(true);
            }
            None => {
                if let Some(key) = live_key {
                    first_of.insert(key, to_send.len());
                }
                sent_index.push(to_send.len());
                is_repeat.push(false);
                to_send.push(job);
            }
        }
    }
    let stored = if to_send.len() == jobs.len() {
        exec.job_insert_many(jobs).await?
    } else {
        let owned: Vec<JobInsertParams> = to_send.into_iter().cloned().collect();
        exec.job_insert_many(&owned).await?
    };
    Ok(sent_index
        .into_iter()
        .zip(is_repeat)
        .map(|(index, repeat)| {
            let mut result = stored[index].clone();
            result.unique_skipped_as_duplicate |= repeat;
            result
        })
        .collect())
}
