//! Working one job without starting the client (River's `rivertest.Worker`), and completing a
//! job in the worker's own transaction.

use std::sync::Arc;

use millrace_driver::{AttemptFence, Driver, Executor, JobCompleteParams, JobOutcome};
use millrace_types::{JobId, JobRow};

use super::Client;
use super::handle::ClientHandle;
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::insert_opts::InsertOpts;
use crate::worker::{Worker, Workers};

impl<D: Driver> Client<D> {
    /// Completes a running job on the caller's connection, fenced on its attempt; see
    /// [`Job::complete_tx`](crate::Job::complete_tx).
    pub(crate) async fn complete_tx(
        &self,
        conn: &mut D::Conn,
        id: JobId,
        attempt: i16,
    ) -> Result<()> {
        let done = self
            .inner
            .driver
            .conn_executor(conn)
            .job_complete_many(&[JobCompleteParams::new(
                AttemptFence::new(id, attempt),
                JobOutcome::Completed,
            )])
            .await?;
        if done.is_empty() {
            return Err(Error::JobNotRunning(id));
        }
        Ok(())
    }
}

/// The result of [`Client::work_one_tx`]: how the attempt ended and the job's row after it.
#[derive(Debug, Clone)]
pub struct WorkedJob {
    /// How the attempt ended.
    pub kind: EventKind,
    /// The job's row after its outcome was stored.
    pub job: JobRow,
}

impl<D: Driver> Client<D> {
    /// Inserts one job and works it with `worker` on the caller's connection or transaction,
    /// without starting the client: the test harness of River's `rivertest.Worker`. The
    /// insert, the attempt and its outcome are all in the caller's transaction, so a test can
    /// roll everything back. The client's timeout and retry policy apply.
    ///
    /// # Errors
    ///
    /// As [`Client::insert_tx`], and [`Error::Driver`] when the database fails. A failing or
    /// panicking worker is not an error here: its outcome is in the returned [`WorkedJob`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millrace::{Job, JobArgs, WorkError, Worker, EventKind};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
    /// # impl JobArgs for A { const KIND: &'static str = "a"; }
    /// # struct AWorker;
    /// # impl Worker for AWorker {
    /// #     type Args = A;
    /// #     async fn work(&self, _job: Job<A>) -> Result<(), WorkError> { Ok(()) }
    /// # }
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// let worked = client.work_one_tx(&mut tx, AWorker, A {}, None).await?;
    /// assert_eq!(worked.kind, EventKind::JobCompleted);
    /// tx.rollback().await?;
    /// # Ok(()) }
    /// ```
    pub async fn work_one_tx<W: Worker>(
        &self,
        conn: &mut D::Conn,
        worker: W,
        args: W::Args,
        opts: Option<InsertOpts>,
    ) -> Result<WorkedJob> {
        let inserted = self.insert_tx(&mut *conn, args, opts).await?;
        let id = inserted.job.id;
        let row = self
            .inner
            .driver
            .conn_executor(&mut *conn)
            .job_start_by_id(id, &self.inner.config.id)
            .await?
            .ok_or(Error::JobNotRunning(id))?;
        let mut workers = Workers::new();
        workers.register(worker)?;
        let hard_stop = tokio_util::sync::CancellationToken::new();
        let client_any = ClientHandle::erased(self);
        let env = crate::runtime::job_executor::ExecEnv {
            workers: &workers,
            config: &self.inner.config,
            hard_stop: &hard_stop,
            client_any: &client_any,
        };
        let run = Arc::new(crate::worker::JobRunState::default());
        let (outcome, _) =
            crate::runtime::job_executor::execute(&env, &row, hard_stop.child_token(), run.clone())
                .await;
        let snoozed = matches!(outcome, JobOutcome::Snoozed { .. });
        let returned = matches!(outcome, JobOutcome::Returned);
        self.inner
            .driver
            .conn_executor(&mut *conn)
            .job_complete_many(&[JobCompleteParams::new(&row, outcome)
                .metadata_merge(crate::runtime::job_executor::output_merge(&run))])
            .await?;
        let job = self
            .inner
            .driver
            .conn_executor(conn)
            .job_get_by_id(id)
            .await?
            .ok_or(Error::JobNotFound(id))?;
        Ok(WorkedJob {
            kind: EventKind::from_state(job.state, snoozed, returned),
            job,
        })
    }
}
