//! The state a started client's tasks share, and starting and stopping them.

pub(crate) mod completer;
pub(crate) mod config;
pub(crate) mod elector;
pub(crate) mod heartbeat;
pub(crate) mod job_executor;
pub(crate) mod keeper;
pub(crate) mod limits_check;
pub(crate) mod maintenance;
pub(crate) mod notifier;
pub(crate) mod panic_trace;
pub(crate) mod producer;
pub(crate) mod shared;
pub(crate) mod undecodable;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use millrace_driver::Driver;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use millrace_driver::LeaderTable;

use crate::event::Event;
use crate::insert::{Inserter, LocalQueues};
use crate::periodic::PeriodicRegistry;
use crate::persistent::PersistentEntry;
use crate::queue_config::QueueConfig;
use crate::worker::Workers;
use completer::Completer;
use config::RuntimeConfig;
use elector::{ElectionTiming, Elector};
use heartbeat::Heartbeat;
use keeper::Keeper;
use maintenance::client_rescuer::ClientRescuer;
use maintenance::job_cleaner::JobCleaner;
use maintenance::job_rescuer::JobRescuer;
use maintenance::job_scheduler::JobScheduler;
use maintenance::periodic_enqueuer::PeriodicEnqueuer;
use maintenance::queue_cleaner::QueueCleaner;
use maintenance::reindexer::Reindexer;
use maintenance::restartable;
use maintenance::sequence_promoter::SequencePromoter;
use producer::{Producer, ProducerSignals};
use shared::{LeaderSignals, ProducerHandle, Shared, WorkGuard};

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

/// What a client hands the runtime it starts: every task gets what it uses from these.
pub(crate) struct StartArgs<'a, D: Driver> {
    pub(crate) driver: D,
    pub(crate) config: RuntimeConfig,
    pub(crate) workers: Workers,
    pub(crate) queues: &'a [(String, QueueConfig)],
    pub(crate) persistent: &'a [PersistentEntry],
    pub(crate) events: broadcast::Sender<Event>,
    /// The client's weak, type-erased handle, for `Job::client`.
    pub(crate) client_any: Arc<dyn Any + Send + Sync>,
    pub(crate) inserter: Arc<Inserter<D>>,
    pub(crate) periodic: Arc<PeriodicRegistry>,
}

impl<D: Driver> Runtime<D> {
    pub(crate) fn start(
        args: StartArgs<'_, D>,
    ) -> (Self, Option<tokio::sync::oneshot::Receiver<()>>) {
        let StartArgs {
            driver,
            config,
            workers,
            queues,
            persistent,
            events,
            client_any,
            inserter,
            periodic,
        } = args;
        crate::runtime::panic_trace::install_hook();
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
            inserter,
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
            let notifier = crate::runtime::notifier::Notifier::new(runtime.shared.clone(), ready);
            runtime
                .services
                .push(tokio::spawn(notifier.run(stop.clone())));
            listening = Some(ready_rx);
        }
        runtime.start_fleet_services(&stop, periodic);
        (runtime, listening)
    }

    /// Heartbeats, the two leader elections, and the services each leadership runs.
    fn start_fleet_services(&mut self, stop: &CancellationToken, periodic: Arc<PeriodicRegistry>) {
        let shared = &self.shared;
        self.services.push(tokio::spawn(
            Heartbeat::new(shared.clone()).run(stop.clone()),
        ));
        self.services.push(tokio::spawn(limits_check::run(
            shared.clone(),
            stop.clone(),
        )));

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
        let config = &shared.config;
        let driver = &shared.driver;
        let clock = &config.clock;
        // What the services wake on this client; weak, as `ServiceFn` says why.
        let local: Weak<dyn LocalQueues> = Arc::downgrade(shared) as Weak<dyn LocalQueues>;
        let river_services = vec![
            restartable(
                JobScheduler {
                    driver: driver.clone(),
                    clock: clock.clone(),
                    interval: config.schedule_interval,
                    local: local.clone(),
                },
                JobScheduler::run,
            ),
            restartable(
                JobRescuer {
                    driver: driver.clone(),
                    clock: clock.clone(),
                    interval: config.maintenance.rescuer_interval,
                    rescue_after: config.rescue_stuck_jobs_after(),
                    job_timeout: config.job_timeout,
                    workers: shared.workers.clone(),
                    retry_policy: config.retry_policy.clone(),
                },
                JobRescuer::run,
            ),
            restartable(
                JobCleaner {
                    driver: driver.clone(),
                    clock: clock.clone(),
                    interval: config.maintenance.cleaner_interval,
                    completed_retention: config.maintenance.completed_retention,
                    cancelled_retention: config.maintenance.cancelled_retention,
                    discarded_retention: config.maintenance.discarded_retention,
                },
                JobCleaner::run,
            ),
            restartable(
                QueueCleaner {
                    driver: driver.clone(),
                    clock: clock.clone(),
                    interval: config.maintenance.cleaner_interval,
                },
                QueueCleaner::run,
            ),
            restartable(
                Reindexer {
                    driver: driver.clone(),
                    enabled: config.maintenance.reindexer,
                },
                Reindexer::run,
            ),
        ];
        self.services.push(tokio::spawn(maintenance::supervise(
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
        let millrace_services = vec![
            restartable(
                ClientRescuer {
                    driver: driver.clone(),
                    clock: clock.clone(),
                    local: local.clone(),
                },
                ClientRescuer::run,
            ),
            restartable(
                SequencePromoter {
                    driver: driver.clone(),
                    local,
                },
                SequencePromoter::run,
            ),
            restartable(
                PeriodicEnqueuer::new(
                    driver.clone(),
                    shared.inserter.clone(),
                    periodic,
                    clock.clone(),
                ),
                PeriodicEnqueuer::run,
            ),
        ];
        self.services.push(tokio::spawn(maintenance::supervise(
            millrace_rx,
            millrace_services,
            stop.clone(),
        )));
    }

    pub(crate) fn add_queue(&mut self, name: &str, queue: &QueueConfig) {
        let wake = Arc::new(Notify::new());
        let (paused_tx, paused_rx) = watch::channel(false);
        let fetching = Arc::new(tokio::sync::Mutex::new(()));
        let limited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (metadata_tx, metadata_rx) = watch::channel(None);
        self.shared.producers.lock().expect("lock poisoned").insert(
            name.to_owned(),
            ProducerHandle {
                wake: wake.clone(),
                paused: paused_tx,
                fetching: fetching.clone(),
                limited: limited.clone(),
                metadata: metadata_tx,
                declared: queue.declared_limits(),
            },
        );
        let producer = Producer::new(
            self.shared.clone(),
            name.to_owned(),
            queue.max_workers,
            queue.concurrency.clone(),
            ProducerSignals {
                wake,
                paused: paused_rx,
                fetching,
                limited,
                metadata: metadata_rx,
            },
            self.work_guard.clone(),
        )
        .with_rate(
            queue
                .rate_limit
                .as_ref()
                .map(crate::rate_limit::RateLimit::to_fetch_rate),
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
