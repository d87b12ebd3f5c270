//! What an operator asks of a fleet: job counts by queue and state, queue lag, bulk retry and
//! cancel by filter, the durable periodic schedules, persistent worker instances, the leaders
//! and the live clients. The `millrace` command's `jobs`, `queues`, `periodic`, `persistent`,
//! `leader` and `clients` commands are built on these, with no SQL of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, JobBatchParams, LeaderTable, PERSISTENT_FENCE_KEY};

pub use millrace_driver::{JobBatchAction, JobBatchRow, LeaderRow};

use millrace_driver::PERSISTENT_KIND_PREFIX;
use millrace_types::{AttemptError, JobId, JobState, UndecodableJob};

use super::Client;
use super::job_admin::{JobListParams, split, to_driver};
use crate::error::{Error, Result};

/// How many jobs of one queue are in one state, in [`JobCounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCount {
    /// The queue.
    pub queue: String,
    /// The state.
    pub state: JobState,
    /// How many jobs.
    pub count: i64,
}

/// Jobs counted by queue and state, from [`Client::job_counts`] or [`Client::job_counts_all`].
/// Pairs with no jobs are left out, and read as 0.
///
/// ```
/// # fn show(counts: &millrace::JobCounts) {
/// use millrace::JobState;
/// println!(
///     "{} available in default, {} discarded in all",
///     counts.get("default", JobState::Available),
///     counts.state_total(JobState::Discarded),
/// );
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// One entry per queue and state with jobs, by queue then state.
    pub counts: Vec<JobCount>,
}

impl JobCounts {
    /// The jobs of `queue` in `state`.
    pub fn get(&self, queue: &str, state: JobState) -> i64 {
        self.counts
            .iter()
            .filter(|c| c.queue == queue && c.state == state)
            .map(|c| c.count)
            .sum()
    }

    /// The jobs in `state`, in every queue.
    pub fn state_total(&self, state: JobState) -> i64 {
        self.counts
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.count)
            .sum()
    }

    /// The jobs of `queue`, in every state.
    pub fn queue_total(&self, queue: &str) -> i64 {
        self.counts
            .iter()
            .filter(|c| c.queue == queue)
            .map(|c| c.count)
            .sum()
    }

    /// Every queue with at least one job, by name.
    pub fn queues(&self) -> BTreeSet<&str> {
        self.counts.iter().map(|c| c.queue.as_str()).collect()
    }

    /// One queue's counts by state (states without jobs left out).
    pub fn queue(&self, queue: &str) -> BTreeMap<JobState, i64> {
        let mut by_state = BTreeMap::new();
        for c in self.counts.iter().filter(|c| c.queue == queue) {
            *by_state.entry(c.state).or_insert(0) += c.count;
        }
        by_state
    }
}

/// Jobs that reached one final state within one time bucket, from
/// [`Client::job_finalized_histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FinalizedBucket {
    /// When the bucket starts.
    pub start: Timestamp,
    /// The final state: completed, cancelled or discarded.
    pub state: JobState,
    /// How many jobs reached it within the bucket.
    pub count: i64,
}

/// How long the oldest available job of a queue has waited, from [`Client::queue_lag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueLag {
    /// The queue.
    pub queue: String,
    /// The `scheduled_at` of its oldest available job: when that job became due.
    pub oldest_available_at: Timestamp,
    /// How long ago that was, by the database's clock (zero when it is in the future).
    pub age: Duration,
}

/// What a bulk action did, from [`Client::job_act_many`], [`Client::job_retry_many`] or
/// [`Client::job_cancel_many`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobBatchResult {
    /// The jobs acted on, in the list's order. A cancel of a running job is here with state
    /// `running`: the request is recorded and its client told.
    pub applied: Vec<JobBatchRow>,
    /// The jobs the filters matched but the action left alone, in the list's order, with the
    /// state that made it skip them (a running job for a retry or delete, a finalized one for
    /// a cancel).
    pub skipped: Vec<JobBatchRow>,
    /// The params for the next batch, or `None` when this batch was the last.
    pub next: Option<JobListParams>,
}

