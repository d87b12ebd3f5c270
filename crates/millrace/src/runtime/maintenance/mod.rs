//! Services that keep the jobs table moving and tidy, each started while this client holds
//! the lease it needs: River's maintenance under `river_leader` (a River client may hold it
//! instead, and then runs its own), Millrace's fleet work under `millrace_leader`.

pub(crate) mod client_rescuer;
pub(crate) mod job_cleaner;
pub(crate) mod job_rescuer;
pub(crate) mod job_scheduler;
pub(crate) mod periodic_enqueuer;
pub(crate) mod queue_cleaner;
pub(crate) mod reindexer;
pub(crate) mod sequence_promoter;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A service's run loop.
pub(crate) type ServiceFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts a service's run loop under its own stop token, once per leadership won.
///
/// Each service is a struct of what it uses, made once when the runtime starts (as River's
/// services get per-service config structs, not a shared bag of the client's state), and each
/// start runs a fresh clone of it (see [`restartable`]).
///
/// A service that wakes this client's producers holds them as a `Weak<dyn LocalQueues>`, not
/// an `Arc`. The strong handle would be the runtime's whole shared state: no cycle today, since
/// that state holds no service (only their supervising task does), but it would keep the state
/// alive as long as a service task lives, and it would become a cycle as soon as the state held
/// a service, as it does the inserter (whose handle is weak for that reason). Weak, a wake
/// after the runtime is gone does nothing.
pub(crate) type ServiceFn = Box<dyn Fn(CancellationToken) -> ServiceFuture + Send + Sync>;

/// `service`, run by `run` on a clone of it at each start.
pub(crate) fn restartable<S, F, Fut>(service: S, run: F) -> ServiceFn
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |stop| Box::pin(run(service.clone(), stop)))
}

/// Runs `services` while `is_leader` says so, and stops them when it no longer does.
pub(crate) async fn supervise(
    mut is_leader: watch::Receiver<bool>,
    services: Vec<ServiceFn>,
    stop: CancellationToken,
) {
    let mut running: Option<(CancellationToken, JoinSet<()>)> = None;
    loop {
        let leading = *is_leader.borrow_and_update();
        match (leading, running.is_some()) {
            (true, false) => {
                let token = stop.child_token();
                let mut set = JoinSet::new();
                for service in &services {
                    set.spawn(service(token.clone()));
                }
                running = Some((token, set));
            }
            (false, true) => {
                if let Some((token, mut set)) = running.take() {
                    token.cancel();
                    while set.join_next().await.is_some() {}
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = is_leader.changed() => if changed.is_err() { break },
        }
    }
    if let Some((token, mut set)) = running.take() {
        token.cancel();
        while set.join_next().await.is_some() {}
    }
}

/// Runs `pass` every `interval` until `stop`, logging a failure streak once: a warning when
/// it starts, an info line when a pass works again, the failures between at debug.
pub(crate) async fn every<F, Fut>(
    name: &'static str,
    interval: std::time::Duration,
    stop: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = millrace_driver::Result<()>>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match pass().await {
            Ok(()) if failing => {
                tracing::info!(service = name, "maintenance works again");
                failing = false;
            }
            Ok(()) => {}
            Err(err) if failing => {
                tracing::debug!(%err, service = name, "maintenance pass failed again");
            }
            Err(err) => {
                tracing::warn!(
                    %err,
                    service = name,
                    "maintenance pass failed; retrying each interval"
                );
                failing = true;
            }
        }
    }
}
