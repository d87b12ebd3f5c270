//! Queue gauges River lacks: jobs by queue and state, queue lag, running jobs per queue and
//! client, persistent-worker holders and lease ages, leaders.
//!
//! A task refreshes a snapshot from the database every interval; the gauges' callbacks read
//! the snapshot only. A scrape or export therefore never queries the database, and the
//! database sees a handful of cheap statements per interval per client that runs the gauges
//! (one client of a fleet is enough: they read the whole fleet).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace::{Client, Driver, JobState};
use opentelemetry::metrics::{Counter, Meter, MeterProvider, ObservableGauge};
use opentelemetry::{KeyValue, global};
use tokio_util::sync::CancellationToken;

/// The states `Client::job_counts` counts (the backlog; final states would cost a scan of the
/// whole table every refresh). Each queue reports all five, so a state that empties reads 0
/// rather than vanishing from the scrape.
const STATES: [JobState; 5] = [
    JobState::Available,
    JobState::Pending,
    JobState::Retryable,
    JobState::Running,
    JobState::Scheduled,
];

/// How often the gauges are refreshed unless told otherwise.
pub const GAUGES_INTERVAL_DEFAULT: Duration = Duration::from_secs(15);

/// What the last refresh read.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    /// (queue, state, count)
    jobs: Vec<(String, JobState, i64)>,
    /// (queue, age in seconds of its oldest available job; 0 when none is available)
    lag: Vec<(String, f64)>,
    /// (client, queue, running jobs)
    running: Vec<(String, String, i64)>,
    /// (name, holder, held, lease age in seconds)
    persistent: Vec<(String, String, bool, Option<f64>)>,
    /// (table, leader id, unexpired)
    leaders: Vec<(&'static str, String, bool)>,
    /// How long the last refresh took, in seconds.
    refresh_seconds: f64,
}

/// Builds and starts [`QueueGauges`].
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
/// use std::time::Duration;
/// let gauges = millrace_otel::QueueGauges::builder(client)
///     .interval(Duration::from_secs(30))
///     .start();
/// // ... later, on shutdown:
/// gauges.stop().await;
/// # }
/// ```
#[must_use]
pub struct QueueGaugesBuilder<D: Driver> {
    client: Client<D>,
    interval: Duration,
    meter: Option<Meter>,
}

impl<D: Driver> std::fmt::Debug for QueueGaugesBuilder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueGaugesBuilder")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<D: Driver> QueueGaugesBuilder<D> {
    /// How often the snapshot is refreshed from the database. Defaults to 15 s, a common
    /// scrape interval; values under 1 s are raised to 1 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_secs(1));
        self
    }

    /// The meter provider the gauges are registered on. Defaults to the global one.
    pub fn meter_provider(mut self, provider: &impl MeterProvider) -> Self {
        self.meter = Some(provider.meter(crate::SCOPE_NAME));
        self
    }

    /// Registers the gauges and starts refreshing them on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(self) -> QueueGauges {
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter(crate::SCOPE_NAME));
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let gauges = register(&meter, &snapshot);
        let errors = meter
            .u64_counter("millrace.gauges.refresh_errors")
            .with_description(
                "Refreshes of the queue gauges that failed (the last values are kept)",
            )
            .with_unit("{error}")
            .build();
        let token = CancellationToken::new();
        let task = tokio::spawn(refresh_loop(
            self.client,
            self.interval,
            snapshot,
            errors,
            token.clone(),
        ));
        QueueGauges {
            token,
            task,
            _gauges: gauges,
        }
    }
}

