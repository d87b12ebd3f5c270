//! Reading and changing jobs outside a run: get, list, cancel, retry, delete.

use millrace_driver::{
    Driver, Executor, JobCancelParams, JobDeleteOutcome, JobListParams as DriverListParams,
    JobRetryParams,
};
use millrace_types::{JobId, JobRead, JobRow, JobState, UndecodableJob, job_read_id};

use super::Client;
use crate::error::{Error, Result};

/// The most rows one [`Client::job_list`] call returns.
pub const JOB_LIST_MAX_LIMIT: i64 = 10_000;

/// Filters and paging for [`Client::job_list`]. Empty filters match every job.
///
/// Paging is by id: pass the last id of a page as [`after`](JobListParams::after) to get the
/// next one ([`JobListPage::next`] does it for you).
///
/// ```
/// use millrace::{JobListParams, JobState};
///
/// let params = JobListParams::new()
///     .states([JobState::Available, JobState::Retryable])
///     .kinds(["send_email"])
///     .queues(["email"])
///     .limit(50);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobListParams {
    /// Only jobs in these states.
    pub states: Vec<JobState>,
    /// Only jobs of these kinds.
    pub kinds: Vec<String>,
    /// Only jobs in these queues.
    pub queues: Vec<String>,
    /// Only jobs with these ids.
    pub ids: Vec<JobId>,
    /// Only jobs with these priorities.
    pub priorities: Vec<i16>,
    /// Only jobs carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only jobs whose metadata contains this JSON object.
    pub metadata: Option<serde_json::Value>,
    /// Only jobs whose args contain this JSON object.
    pub args: Option<serde_json::Value>,
    /// Only jobs with an id of at least this.
    pub id_min: Option<JobId>,
    /// Only jobs with an id of at most this.
    pub id_max: Option<JobId>,
    /// Only jobs created at or after this time.
    pub created_since: Option<jiff::Timestamp>,
    /// Only jobs finalized at or after this time.
    pub finalized_since: Option<jiff::Timestamp>,
    /// Only jobs after this id in the list's order.
    pub after: Option<JobId>,
    /// Newest first.
    pub descending: bool,
    /// At most this many jobs, 1 to [`JOB_LIST_MAX_LIMIT`]. Defaults to 100.
    pub limit: i64,
    /// Lets [`Client::job_delete_many`] run without any filter (every job but running ones).
    pub unfiltered: bool,
}

impl Default for JobListParams {
    fn default() -> Self {
        JobListParams {
            states: Vec::new(),
            kinds: Vec::new(),
            queues: Vec::new(),
            ids: Vec::new(),
            priorities: Vec::new(),
            tags: Vec::new(),
            metadata: None,
            args: None,
            id_min: None,
            id_max: None,
            created_since: None,
            finalized_since: None,
            after: None,
            descending: false,
            limit: 100,
            unfiltered: false,
        }
    }
}

impl JobListParams {
    /// Every job, oldest first, 100 at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only jobs in these states.
    #[must_use]
    pub fn states(mut self, states: impl IntoIterator<Item = JobState>) -> Self {
        self.states = states.into_iter().collect();
        self
    }

    /// Only jobs of these kinds.
    #[must_use]
    pub fn kinds<S: Into<String>>(mut self, kinds: impl IntoIterator<Item = S>) -> Self {
        self.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// Only jobs in these queues.
    #[must_use]
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Only jobs with these ids.
    #[must_use]
    pub fn ids(mut self, ids: impl IntoIterator<Item = JobId>) -> Self {
        self.ids = ids.into_iter().collect();
        self
    }

    /// Only jobs with these priorities.
    #[must_use]
    pub fn priorities(mut self, priorities: impl IntoIterator<Item = i16>) -> Self {
        self.priorities = priorities.into_iter().collect();
        self
    }

    /// Only jobs carrying every one of these tags.
    #[must_use]
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Only jobs whose metadata contains this JSON object, as PostgreSQL's `@>`:
    /// `{"tenant": 7}` matches any metadata with `"tenant": 7` among its keys.
    #[must_use]
    pub fn metadata(mut self, contains: serde_json::Value) -> Self {
        self.metadata = Some(contains);
        self
    }

    /// Only jobs whose args contain this JSON object, as PostgreSQL's `@>` (on SQLite too).
    #[must_use]
    pub fn args(mut self, contains: serde_json::Value) -> Self {
        self.args = Some(contains);
        self
    }

    /// Only jobs whose id is in this range (both ends included).
    #[must_use]
    pub fn id_range(mut self, range: std::ops::RangeInclusive<JobId>) -> Self {
        self.id_min = Some(*range.start());
        self.id_max = Some(*range.end());
        self
    }

    /// Only jobs created at or after this time.
    #[must_use]
    pub fn created_since(mut self, since: jiff::Timestamp) -> Self {
        self.created_since = Some(since);
        self
    }

    /// Only jobs finalized (completed, cancelled or discarded) at or after this time.
    #[must_use]
    pub fn finalized_since(mut self, since: jiff::Timestamp) -> Self {
        self.finalized_since = Some(since);
        self
    }

    /// Lets [`Client::job_delete_many`] delete without a filter.
    #[must_use]
    pub fn unfiltered(mut self) -> Self {
        self.unfiltered = true;
        self
    }

    /// Only jobs after this id (in the list's order).
    #[must_use]
    pub fn after(mut self, id: JobId) -> Self {
        self.after = Some(id);
        self
    }

    /// Newest first.
    #[must_use]
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// At most this many jobs.
    #[must_use]
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }
}

