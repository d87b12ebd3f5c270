//! The state a started client's tasks share, and starting and stopping them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_driver::Driver;
use millrace_types::JobId;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use millrace_driver::LeaderTable;

use crate::completer::{Completer, Completion};
use crate::event::Event;
use crate::heartbeat::Heartbeat;
use crate::leader::{ElectionTiming, Elector, LeaderSignals};
use crate::maintenance::{self, ServiceFn};
use crate::persistent::{Keeper, PersistentEntry};
use crate::producer::Producer;
use crate::{QueueConfig, RetryPolicy, TestClock, Workers};

/// The runtime settings of a client, fixed at build time.
#[derive(Clone)]
pub(crate) struct RuntimeConfig {
    pub(crate) id: String,
    pub(crate) fetch_cooldown: Duration,
    pub(crate) fetch_poll_interval: Duration,
    pub(crate) poll_only: bool,
    pub(crate) job_timeout: Option<Duration>,
    pub(crate) cancel_grace: Duration,
    /// How long a stop waits on the database once the jobs have ended.
    pub(crate) stop_database_timeout: Duration,
    pub(crate) retry_policy: Arc<dyn RetryPolicy>,
    pub(crate) schedule_interval: Duration,
    pub(crate) queue_touch_interval: Duration,
    pub(crate) completer_batch_max: usize,
    pub(crate) completer_flush_at: usize,
    pub(crate) completer_flush_interval: Duration,
    pub(crate) heartbeat_lease: Duration,
    pub(crate) maintenance: MaintenanceConfig,
    pub(crate) work_middleware: Vec<Arc<dyn crate::WorkMiddleware>>,
    pub(crate) metric_hooks: Vec<Arc<dyn crate::MetricHook>>,
    pub(crate) error_handler: Option<Arc<dyn crate::ErrorHandler>>,
    /// The time the client works by, when a test set one; else the system clock.
    pub(crate) clock: Option<TestClock>,
}

/// Settings of the maintenance services.
#[derive(Debug, Clone)]
pub(crate) struct MaintenanceConfig {
    pub(crate) rescue_stuck_jobs_after: Option<Duration>,
    pub(crate) rescuer_interval: Duration,
    pub(crate) cleaner_interval: Duration,
    pub(crate) completed_retention: Option<Duration>,
    pub(crate) cancelled_retention: Option<Duration>,
    pub(crate) discarded_retention: Option<Duration>,
    pub(crate) reindexer: bool,
}

impl RuntimeConfig {
    /// Now: the test clock's time when one is set, else the system clock's.
    pub(crate) fn now(&self) -> jiff::Timestamp {
        match &self.clock {
            Some(clock) => clock.now(),
            None => jiff::Timestamp::now(),
        }
    }

    /// The time a fetch is due by: the test clock's, or `None` for the database's `now()`.
    pub(crate) fn fetch_now(&self) -> Option<jiff::Timestamp> {
        self.clock.as_ref().map(TestClock::now)
    }

    /// River's RescueStuckJobsAfter: as configured, else the job timeout plus an hour, else an
    /// hour.
    pub(crate) fn rescue_stuck_jobs_after(&self) -> Duration {
        let hour = Duration::from_secs(3600);
        self.maintenance
            .rescue_stuck_jobs_after
            .unwrap_or(match self.job_timeout {
                Some(timeout) if timeout != Duration::MAX => timeout.saturating_add(hour),
                _ => hour,
            })
    }
}

/// A job this client fetched and has not yet recorded an outcome for.
pub(crate) struct Held {
    pub(crate) queue: String,
    pub(crate) token: CancellationToken,
}

/// One queue's producer, as the rest of the client reaches it.
pub(crate) struct ProducerHandle {
    pub(crate) wake: Arc<Notify>,
    pub(crate) paused: watch::Sender<bool>,
}

