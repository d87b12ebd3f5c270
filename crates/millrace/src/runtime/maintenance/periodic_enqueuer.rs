//! The periodic-job enqueuer: inserts each periodic job's runs when they are due, on the
//! Millrace leaseholder. The schedules themselves, and why the next run of a job with an id is
//! stored, are described with the registration API in `crate::periodic`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::insert::Inserter;
use crate::periodic::{PeriodicJob, PeriodicRegistry};

/// Inserts each periodic job's runs when they are due. Runs on the Millrace leaseholder.
#[derive(Clone)]
pub(crate) struct PeriodicEnqueuer<D: Driver> {
    driver: D,
    /// The client's insert pipeline: a run's job is inserted as a user's insert would be.
    inserter: Arc<Inserter<D>>,
    /// The client's periodic jobs, which may change while it runs.
    registry: Arc<PeriodicRegistry>,
    clock: Clock,
    /// The next run of each periodic job this leaseholder schedules, by handle.
    next: HashMap<u64, Timestamp>,
}

/// How long the enqueuer sleeps at most, so a failed pass is retried.
const MAX_SLEEP: Duration = Duration::from_secs(1);

impl<D: Driver> PeriodicEnqueuer<D> {
    pub(crate) fn new(
        driver: D,
        inserter: Arc<Inserter<D>>,
        registry: Arc<PeriodicRegistry>,
        clock: Clock,
    ) -> Self {
        PeriodicEnqueuer {
            driver,
            inserter,
            registry,
            clock,
            next: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let registry = self.registry.clone();
        let mut failing = false;
        loop {
            let jobs = registry.snapshot();
            match self.pass(&jobs).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("periodic job scheduling works again");
                    }
                    failing = false;
                }
                Err(err) => {
                    // Once per outage, not once per pass.
                    if !failing {
                        tracing::warn!(%err, "periodic job scheduling failed; retrying");
                    }
                    failing = true;
                    self.next.clear();
                }
            }
            let now = self.clock.now();
            let sleep = self
                .next
                .values()
                .min()
                .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = registry.changed.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn pass(&mut self, jobs: &[(u64, PeriodicJob)]) -> millrace_driver::Result<()> {
        let now = self.clock.now();
        self.next
            .retain(|handle, _| jobs.iter().any(|(h, _)| h == handle));
        let new: Vec<&(u64, PeriodicJob)> = jobs
            .iter()
            .filter(|(h, _)| !self.next.contains_key(h))
            .collect();
        if !new.is_empty() {
            let ids: Vec<String> = new.iter().filter_map(|(_, j)| j.id.clone()).collect();
            let stored: HashMap<String, Timestamp> = if ids.is_empty() {
                HashMap::new()
            } else {
                self.driver
                    .executor()
                    .periodic_job_get(&ids)
                    .await?
                    .into_iter()
                    .collect()
            };
            for (handle, job) in new {
                let first = match job.id.as_ref().and_then(|id| stored.get(id)) {
                    Some(at) => *at,
                    None if job.run_on_start => now,
                    None => job.schedule.next_after(now).unwrap_or(Timestamp::MAX),
                };
                if let Some(id) = &job.id {
                    if !stored.contains_key(id) {
                        let mut exec = self.driver.executor();
                        if !exec.periodic_job_set_next(id, None, first).await? {
                            // Stored meanwhile by another client: read it next pass.
                            continue;
                        }
                    }
                }
                self.next.insert(*handle, first);
            }
        }
        for (handle, job) in jobs {
            let Some(due) = self.next.get(handle).copied() else {
                continue;
            };
            if due > now {
                continue;
            }
            // Runs missed while nobody scheduled coalesce into this one.
            let following = job.schedule.next_after(now).unwrap_or(Timestamp::MAX);
            match &job.id {
                Some(id) => {
                    let driver = self.driver.clone();
                    let mut tx = driver.begin().await?;
                    let moved = driver
                        .conn_executor(D::tx_conn(&mut tx))
                        .periodic_job_set_next(id, Some(due), following)
                        .await?;
                    if moved {
                        let mut exec = driver.conn_executor(D::tx_conn(&mut tx));
                        if let Err(err) = self
                            .inserter
                            .insert_many_on(&mut exec, [job.params()])
                            .await
                        {
                            // An invalid job is the user's to fix; keep the schedule moving.
                            tracing::error!(%err, periodic_job_id = id, "periodic job could not be inserted");
                        }
                        drop(exec);
                        D::commit(tx).await?;
                        self.next.insert(*handle, following);
                    } else {
                        // Another client ran it: take the stored next run from the database.
                        drop(tx);
                        self.next.remove(handle);
                    }
                }
                None => {
                    if let Err(err) = self.inserter.insert_many([job.params()]).await {
                        tracing::error!(%err, "periodic job could not be inserted");
                    }
                    self.next.insert(*handle, following);
                }
            }
        }
        Ok(())
    }
}