/// A named periodic job's durable schedule, from [`Client::periodic_schedules`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeriodicSchedule {
    /// The periodic job's id.
    pub id: String,
    /// Its stored next run.
    pub next_run_at: Timestamp,
    /// When the scheduling client last moved the next run (after inserting a run).
    pub updated_at: Timestamp,
    /// The newest job it inserted that is still stored (the cleaner deletes old ones).
    pub last_job_id: Option<JobId>,
    /// When that job was inserted: the last run.
    pub last_run_at: Option<Timestamp>,
    /// That job's state.
    pub last_job_state: Option<JobState>,
    /// How far the next run is behind the database's clock; zero when it is not due yet. A
    /// schedule well overdue means no Millrace client runs its periodic jobs.
    pub overdue: Duration,
}

/// One persistent worker's instance, from [`Client::persistent_instances`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PersistentInstance {
    /// The persistent worker's name.
    pub name: String,
    /// The instance's job.
    pub job_id: JobId,
    /// Its queue.
    pub queue: String,
    /// `running` while a client holds it; `available` between holders.
    pub state: JobState,
    /// The client that holds it, or held it last.
    pub holder: Option<String>,
    /// When the holder last renewed its lease (or claimed it).
    pub renewed_at: Option<Timestamp>,
    /// How long ago that was, by the database's clock: past the lease, the holder is dead and
    /// another client takes the instance over.
    pub lease_age: Option<Duration>,
    /// How many times any client claimed it (its fencing token).
    pub claims: i64,
    /// Claims after the first: restarts after an error, takeovers and handovers.
    pub restarts: i64,
    /// The errors kept from its failed runs, oldest first.
    pub errors: Vec<AttemptError>,
}

/// Who leads, from [`Client::leaders`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leaders {
    /// The database's clock when it answered.
    pub now: Timestamp,
    /// The `river_leader` row: the client (River's or Millrace's) running River's maintenance.
    pub river: Option<LeaderRow>,
    /// The `millrace_leader` row: the Millrace client running Millrace's fleet work (dead
    /// client rescue, durable periodic schedules).
    pub millrace: Option<LeaderRow>,
}

/// Running jobs of one client, queue and kind, in a [`FleetClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunningJobs {
    /// The queue.
    pub queue: String,
    /// The kind.
    pub kind: String,
    /// How many jobs.
    pub count: i64,
}

/// A client of the fleet, from [`Client::fleet_clients`]: a Millrace client with a heartbeat
/// row, or any client (River's too) holding running jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetClient {
    /// The client's id.
    pub id: String,
    /// When it started, for a Millrace client.
    pub started_at: Option<Timestamp>,
    /// When it last heartbeat, for a Millrace client.
    pub heartbeat_at: Option<Timestamp>,
    /// When its heartbeat lease runs out, for a Millrace client.
    pub lease_expires_at: Option<Timestamp>,
    /// Whether its lease is live; `None` for a client with no heartbeat row (River's, or a
    /// Millrace client whose row was already removed after it died).
    pub live: Option<bool>,
    /// The jobs it runs now, by queue and kind.
    pub running: Vec<RunningJobs>,
    /// The limits it was built with, by queue: `{"queue": {"concurrency": …, "rate_limit":
    /// …}}`, written at its start and every 30 s; `None` for a client with no heartbeat row.
    /// Clients compare these and report a difference in
    /// [`QueueHealth::limits_disagreement`](crate::QueueHealth::limits_disagreement).
    pub declared_limits: Option<serde_json::Value>,
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