/// What a started client's tasks share.
pub(crate) struct Shared<D: Driver> {
    pub(crate) driver: D,
    pub(crate) config: RuntimeConfig,
    pub(crate) workers: Workers,
    pub(crate) held: Mutex<HashMap<JobId, Held>>,
    pub(crate) producers: Mutex<HashMap<String, ProducerHandle>>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) completions: mpsc::Sender<Completion>,
    /// The client, type-erased, for `Job::client`.
    pub(crate) client_any: Arc<dyn Any + Send + Sync>,
    /// Fires on a hard stop: every job's token, then aborts after the grace period.
    pub(crate) hard_stop: CancellationToken,
    /// Fires on any stop: producers stop fetching.
    pub(crate) soft_stop: CancellationToken,
    /// Bumped by every pause and resume this client is told of.
    pub(crate) pause_generation: std::sync::atomic::AtomicU64,
    /// Wakes the persistent-worker keepers of a queue when its row becomes available.
    pub(crate) keeper_wakes: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
    /// Notifications for the River leader elector.
    pub(crate) river_leader_signals: Arc<LeaderSignals>,
    /// Each producer's last fetch, for the health report.
    pub(crate) fetches: Mutex<std::collections::BTreeMap<String, crate::health::FetchRecord>>,
    /// The persistent workers this client runs an instance of now, for the health report.
    pub(crate) persistent_held: Mutex<std::collections::BTreeSet<String>>,
}

impl<D: Driver> Shared<D> {
    /// Wakes every producer, e.g. after notifications may have been missed.
    pub(crate) fn wake_all(&self) {
        for handle in self.producers.lock().expect("lock poisoned").values() {
            handle.wake.notify_one();
        }
    }

    pub(crate) fn wake_queue(&self, queue: &str) {
        if let Some(handle) = self.producers.lock().expect("lock poisoned").get(queue) {
            handle.wake.notify_one();
        }
        if let Some(wakes) = self.keeper_wakes.lock().expect("lock poisoned").get(queue) {
            for wake in wakes {
                wake.notify_one();
            }
        }
    }