/// Queue gauges on an OpenTelemetry meter: registered by [`QueueGaugesBuilder::start`] and
/// refreshed until [`stop`](QueueGauges::stop) or drop.
///
/// | Metric | Unit | Attributes | What |
/// |---|---|---|---|
/// | `millrace.jobs` | `{job}` | `queue`, `state` | jobs by queue and state, for the states that are not final (available, pending, retryable, running, scheduled), all five for every queue with such jobs |
/// | `millrace.queue.lag` | `s` | `queue` | age of the queue's oldest available job; 0 when none waits |
/// | `millrace.jobs.running` | `{job}` | `client`, `queue` | running jobs per client (River's too) and queue |
/// | `millrace.persistent.held` | |  `name`, `holder` | 1 while the instance runs on `holder`, else 0 |
/// | `millrace.persistent.lease_age` | `s` | `name`, `holder` | time since the holder last renewed its lease |
/// | `millrace.leader` | | `leader` (`river` or `millrace`), `client` | 1 while the lease is unexpired, else 0 |
/// | `millrace.gauges.refresh_duration` | `s` | | how long the last refresh took |
/// | `millrace.gauges.refresh_errors` | `{error}` | | refreshes that failed (the last values are kept) |
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
/// let gauges = millrace_otel::QueueGauges::builder(client).start();
/// # gauges.stop().await;
/// # }
/// ```
pub struct QueueGauges {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _gauges: Vec<Gauge>,
}

impl std::fmt::Debug for QueueGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueGauges").finish_non_exhaustive()
    }
}

impl Drop for QueueGauges {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl QueueGauges {
    /// Starts building gauges that read the fleet through `client` (an insert-only client
    /// will do: the gauges need no workers).
    pub fn builder<D: Driver>(client: Client<D>) -> QueueGaugesBuilder<D> {
        QueueGaugesBuilder {
            client,
            interval: GAUGES_INTERVAL_DEFAULT,
            meter: None,
        }
    }

