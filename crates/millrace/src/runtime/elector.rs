//! Leader election on a leader row: River's `river_leader` (shared with River's clients, for
//! River's maintenance) or Millrace's `millrace_leader` (Millrace clients only, for Millrace's
//! own fleet work).
//!
//! Mirrors River's elector: a follower deletes an expired row and inserts itself; the leader
//! re-asserts before the TTL runs out and steps down when it cannot; it resigns on stop.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{Driver, Executor, LeaderParams, LeaderTable};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::shared::{LeaderSignals, Shared};

/// The timing of one election.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ElectionTiming {
    /// How long a leadership lasts unless re-asserted.
    pub(crate) ttl: Duration,
    /// How often the leader re-asserts.
    pub(crate) reelect_every: Duration,
    /// How often a follower tries (plus up to `retry_jitter`).
    pub(crate) retry_every: Duration,
    pub(crate) retry_jitter: Duration,
}

impl ElectionTiming {
    /// River's: TTL 15 s, re-assert every 5 s, followers every 5 to 6 s.
    pub(crate) const RIVER: ElectionTiming = ElectionTiming {
        ttl: Duration::from_secs(15),
        reelect_every: Duration::from_secs(5),
        retry_every: Duration::from_secs(5),
        retry_jitter: Duration::from_secs(1),
    };

    /// Millrace's lease: at most 5 s and never longer than the heartbeat lease, checked
    /// about every second (more often for shorter leases), so that a dead leaseholder's own
    /// jobs are rescued within about the heartbeat lease too.
    pub(crate) fn millrace(heartbeat_lease: Duration) -> ElectionTiming {
        let ttl = heartbeat_lease.min(Duration::from_secs(5));
        let step = (ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(1));
        ElectionTiming {
            ttl,
            reelect_every: step,
            retry_every: step,
            retry_jitter: step / 5,
        }
    }
}

pub(crate) struct Elector<D: Driver> {
    shared: Arc<Shared<D>>,
    table: LeaderTable,
    timing: ElectionTiming,
    signals: Arc<LeaderSignals>,
    is_leader: watch::Sender<bool>,
}

impl<D: Driver> Elector<D> {
    pub(crate) fn new(
        shared: Arc<Shared<D>>,
        table: LeaderTable,
        timing: ElectionTiming,
        signals: Arc<LeaderSignals>,
        is_leader: watch::Sender<bool>,
    ) -> Self {
        Elector {
            shared,
            table,
            timing,
            signals,
            is_leader,
        }
    }

    fn params(&self) -> LeaderParams {
        LeaderParams {
            table: self.table,
            leader_id: self.shared.config.id.clone(),
            ttl: self.timing.ttl,
        }
    }

    #[tracing::instrument(skip_all, fields(table = ?self.table))]
    pub(crate) async fn run(self, stop: CancellationToken) {
        // When elected, when last re-asserted, and how many resignation requests had arrived.
        let mut elected: Option<(Timestamp, Instant, u64)> = None;
        loop {
            match elected {
                None => {
                    match self
                        .shared
                        .driver
                        .executor()
                        .leader_attempt_elect(&self.params())
                        .await
                    {
                        Ok(Some(row)) => {
                            tracing::info!(client = %self.shared.config.id, "elected leader");
                            elected =
                                Some((row.elected_at, Instant::now(), self.signals.requests()));
                            self.is_leader.send_replace(true);
                            continue;
                        }
                        Ok(None) => {}
                        Err(err) => tracing::debug!(%err, "leader election attempt failed"),
                    }
                    let jitter =
                        rand::rng().random_range(Duration::ZERO..=self.timing.retry_jitter);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(self.timing.retry_every + jitter) => {}
                        // River's followers try within 50 ms of a resignation.
                        _ = self.signals.resigned.notified() => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        // A request to resign is for the leader; a follower drops it, so it
                        // does not linger and unseat this client once it leads.
                        _ = self.signals.resign_requested.notified() => {}
                    }
                }
                Some((elected_at, last_ok, seen)) => {
                    let resign_requested = tokio::select! {
                        _ = stop.cancelled() => {
                            self.step_down(true).await;
                            return;
                        }
                        _ = tokio::time::sleep(self.timing.reelect_every) => false,
                        // A wake-up left over from before the election carries no new request.
                        _ = self.signals.resign_requested.notified() => self.signals.requests() > seen,
                    };
                    if resign_requested {
                        tracing::info!("leader resigning on request");
                        self.step_down(true).await;
                        elected = None;
                        // Give another client the chance to win before trying again.
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(self.timing.retry_every) => {}
                        }
                        continue;
                    }
                    // A call that hangs counts as failed, so stepping down is not delayed.
                    let reelected = tokio::time::timeout(
                        self.timing.reelect_every,
                        self.shared
                            .driver
                            .executor()
                            .leader_attempt_reelect(&self.params(), elected_at),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(millrace_driver::DriverError::Connection(
                            "re-asserting leadership timed out".into(),
                        ))
                    });
                    match reelected {
                        Ok(Some(_)) => elected = Some((elected_at, Instant::now(), seen)),
                        Ok(None) => {
                            tracing::warn!("lost leadership");
                            self.step_down(false).await;
                            elected = None;
                        }
                        Err(err) => {
                            // Keep leading while the lease certainly holds; step down a second
                            // before it could have run out.
                            if last_ok.elapsed() + Duration::from_secs(1) >= self.timing.ttl {
                                tracing::warn!(%err, "could not re-assert leadership in time; stepping down");
                                self.step_down(false).await;
                                elected = None;
                            } else {
                                tracing::debug!(%err, "re-asserting leadership failed; retrying");
                            }
                        }
                    }
                }
            }
        }
    }

    async fn step_down(&self, resign: bool) {
        self.is_leader.send_replace(false);
        if resign {
            let id = &self.shared.config.id;
            if let Err(err) = self
                .shared
                .driver
                .executor()
                .leader_resign(self.table, id)
                .await
            {
                tracing::debug!(%err, "resigning leadership failed; it will expire");
            }
        }
    }
}