    /// How many pauses and resumes this client has been told of, so a queue refresh can tell
    /// whether its read is already stale.
    pub(crate) fn pause_generation(&self) -> u64 {
        self.pause_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Applies a pause or resume this client was told of (API call or notification).
    pub(crate) fn told_paused(&self, queue: &str, paused: bool) {
        self.pause_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.set_paused(queue, paused);
    }

    /// Pauses or resumes one queue (or all, for `*`) on this client.
    pub(crate) fn set_paused(&self, queue: &str, paused: bool) {
        let producers = self.producers.lock().expect("lock poisoned");
        for (name, handle) in producers.iter() {
            if queue == "*" || queue == name {
                let changed = handle.paused.send_if_modified(|p| {
                    let changed = *p != paused;
                    *p = paused;
                    changed
                });
                if changed {
                    let _ = self.events.send(if paused {
                        Event::QueuePaused {
                            queue: name.clone(),
                        }
                    } else {
                        Event::QueueResumed {
                            queue: name.clone(),
                        }
                    });
                }
            }
        }
    }

    /// Fires every running job's token (self-fencing when the heartbeat cannot be renewed).
    pub(crate) fn cancel_all_jobs(&self) {
        for held in self.held.lock().expect("lock poisoned").values() {
            held.token.cancel();
        }
    }

    /// Fires a running job's token (a remote cancel).
    pub(crate) fn cancel_job(&self, id: JobId) {
        if let Some(held) = self.held.lock().expect("lock poisoned").get(&id) {
            held.token.cancel();
        }
    }
}

/// Held by each producer until its jobs have ended, and by each persistent-worker keeper
/// until its instance has: a stop waits on the database only after every one is dropped.
#[derive(Clone)]
pub(crate) struct WorkGuard(#[allow(dead_code)] mpsc::Sender<()>);

/// A started client's tasks.
pub(crate) struct Runtime<D: Driver> {
    pub(crate) shared: Arc<Shared<D>>,
    /// Cloned into every producer and keeper; see [`WorkGuard`].
    work_guard: WorkGuard,
    /// Closes once every [`WorkGuard`] is dropped.
    work_ended: mpsc::Receiver<()>,
    pub(crate) producers: Vec<JoinHandle<()>>,
    pub(crate) keepers: Vec<JoinHandle<()>>,
    pub(crate) completer: JoinHandle<()>,
    pub(crate) completer_done: CancellationToken,
    pub(crate) services: Vec<JoinHandle<()>>,
    pub(crate) services_stop: CancellationToken,
    /// Whether this client leads River's maintenance, for the health report.
    pub(crate) river_leader: watch::Receiver<bool>,
    /// Whether this client holds Millrace's lease, for the health report.
    pub(crate) millrace_leader: watch::Receiver<bool>,
}

impl<D: Driver> Runtime<D> {
    pub(crate) fn start(
        driver: D,
        config: RuntimeConfig,
        workers: Workers,
        queues: &[(String, QueueConfig)],
        persistent: &[PersistentEntry],
        events: broadcast::Sender<Event>,
        client_any: Arc<dyn Any + Send + Sync>,
    ) -> (Self, Option<tokio::sync::oneshot::Receiver<()>>) {
        crate::panic_trace::install_hook();
        let total_workers: usize = queues.iter().map(|(_, q)| q.max_workers).sum();
        // Backpressure: once this many outcomes wait, finished jobs hold their slots and the
        // producers stop fetching until the completer catches up.
        let capacity = (total_workers * 2).max(config.completer_batch_max);
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            driver,
            config,
            workers,
            held: Mutex::new(HashMap::new()),
            producers: Mutex::new(HashMap::new()),
            events,
            completions: tx,
            client_any,
            hard_stop: CancellationToken::new(),
            soft_stop: CancellationToken::new(),
            river_leader_signals: Arc::new(LeaderSignals::default()),
            keeper_wakes: Mutex::new(HashMap::new()),
            pause_generation: std::sync::atomic::AtomicU64::new(0),
            fetches: Mutex::new(Default::default()),
            persistent_held: Mutex::new(Default::default()),
        });
        let completer_done = CancellationToken::new();
        let completer =
            tokio::spawn(Completer::new(shared.clone(), rx).run(completer_done.clone()));
        let (work_guard, work_ended) = mpsc::channel(1);
        let mut runtime = Runtime {
            work_guard: WorkGuard(work_guard),
            work_ended,
            producers: Vec::new(),
            keepers: Vec::new(),
            completer,
            completer_done,
            services: Vec::new(),
            services_stop: CancellationToken::new(),
            // Replaced by the electors' own once they start, below.
            river_leader: watch::channel(false).1,
            millrace_leader: watch::channel(false).1,
            shared,
        };
        for (name, queue) in queues {
            runtime.add_queue(name, queue);
        }
        for entry in persistent {
            let wake = Arc::new(Notify::new());
            runtime
                .shared
                .keeper_wakes
                .lock()
                .expect("lock poisoned")
                .entry(entry.opts.queue.clone())
                .or_default()
                .push(wake.clone());
            let keeper = Keeper::new(
                runtime.shared.clone(),
                entry.clone(),
                wake,
                runtime.work_guard.clone(),
            );
            runtime.keepers.push(tokio::spawn(keeper.run()));
        }
        let stop = runtime.services_stop.clone();
        let mut listening = None;
        if !runtime.shared.config.poll_only && runtime.shared.driver.supports_listen_notify() {
            let (ready, ready_rx) = tokio::sync::oneshot::channel();
            let notifier = crate::notifier::Notifier::new(runtime.shared.clone(), ready);
            runtime
                .services
                .push(tokio::spawn(notifier.run(stop.clone())));
            listening = Some(ready_rx);
        }
        runtime.start_fleet_services(&stop);
        (runtime, listening)
    }

    /// Heartbeats, the two leader elections, and the services each leadership runs.
    fn start_fleet_services(&mut self, stop: &CancellationToken) {
        let shared = &self.shared;
        self.services.push(tokio::spawn(
            Heartbeat::new(shared.clone()).run(stop.clone()),
        ));

        let (river_tx, river_rx) = watch::channel(false);
        self.river_leader = river_rx.clone();
        let river = Elector::new(
            shared.clone(),
            LeaderTable::River,
            ElectionTiming::RIVER,
            shared.river_leader_signals.clone(),
            river_tx,
        );
        self.services.push(tokio::spawn(river.run(stop.clone())));
        let river_services: Vec<ServiceFn<D>> = vec![
            maintenance::job_scheduler::service::<D>,
            maintenance::job_rescuer::service::<D>,
            maintenance::job_cleaner::service::<D>,
            maintenance::queue_cleaner::service::<D>,
            maintenance::reindexer::service::<D>,
        ];
        self.services.push(tokio::spawn(maintenance::supervise(
            shared.clone(),
            river_rx,
            river_services,
            stop.clone(),
        )));

        let (millrace_tx, millrace_rx) = watch::channel(false);
        self.millrace_leader = millrace_rx.clone();
        let millrace = Elector::new(
            shared.clone(),
            LeaderTable::Millrace,
            ElectionTiming::millrace(shared.config.heartbeat_lease),
            Arc::new(LeaderSignals::default()),
            millrace_tx,
        );
        self.services.push(tokio::spawn(millrace.run(stop.clone())));
        let millrace_services: Vec<ServiceFn<D>> = vec![
            maintenance::client_rescuer::service::<D>,
            crate::periodic::service::<D>,
        ];
        self.services.push(tokio::spawn(maintenance::supervise(
            shared.clone(),
            millrace_rx,
            millrace_services,
            stop.clone(),
        )));
    }