/// One page of [`Client::job_list`].
#[derive(Debug, Clone)]
pub struct JobListPage {
    /// The jobs, in the list's order.
    pub jobs: Vec<JobRow>,
    /// The rows of this page that could not be decoded (written by hand or by another client
    /// with values no River client writes), in the list's order. They count towards the
    /// page's limit and never fail the rest of the page.
    pub undecodable: Vec<UndecodableJob>,
    /// The params for the next page, or `None` when this page was the last.
    pub next: Option<JobListParams>,
}

/// What [`Client::job_delete_many`] deleted.
#[derive(Debug, Clone)]
pub struct JobDeleteManyResult {
    /// The deleted jobs' last rows, in the list's order.
    pub jobs: Vec<JobRow>,
    /// Deleted jobs whose rows could not be decoded (see [`UndecodableJob`]): deleted all the
    /// same, reported by what could be read of them.
    pub undecodable: Vec<UndecodableJob>,
}

/// Splits a batch into the rows that decoded and those that did not, each in order.
pub(crate) fn split(reads: Vec<JobRead>) -> (Vec<JobRow>, Vec<UndecodableJob>) {
    let mut jobs = Vec::with_capacity(reads.len());
    let mut undecodable = Vec::new();
    for read in reads {
        match read {
            Ok(job) => jobs.push(job),
            Err(job) => undecodable.push(job),
        }
    }
    (jobs, undecodable)
}

pub(crate) fn to_driver(params: &JobListParams) -> Result<DriverListParams> {
    if !(1..=JOB_LIST_MAX_LIMIT).contains(&params.limit) {
        return Err(Error::InvalidArgument(format!(
            "job list limit must be between 1 and {JOB_LIST_MAX_LIMIT}, got {}",
            params.limit
        )));
    }
    let object = |name: &str, value: &Option<serde_json::Value>| match value {
        None => Ok(None),
        Some(value @ serde_json::Value::Object(_)) => Ok(Some(value.to_string())),
        Some(other) => Err(Error::InvalidArgument(format!(
            "{name} filter must be a JSON object, not {other}"
        ))),
    };
    let metadata_contains = object("metadata", &params.metadata)?;
    let args_contains = object("args", &params.args)?;
    Ok(DriverListParams {
        states: params.states.clone(),
        kinds: params.kinds.clone(),
        queues: params.queues.clone(),
        ids: params.ids.clone(),
        priorities: params.priorities.clone(),
        tags: params.tags.clone(),
        metadata_contains,
        args_contains,
        id_min: params.id_min,
        id_max: params.id_max,
        created_since: params.created_since,
        finalized_since: params.finalized_since,
        after_id: params.after,
        descending: params.descending,
        limit: params.limit,
    })
}

async fn list<E: Executor>(exec: &mut E, params: JobListParams) -> Result<JobListPage> {
    let reads = exec.job_list(&to_driver(&params)?).await?;
    let next = match reads.last() {
        Some(last) if reads.len() as i64 == params.limit => Some(params.after(job_read_id(last))),
        _ => None,
    };
    let (jobs, undecodable) = split(reads);
    Ok(JobListPage {
        jobs,
        undecodable,
        next,
    })
}

async fn delete_many<E: Executor>(
    exec: &mut E,
    params: JobListParams,
) -> Result<JobDeleteManyResult> {
    let driver_params = to_driver(&params)?;
    if driver_params.is_unfiltered() && !params.unfiltered {
        return Err(Error::InvalidArgument(
            "job_delete_many without a filter would delete every job; add a filter, or call \
             .unfiltered() on the params to mean it"
                .to_owned(),
        ));
    }
    let (jobs, undecodable) = split(exec.job_delete_many(&driver_params).await?);
    Ok(JobDeleteManyResult { jobs, undecodable })
}