impl<D: Driver> Client<D> {
    /// How many jobs the filters match (after [`JobListParams::after`], when set), whatever
    /// the params' limit: what a bulk action on the same params would look at.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed filter; [`Error::Driver`] when the database
    /// fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::{JobListParams, JobState};
    /// let discarded = client.job_count(JobListParams::new().states([JobState::Discarded])).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_count(&self, params: JobListParams) -> Result<i64> {
        let mut filter = to_driver(&params)?;
        filter.limit = i64::MAX;
        Ok(self.inner.driver.executor().job_count(&filter).await?)
    }

    /// How many jobs the filters match, counting no further than `cap`: a result equal to
    /// `cap` means "at least `cap`". The count stops at the cap, so it stays cheap on a filter
    /// that matches millions of rows (the dashboard shows such counts as `100,000+`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed filter or a cap below 1; [`Error::Driver`]
    /// when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::{JobListParams, JobState};
    /// let n = client.job_count_capped(JobListParams::new().states([JobState::Completed]), 10_000).await?;
    /// println!("{}{}", n, if n == 10_000 { "+" } else { "" });
    /// # Ok(()) }
    /// ```
    pub async fn job_count_capped(&self, params: JobListParams, cap: i64) -> Result<i64> {
        if cap < 1 {
            return Err(Error::InvalidArgument(format!(
                "a capped count needs a cap of at least 1, got {cap}"
            )));
        }
        let mut filter = to_driver(&params)?;
        filter.limit = cap;
        Ok(self.inner.driver.executor().job_count(&filter).await?)
    }

    /// Jobs finalized (completed, cancelled, discarded) since `since`, counted by state in
    /// buckets of `bucket` each: throughput and failures over time, for a chart. Buckets and
    /// states without jobs are left out.
    ///
    /// One range of the `(state, finalized_at)` index per final state: its cost grows with
    /// the jobs finalized since `since`, not with the table.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bucket shorter than a second; [`Error::Driver`] when
    /// the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use std::time::Duration;
    /// let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    /// for b in client.job_finalized_histogram(hour_ago, Duration::from_secs(300)).await? {
    ///     println!("{} {}: {}", b.start, b.state, b.count);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn job_finalized_histogram(
        &self,
        since: Timestamp,
        bucket: Duration,
    ) -> Result<Vec<FinalizedBucket>> {
        let secs = i64::try_from(bucket.as_secs()).unwrap_or(i64::MAX);
        if secs < 1 {
            return Err(Error::InvalidArgument(format!(
                "a histogram bucket must be at least a second, got {bucket:?}"
            )));
        }
        let rows = self
            .inner
            .driver
            .executor()
            .job_finalized_histogram(since, secs)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let start = since
                    .checked_add(jiff::SignedDuration::from_secs(r.bucket.checked_mul(secs)?))
                    .ok()?;
                Some(FinalizedBucket {
                    start,
                    state: r.state,
                    count: r.count,
                })
            })
            .collect())
    }

    /// The database's estimate of the jobs in each state, from its statistics as of the
    /// table's last analyze, read from the catalogs without touching the table: for the
    /// history states, whose exact counts grow with the table. Empty on SQLite and on a
    /// PostgreSQL table never analyzed; states too rare for the statistics are left out.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// for (state, about) in client.job_state_estimates().await? {
    ///     println!("about {about} jobs {state}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn job_state_estimates(&self) -> Result<Vec<(JobState, i64)>> {
        let rows = self.inner.driver.executor().job_state_estimates().await?;
        Ok(rows.into_iter().map(|r| (r.state, r.estimate)).collect())
    }

    /// Jobs in the states that are not final (available, pending, retryable, running,
    /// scheduled), counted by queue and state: the backlog, for dashboards and gauges.
    ///
    /// A `GROUP BY` over a range of the `(state, queue, …)` fetch index (an index-only scan
    /// on a vacuumed table), so its cost grows with the live jobs, not with the completed
    /// history the table keeps until the cleaner deletes it. On PostgreSQL 15 on a loaded
    /// two-core machine, a table of 1,000,000 jobs of which 100,000 were available took 25 to
    /// 85 ms; docs/cli.md says how it was measured. [`Client::job_counts_all`] counts the
    /// final states too.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::JobState;
    /// let counts = client.job_counts().await?;
    /// println!("{} jobs available", counts.state_total(JobState::Available));
    /// # Ok(()) }
    /// ```
    pub async fn job_counts(&self) -> Result<JobCounts> {
        let live: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|s| !s.is_finalized())
            .collect();
        self.count_states(&live).await
    }

    /// Jobs in every state, final ones included, counted by queue and state.
    ///
    /// Its cost grows with the whole table: on the same 1,000,000-job table as
    /// [`Client::job_counts`] it took 300 to 600 ms (a parallel sequential scan). Fine for an
    /// operator's command; poll [`Client::job_counts`] for gauges instead.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::JobState;
    /// let counts = client.job_counts_all().await?;
    /// println!("{} jobs discarded", counts.state_total(JobState::Discarded));
    /// # Ok(()) }
    /// ```
    pub async fn job_counts_all(&self) -> Result<JobCounts> {
        self.count_states(&[]).await
    }

    async fn count_states(&self, states: &[JobState]) -> Result<JobCounts> {
        let rows = self
            .inner
            .driver
            .executor()
            .job_count_by_queue_and_state(states)
            .await?;
        Ok(JobCounts {
            counts: rows
                .into_iter()
                .map(|r| JobCount {
                    queue: r.queue,
                    state: r.state,
                    count: r.count,
                })
                .collect(),
        })
    }

    /// The age of each queue's oldest available job (how long the longest-waiting due job
    /// has waited), by queue; queues without available jobs are left out.
    ///
    /// Cheap whatever the backlog: on PostgreSQL a few index probes per queue (a loose scan
    /// over queues, then one probe per priority), independent of how many jobs wait; 7 ms
    /// for 10 queues holding 100,000 available jobs in a table of 1,000,000 (docs/cli.md).
    /// SQLite reads each queue's available jobs from the same index.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// for lag in client.queue_lag().await? {
    ///     println!("{}: {:?} behind", lag.queue, lag.age);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_lag(&self) -> Result<Vec<QueueLag>> {
        let oldest = self
            .inner
            .driver
            .executor()
            .queue_oldest_available()
            .await?;
        Ok(oldest
            .queues
            .into_iter()
            .map(|(queue, at)| QueueLag {
                queue,
                oldest_available_at: at,
                age: age(oldest.now, at),
            })
            .collect())
    }

    /// Retries, cancels or deletes the jobs the filters match, one batch of at most
    /// `params.limit` per call, each job as [`Client::job_retry`], [`Client::job_cancel`] or
    /// [`Client::job_delete`] would (a running job is never retried or deleted; cancelling
    /// one records the request and tells its client). Call again with
    /// [`JobBatchResult::next`] until it is `None`.
    ///
    /// Each job is locked and judged by its state at that moment, so a job that changed
    /// state since it was listed is skipped or acted on by its new state, and reported so.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when no filter is set (unless [`JobListParams::unfiltered`]
    /// says so), a filter is malformed or the limit is out of range; [`Error::Driver`] when
    /// the database fails (the batch is then rolled back).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::{JobBatchAction, JobListParams, JobState};
    /// let mut params = Some(JobListParams::new().states([JobState::Discarded]).kinds(["email"]).limit(1000));
    /// while let Some(p) = params {
    ///     let batch = client.job_act_many(JobBatchAction::Retry, p).await?;
    ///     println!("retried {}, skipped {}", batch.applied.len(), batch.skipped.len());
    ///     params = batch.next;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn job_act_many(
        &self,
        action: JobBatchAction,
        params: JobListParams,
    ) -> Result<JobBatchResult> {
        let filter = to_driver(&params)?;
        if filter.is_unfiltered() && !params.unfiltered {
            return Err(Error::InvalidArgument(format!(
                "a bulk {} without a filter would touch every job; add a filter, or call \
                 .unfiltered() on the params to mean it",
                action.as_str()
            )));
        }
        let now = match action {
            // As job_retry: a test clock moves the retry's scheduled_at with it.
            JobBatchAction::Retry => self.inner.config.fetch_now(),
            JobBatchAction::Cancel | JobBatchAction::Delete => None,
        };
        let rows = self
            .inner
            .driver
            .executor()
            .job_act_many(&JobBatchParams {
                action,
                filter,
                now,
            })
            .await?;
        let next = match rows.last() {
            Some(last) if rows.len() as i64 == params.limit => Some(params.after(last.id)),
            _ => None,
        };
        let (applied, skipped) = rows.into_iter().partition(|r| r.applied);
        Ok(JobBatchResult {
            applied,
            skipped,
            next,
        })
    }

    /// [`Client::job_act_many`] with [`JobBatchAction::Retry`].
    ///
    /// # Errors
    ///
    /// As [`Client::job_act_many`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::{JobListParams, JobState};
    /// let batch = client.job_retry_many(JobListParams::new().states([JobState::Discarded])).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_retry_many(&self, params: JobListParams) -> Result<JobBatchResult> {
        self.job_act_many(JobBatchAction::Retry, params).await
    }

    /// [`Client::job_act_many`] with [`JobBatchAction::Cancel`].
    ///
    /// # Errors
    ///
    /// As [`Client::job_act_many`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::JobListParams;
    /// let batch = client.job_cancel_many(JobListParams::new().kinds(["report"])).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_cancel_many(&self, params: JobListParams) -> Result<JobBatchResult> {
        self.job_act_many(JobBatchAction::Cancel, params).await
    }

    /// Every named periodic job's durable schedule (the next run stored so that a change of
    /// scheduling client neither skips nor repeats a run), with its last run. Periodic jobs
    /// without an id keep no schedule and are not listed.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// for s in client.periodic_schedules().await? {
    ///     println!("{} next at {}", s.id, s.next_run_at);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn periodic_schedules(&self) -> Result<Vec<PeriodicSchedule>> {
        let mut exec = self.inner.driver.executor();
        let rows = exec.periodic_job_list().await?;
        let now = exec.now().await?;
        Ok(rows
            .into_iter()
            .map(|r| PeriodicSchedule {
                overdue: age(now, r.next_run_at),
                id: r.id,
                next_run_at: r.next_run_at,
                updated_at: r.updated_at,
                last_job_id: r.last_job.map(|(id, _, _)| id),
                last_run_at: r.last_job.map(|(_, at, _)| at),
                last_job_state: r.last_job.map(|(_, _, state)| state),
            })
            .collect())
    }

    /// Every persistent worker's live instance across the fleet, with its holder, the age of
    /// its lease and how often it was restarted. Instances whose rows do not decode are
    /// returned apart.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let (instances, _undecodable) = client.persistent_instances().await?;
    /// for i in instances {
    ///     println!("{} held by {:?}, {} restarts", i.name, i.holder, i.restarts);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn persistent_instances(
        &self,
    ) -> Result<(Vec<PersistentInstance>, Vec<UndecodableJob>)> {
        let mut exec = self.inner.driver.executor();
        let reads = exec.persistent_list(PERSISTENT_KIND_PREFIX).await?;
        let now = exec.now().await?;
        let (jobs, undecodable) = split(reads);
        let instances = jobs
            .into_iter()
            .map(|job| {
                let claims = job
                    .metadata
                    .get(PERSISTENT_FENCE_KEY)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0);
                PersistentInstance {
                    name: job
                        .kind
                        .strip_prefix(PERSISTENT_KIND_PREFIX)
                        .unwrap_or(&job.kind)
                        .to_owned(),
                    job_id: job.id,
                    queue: job.queue,
                    state: job.state,
                    holder: job.attempted_by.last().cloned(),
                    renewed_at: job.attempted_at,
                    lease_age: job.attempted_at.map(|at| age(now, at)),
                    claims,
                    restarts: (claims - 1).max(0),
                    errors: job.errors,
                }
            })
            .collect();
        Ok((instances, undecodable))
    }

    /// River's leader (`river_leader`) and Millrace's lease holder (`millrace_leader`), expired
    /// or not; compare their `expires_at` with [`Leaders::now`].
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let leaders = client.leaders().await?;
    /// if let Some(river) = &leaders.river {
    ///     println!("River's maintenance runs on {}", river.leader_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leaders(&self) -> Result<Leaders> {
        let mut exec = self.inner.driver.executor();
        let river = exec.leader_get(LeaderTable::River).await?;
        let millrace = exec.leader_get(LeaderTable::Millrace).await?;
        let now = exec.now().await?;
        Ok(Leaders {
            now,
            river,
            millrace,
        })
    }

    /// The fleet's clients: every Millrace client's heartbeat row, and every client (River's
    /// too) holding running jobs, each with what it runs, by id.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// for c in client.fleet_clients().await? {
    ///     let running: i64 = c.running.iter().map(|r| r.count).sum();
    ///     println!("{} runs {running} jobs", c.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fleet_clients(&self) -> Result<Vec<FleetClient>> {
        let mut exec = self.inner.driver.executor();
        let rows = exec.client_list().await?;
        let running = exec.job_count_running_by_client().await?;
        let now = exec.now().await?;
        let mut clients: BTreeMap<String, FleetClient> = rows
            .into_iter()
            .map(|r| {
                let client = FleetClient {
                    id: r.id.clone(),
                    started_at: Some(r.started_at),
                    heartbeat_at: Some(r.heartbeat_at),
                    lease_expires_at: Some(r.lease_expires_at),
                    live: Some(r.lease_expires_at > now),
                    running: Vec::new(),
                    declared_limits: Some(r.queues),
                };
                (r.id, client)
            })
            .collect();
        for r in running {
            clients
                .entry(r.client_id.clone())
                .or_insert_with(|| FleetClient {
                    id: r.client_id.clone(),
                    started_at: None,
                    heartbeat_at: None,
                    lease_expires_at: None,
                    live: None,
                    running: Vec::new(),
                    declared_limits: None,
                })
                .running
                .push(RunningJobs {
                    queue: r.queue,
                    kind: r.kind,
                    count: r.count,
                });
        }
        Ok(clients.into_values().collect())
    }
}