    pub(crate) fn add_queue(&mut self, name: &str, queue: &QueueConfig) {
        let wake = Arc::new(Notify::new());
        let (paused_tx, paused_rx) = watch::channel(false);
        self.shared.producers.lock().expect("lock poisoned").insert(
            name.to_owned(),
            ProducerHandle {
                wake: wake.clone(),
                paused: paused_tx,
            },
        );
        let producer = Producer::new(
            self.shared.clone(),
            name.to_owned(),
            queue.max_workers,
            wake,
            paused_rx,
            self.work_guard.clone(),
        );
        self.producers.push(tokio::spawn(producer.run()));
    }

    /// Stops every task: producers first (they finish their jobs, or abort them after a hard
    /// stop's grace period), then the completer, after it has stored every outcome, then the
    /// services (leader resignations, the heartbeat's deletion).
    ///
    /// Once the jobs and persistent instances have ended, nothing waits on user code any
    /// more, only on the database: that part is bounded by `stop_database_timeout`. A task
    /// still waiting on the database past it is aborted, leaving its rows for the rescuers,
    /// so a stop during an outage returns instead of waiting for the database to come back.
    pub(crate) async fn stop(self, hard: bool, timeout: Option<Duration>) {
        let Runtime {
            shared,
            work_guard,
            mut work_ended,
            producers,
            keepers,
            completer,
            completer_done,
            services,
            services_stop,
            ..
        } = self;
        shared.soft_stop.cancel();
        if hard {
            shared.hard_stop.cancel();
        }
        drop(work_guard);
        let ended = async move { while work_ended.recv().await.is_some() {} };
        tokio::pin!(ended);
        match timeout {
            Some(limit) if !hard => {
                if tokio::time::timeout(limit, &mut ended).await.is_err() {
                    tracing::warn!(
                        timeout = ?limit,
                        "jobs still running at the stop timeout; cancelling them"
                    );
                    shared.hard_stop.cancel();
                    ended.await;
                }
            }
            _ => ended.await,
        }
        let bound = shared.config.stop_database_timeout;
        let deadline = tokio::time::Instant::now() + bound;
        let mut gave_up = 0usize;
        // Producers give back orphaned rows and keepers release their instances; then the
        // completer stores the outcomes left; only then are the heartbeat deleted and the
        // leaderships resigned, so no rescuer takes a job whose outcome is still on its way.
        for task in producers.into_iter().chain(keepers) {
            gave_up += join_by(deadline, task).await;
        }
        completer_done.cancel();
        let completer_gave_up = join_by(deadline, completer).await;
        services_stop.cancel();
        for service in services {
            gave_up += join_by(deadline, service).await;
        }
        if completer_gave_up > 0 {
            tracing::warn!(
                timeout = ?bound,
                "stop gave up storing job outcomes: the database did not answer in time; \
                 those jobs stay running until the dead-client rescue returns them"
            );
        }
        if gave_up > 0 {
            tracing::warn!(
                timeout = ?bound,
                tasks = gave_up,
                "stop gave up waiting on the database; leases and heartbeat will expire by \
                 themselves"
            );
        }
    }
}

/// Waits for `task` until `deadline`, then aborts it. Returns 1 when it had to be aborted.
async fn join_by(deadline: tokio::time::Instant, mut task: JoinHandle<()>) -> usize {
    if tokio::time::timeout_at(deadline, &mut task).await.is_ok() {
        return 0;
    }
    task.abort();
    // An aborted task ends at its next await; its result says only that it was cancelled.
    let _ = task.await;
    1
}
