//! How a job and a persistent instance reach the client that runs them: the runtime holds
//! the client only as a type-erased weak handle (it does not know the client's type, and must
//! not own the client that owns it), and `Job::client`, `Job::complete_tx` and
//! `PersistentContext::client` turn it back into a `Client` here.
//!
//! These methods live with the client rather than beside `Job` and `PersistentContext` so that
//! the API floor (`worker.rs`, `persistent.rs`) never imports `client/`, which imports the
//! floor: the crate's module graph keeps no circle.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use millrace_driver::Driver;

use super::{Client, ClientInner};
use crate::error::{Error, Result};
use crate::persistent::PersistentContext;
use crate::worker::Job;

/// The client as its jobs and persistent instances reach it ([`Job::client`]), type-erased in
/// the runtime, which does not know the client's type.
///
/// Weak, so that the runtime, which the client owns, does not own the client in turn: no
/// `Arc` cycle that only `stop()` would break.
///
/// [`Job::client`]: crate::worker::Job::client
pub(crate) struct ClientHandle<D: Driver>(Weak<ClientInner<D>>);

impl<D: Driver> ClientHandle<D> {
    /// The erased handle of `client`.
    pub(crate) fn erased(client: &Client<D>) -> Arc<dyn Any + Send + Sync> {
        Arc::new(ClientHandle(Arc::downgrade(&client.inner)))
    }

    /// The client behind an erased handle; `caller` names the API in the error.
    pub(crate) fn client(erased: &(dyn Any + Send + Sync), caller: &str) -> Result<Client<D>> {
        let handle = erased
            .downcast_ref::<ClientHandle<D>>()
            .ok_or_else(|| Error::Config(format!("{caller} asked for another driver type")))?;
        let inner = handle.0.upgrade().ok_or_else(|| {
            Error::Config(format!("{caller}: every handle of the client was dropped"))
        })?;
        Ok(Client { inner })
    }
}

impl<A> Job<A> {
    /// The client working this job, to insert follow-up jobs or complete the job in a
    /// transaction of the worker's own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `D` is not the client's driver type.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millrace::{Job, JobArgs, WorkError};
    /// # use millrace_postgres::PgDriver;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
    /// # impl JobArgs for A { const KIND: &'static str = "a"; }
    /// # #[derive(serde::Serialize)] struct Next {}
    /// # impl JobArgs for Next { const KIND: &'static str = "next"; }
    /// async fn work(job: Job<A>) -> Result<(), WorkError> {
    ///     let client = job.client::<PgDriver>()?;
    ///     client.insert(Next {}, None).await?;
    ///     Ok(())
    /// }
    /// ```
    pub fn client<D: Driver>(&self) -> Result<Client<D>> {
        ClientHandle::client(self.ctx.client.as_ref(), "Job::client")
    }

    /// Completes the job on the caller's transaction, so the worker's writes and the job's
    /// completion commit together (or not at all). The completion is fenced like any other:
    /// it applies only while the job is still running at this attempt.
    ///
    /// # Errors
    ///
    /// [`Error::JobNotRunning`] when the job is no longer running at this attempt (it was
    /// rescued or cancelled meanwhile); [`Error::Driver`] when the database fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use millrace::{Job, JobArgs, WorkError};
    /// # use millrace_postgres::PgDriver;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct A {}
    /// # impl JobArgs for A { const KIND: &'static str = "a"; }
    /// async fn work(job: Job<A>) -> Result<(), WorkError> {
    ///     let client = job.client::<PgDriver>()?;
    ///     let mut tx = client.driver().pool().begin().await?;
    ///     sqlx::query("INSERT INTO audit (note) VALUES ('done')").execute(&mut *tx).await?;
    ///     job.complete_tx::<PgDriver>(&mut tx).await?;
    ///     tx.commit().await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn complete_tx<D: Driver>(&self, conn: &mut D::Conn) -> Result<()> {
        let client = self.client::<D>()?;
        client
            .complete_tx(conn, self.row.id, self.row.attempt)
            .await?;
        self.ctx.run.completed_in_tx.store(true, Ordering::Release);
        Ok(())
    }
}

impl PersistentContext {
    /// The client running the instance.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `D` is not the client's driver type.
    pub fn client<D: Driver>(&self) -> Result<Client<D>> {
        ClientHandle::client(self.client.as_ref(), "PersistentContext::client")
    }
}