async fn update<E: Executor>(exec: &mut E, id: JobId, params: JobUpdateParams) -> Result<JobRow> {
    let metadata = match params.metadata {
        None => "{}".to_owned(),
        Some(value @ serde_json::Value::Object(_)) => value.to_string(),
        Some(other) => {
            return Err(Error::InvalidArgument(format!(
                "metadata to merge must be a JSON object, not {other}"
            )));
        }
    };
    exec.job_update_metadata(id, &metadata)
        .await?
        .ok_or(Error::JobNotFound(id))
}

/// Changes to a job made outside a run, by [`Client::job_update`].
///
/// ```
/// use millrace::JobUpdateParams;
///
/// let params = JobUpdateParams::new().metadata(serde_json::json!({ "reviewed": true }));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct JobUpdateParams {
    /// A JSON object merged into the job's metadata (top-level keys replaced).
    pub metadata: Option<serde_json::Value>,
}

impl JobUpdateParams {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges this JSON object into the job's metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

async fn delete<E: Executor>(exec: &mut E, id: JobId) -> Result<JobRow> {
    match exec.job_delete(id).await? {
        JobDeleteOutcome::Deleted(row) => Ok(row),
        JobDeleteOutcome::NotFound => Err(Error::JobNotFound(id)),
        JobDeleteOutcome::Running(_) => Err(Error::JobRunning(id)),
    }
}

impl<D: Driver> Client<D> {
    /// One job by id.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotFound`] when no job has the id.
    /// A row that cannot be decoded is [`Error::Driver`] with
    /// [`DriverError::UndecodableJob`](millrace_driver::DriverError::UndecodableJob).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let job = client.job_get(millrace::JobId(1)).await?;
    /// println!("{} is {}", job.id, job.state);
    /// # Ok(()) }
    /// ```
    pub async fn job_get(&self, id: JobId) -> Result<JobRow> {
        self.inner
            .driver
            .executor()
            .job_get_by_id(id)
            .await?
            .ok_or(Error::JobNotFound(id))
    }

    /// [`Client::job_get`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// let job = client.job_get_tx(&mut tx, millrace::JobId(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_get_tx(&self, conn: &mut D::Conn, id: JobId) -> Result<JobRow> {
        self.inner
            .driver
            .conn_executor(conn)
            .job_get_by_id(id)
            .await?
            .ok_or(Error::JobNotFound(id))
    }