    /// Stops refreshing and waits for the refresh task to end. The gauges report their last
    /// values while their meter provider lives.
    pub async fn stop(mut self) {
        self.token.cancel();
        let _ = (&mut self.task).await;
    }
}

/// An observable gauge of either number type, kept for as long as the gauges run.
enum Gauge {
    I64(#[allow(dead_code)] ObservableGauge<i64>),
    F64(#[allow(dead_code)] ObservableGauge<f64>),
}

fn register(meter: &Meter, snapshot: &Arc<Mutex<Snapshot>>) -> Vec<Gauge> {
    let read = {
        let snapshot = snapshot.clone();
        move || snapshot.lock().expect("lock poisoned").clone()
    };
    let mut gauges = Vec::new();
    let r = read.clone();
    gauges.push(Gauge::I64(
        meter
            .i64_observable_gauge("millrace.jobs")
            .with_description("Jobs by queue and state, for the states that are not final")
            .with_unit("{job}")
            .with_callback(move |o| {
                for (queue, state, count) in r().jobs {
                    o.observe(
                        count,
                        &[
                            KeyValue::new("queue", queue),
                            KeyValue::new("state", state.as_str()),
                        ],
                    );
                }
            })
            .build(),
    ));
    let r = read.clone();
    gauges.push(Gauge::F64(
        meter
            .f64_observable_gauge("millrace.queue.lag")
            .with_description("Age of the queue's oldest available job (0 when none waits)")
            .with_unit("s")
            .with_callback(move |o| {
                for (queue, age) in r().lag {
                    o.observe(age, &[KeyValue::new("queue", queue)]);
                }
            })
            .build(),
    ));
    let r = read.clone();
    gauges.push(Gauge::I64(
        meter
            .i64_observable_gauge("millrace.jobs.running")
            .with_description("Running jobs by client and queue")
            .with_unit("{job}")
            .with_callback(move |o| {
                for (client, queue, count) in r().running {
                    o.observe(
                        count,
                        &[
                            KeyValue::new("client", client),
                            KeyValue::new("queue", queue),
                        ],
                    );
                }
            })
            .build(),
    ));
    let r = read.clone();
    gauges.push(Gauge::I64(
        meter
            .i64_observable_gauge("millrace.persistent.held")
            .with_description("1 while a persistent worker's instance runs on its holder")
            .with_callback(move |o| {
                for (name, holder, held, _) in r().persistent {
                    o.observe(
                        i64::from(held),
                        &[KeyValue::new("name", name), KeyValue::new("holder", holder)],
                    );
                }
            })
            .build(),
    ));
    let r = read.clone();
    gauges.push(Gauge::F64(
        meter
            .f64_observable_gauge("millrace.persistent.lease_age")
            .with_description("Time since a persistent worker's holder last renewed its lease")
            .with_unit("s")
            .with_callback(move |o| {
                for (name, holder, _, age) in r().persistent {
                    if let Some(age) = age {
                        o.observe(
                            age,
                            &[KeyValue::new("name", name), KeyValue::new("holder", holder)],
                        );
                    }
                }
            })
            .build(),
    ));
    let r = read.clone();
    gauges.push(Gauge::I64(
        meter
            .i64_observable_gauge("millrace.leader")
            .with_description("1 while the leader's lease is unexpired (river: River's maintenance; millrace: Millrace's fleet work)")
            .with_callback(move |o| {
                for (table, client, live) in r().leaders {
                    o.observe(
                        i64::from(live),
                        &[KeyValue::new("leader", table), KeyValue::new("client", client)],
                    );
                }
            })
            .build(),
    ));
    let r = read;
    gauges.push(Gauge::F64(
        meter
            .f64_observable_gauge("millrace.gauges.refresh_duration")
            .with_description("How long the last refresh of the queue gauges took")
            .with_unit("s")
            .with_callback(move |o| o.observe(r().refresh_seconds, &[]))
            .build(),
    ));
    gauges
}

async fn refresh_loop<D: Driver>(
    client: Client<D>,
    interval: Duration,
    snapshot: Arc<Mutex<Snapshot>>,
    errors: Counter<u64>,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A refresh that hangs (the database is gone) is given up at the next tick.
        let refreshed = tokio::select! {
            _ = token.cancelled() => return,
            refreshed = tokio::time::timeout(interval, read(&client)) => refreshed,
        };
        match refreshed {
            Ok(Ok(fresh)) => *snapshot.lock().expect("lock poisoned") = fresh,
            Ok(Err(err)) => {
                errors.add(1, &[]);
                tracing::warn!(error = %err, "could not refresh the queue gauges; keeping the last values");
            }
            Err(_) => {
                errors.add(1, &[]);
                tracing::warn!(
                    ?interval,
                    "refreshing the queue gauges took longer than their interval; keeping the last values"
                );
            }
        }
    }
}

async fn read<D: Driver>(client: &Client<D>) -> millrace::Result<Snapshot> {
    let started = Instant::now();
    let counts = client.job_counts().await?;
    let lag = client.queue_lag().await?;
    let fleet = client.fleet_clients().await?;
    let (instances, _) = client.persistent_instances().await?;
    let leaders = client.leaders().await?;

    let mut queues: BTreeSet<String> = counts.queues().into_iter().map(str::to_owned).collect();
    queues.extend(lag.iter().map(|l| l.queue.clone()));
    let mut snapshot = Snapshot::default();
    for queue in &queues {
        for state in STATES {
            snapshot
                .jobs
                .push((queue.clone(), state, counts.get(queue, state)));
        }
        let age = lag
            .iter()
            .find(|l| &l.queue == queue)
            .map_or(0.0, |l| l.age.as_secs_f64());
        snapshot.lag.push((queue.clone(), age));
    }
    for fleet_client in fleet {
        let mut by_queue: std::collections::BTreeMap<String, i64> = Default::default();
        for running in &fleet_client.running {
            *by_queue.entry(running.queue.clone()).or_default() += running.count;
        }
        for (queue, count) in by_queue {
            snapshot
                .running
                .push((fleet_client.id.clone(), queue, count));
        }
    }
    for instance in instances {
        let held = instance.state == JobState::Running;
        snapshot.persistent.push((
            instance.name,
            instance.holder.unwrap_or_default(),
            held,
            instance.lease_age.map(|a| a.as_secs_f64()),
        ));
    }
    for (table, row) in [("river", leaders.river), ("millrace", leaders.millrace)] {
        if let Some(row) = row {
            snapshot
                .leaders
                .push((table, row.leader_id, row.expires_at > leaders.now));
        }
    }
    snapshot.refresh_seconds = started.elapsed().as_secs_f64();
    Ok(snapshot)
}