    /// One page of jobs matching the filters, in id order. A row that cannot be decoded never
    /// fails the page: it is listed in [`JobListPage::undecodable`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a limit outside 1 to [`JOB_LIST_MAX_LIMIT`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::{JobListParams, JobState};
    /// let mut params = Some(JobListParams::new().states([JobState::Discarded]));
    /// while let Some(p) = params {
    ///     let page = client.job_list(p).await?;
    ///     for job in &page.jobs {
    ///         println!("{} failed: {:?}", job.id, job.errors.last());
    ///     }
    ///     for job in &page.undecodable {
    ///         println!("{job}");
    ///     }
    ///     params = page.next;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn job_list(&self, params: JobListParams) -> Result<JobListPage> {
        list(&mut self.inner.driver.executor(), params).await
    }

    /// [`Client::job_list`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_list`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// let page = client.job_list_tx(&mut tx, millrace::JobListParams::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_list_tx(
        &self,
        conn: &mut D::Conn,
        params: JobListParams,
    ) -> Result<JobListPage> {
        list(&mut self.inner.driver.conn_executor(conn), params).await
    }

    /// Cancels a job. A job that is not running is cancelled at once. A running job is marked
    /// (`cancel_attempted_at` in its metadata) and its client is notified through
    /// `river_control`, which cancels the worker's token; the job ends `cancelled` when the
    /// worker returns, and a retry or snooze it asks for becomes a cancel. Finalized jobs are
    /// returned unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotFound`] when no job has the id.
    /// A row that cannot be decoded is [`Error::Driver`] with
    /// [`DriverError::UndecodableJob`](millrace_driver::DriverError::UndecodableJob), after the
    /// change was applied: only reading the row back failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let job = client.job_cancel(millrace::JobId(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_cancel(&self, id: JobId) -> Result<JobRow> {
        self.inner
            .driver
            .executor()
            .job_cancel(&JobCancelParams { id, now: None })
            .await?
            .ok_or(Error::JobNotFound(id))
    }

    /// [`Client::job_cancel`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_cancel`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// client.job_cancel_tx(&mut tx, millrace::JobId(1)).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_cancel_tx(&self, conn: &mut D::Conn, id: JobId) -> Result<JobRow> {
        self.inner
            .driver
            .conn_executor(conn)
            .job_cancel(&JobCancelParams { id, now: None })
            .await?
            .ok_or(Error::JobNotFound(id))
    }

    /// Makes a job that is not running available now, as River's `JobRetry`: a job that used
    /// all its attempts gets one more. A running job is returned unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotFound`] when no job has the id.
    /// A row that cannot be decoded is [`Error::Driver`] with
    /// [`DriverError::UndecodableJob`](millrace_driver::DriverError::UndecodableJob), after the
    /// change was applied: only reading the row back failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let job = client.job_retry(millrace::JobId(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_retry(&self, id: JobId) -> Result<JobRow> {
        self.inner
            .driver
            .executor()
            .job_retry(&JobRetryParams {
                id,
                now: self.inner.config.fetch_now(),
            })
            .await?
            .ok_or(Error::JobNotFound(id))
    }

    /// [`Client::job_retry`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_retry`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// client.job_retry_tx(&mut tx, millrace::JobId(1)).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_retry_tx(&self, conn: &mut D::Conn, id: JobId) -> Result<JobRow> {
        self.inner
            .driver
            .conn_executor(conn)
            .job_retry(&JobRetryParams {
                id,
                now: self.inner.config.fetch_now(),
            })
            .await?
            .ok_or(Error::JobNotFound(id))
    }

    /// Deletes a job that is not running, returning its last row.
    ///
    /// # Errors
    ///
    /// [`Error::JobRunning`] for a running job (cancel it first), [`Error::JobNotFound`] when
    /// no job has the id.
    /// A row that cannot be decoded is [`Error::Driver`] with
    /// [`DriverError::UndecodableJob`](millrace_driver::DriverError::UndecodableJob), after the
    /// change was applied: only reading the row back failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let deleted = client.job_delete(millrace::JobId(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_delete(&self, id: JobId) -> Result<JobRow> {
        delete(&mut self.inner.driver.executor(), id).await
    }

    /// [`Client::job_delete`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_delete`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// client.job_delete_tx(&mut tx, millrace::JobId(1)).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_delete_tx(&self, conn: &mut D::Conn, id: JobId) -> Result<JobRow> {
        delete(&mut self.inner.driver.conn_executor(conn), id).await
    }

    /// Deletes the jobs the filters match, running jobs excepted, at most `params.limit` per
    /// call, returning their last rows. Call again for the next batch. A deleted row that
    /// cannot be decoded is deleted all the same and listed in
    /// [`JobDeleteManyResult::undecodable`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when no filter is set (unless
    /// [`JobListParams::unfiltered`] says so) or the limit is out of range.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::{JobListParams, JobState};
    /// let deleted = client
    ///     .job_delete_many(JobListParams::new().states([JobState::Discarded]).limit(1000))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_delete_many(&self, params: JobListParams) -> Result<JobDeleteManyResult> {
        delete_many(&mut self.inner.driver.executor(), params).await
    }

    /// [`Client::job_delete_many`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_delete_many`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// client.job_delete_many_tx(&mut tx, millrace::JobListParams::new().kinds(["old"])).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_delete_many_tx(
        &self,
        conn: &mut D::Conn,
        params: JobListParams,
    ) -> Result<JobDeleteManyResult> {
        delete_many(&mut self.inner.driver.conn_executor(conn), params).await
    }

    /// Changes a job outside a run (River's `JobUpdate`): merges metadata, whatever the job's
    /// state.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotFound`]; [`Error::InvalidArgument`] for metadata that is not an object.
    /// A row that cannot be decoded is [`Error::Driver`] with
    /// [`DriverError::UndecodableJob`](millrace_driver::DriverError::UndecodableJob), after the
    /// change was applied: only reading the row back failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::JobUpdateParams;
    /// let job = client
    ///     .job_update(millrace::JobId(1), JobUpdateParams::new().metadata(serde_json::json!({ "note": "checked" })))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_update(&self, id: JobId, params: JobUpdateParams) -> Result<JobRow> {
        update(&mut self.inner.driver.executor(), id, params).await
    }

    /// [`Client::job_update`] on the caller's connection or transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::job_update`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// client.job_update_tx(&mut tx, millrace::JobId(1), millrace::JobUpdateParams::new()).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn job_update_tx(
        &self,
        conn: &mut D::Conn,
        id: JobId,
        params: JobUpdateParams,
    ) -> Result<JobRow> {
        update(&mut self.inner.driver.conn_executor(conn), id, params).await
    }
}
