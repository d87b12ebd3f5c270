//! What a started client's tasks share: the settings, the workers, the jobs held, the
//! producers' handles, the outcome channel and the stop tokens.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_driver::{Driver, JobOutcome};
use millrace_types::{JobId, JobRow};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::RuntimeConfig;
use crate::event::Event;
use crate::insert::{Inserter, LocalQueues};
use crate::worker::Workers;

/// A job this client fetched and has not yet recorded an outcome for.
pub(crate) struct Held {
    pub(crate) queue: String,
    pub(crate) token: CancellationToken,
}

/// A producer's fetch record, kept for the client's health report.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchRecord {
    pub(crate) last_ok_at: Option<jiff::Timestamp>,
    pub(crate) failures: u32,
    /// The concurrency limit the producer enforces now: the queue's override, or the code's.
    pub(crate) concurrency: Option<crate::limits::ConcurrencyLimit>,
    /// Why the queue's metadata override is not applied, when it is not.
    pub(crate) override_error: Option<String>,
    /// How another live client's declared limits for the queue differ from this one's,
    /// when they do (see `runtime::limits_check`).
    pub(crate) disagreement: Option<String>,
}

/// One queue's producer, as the rest of the client reaches it.
pub(crate) struct ProducerHandle {
    pub(crate) wake: Arc<Notify>,
    pub(crate) paused: watch::Sender<bool>,
    /// Held by the producer from its last look at `paused` until its fetch returns, so a
    /// pause can wait out a fetch that began before it (see [`Shared::fetch_gates`]).
    pub(crate) fetching: Arc<tokio::sync::Mutex<()>>,
    /// Whether the queue's fetch is under a concurrency limit now, so a stored completion
    /// frees a slot that waiting jobs may take (see [`Shared::limited_queues`]).
    pub(crate) limited: Arc<std::sync::atomic::AtomicBool>,
    /// The queue's metadata, as a `metadata_changed` notification last told it, so the
    /// producer applies a concurrency override at once rather than at its next refresh.
    pub(crate) metadata: watch::Sender<Option<serde_json::Value>>,
    /// The limits this client was built with for the queue, as it declares them to the
    /// fleet ([`crate::QueueConfig::declared_limits`]).
    pub(crate) declared: serde_json::Value,
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
    /// The client's handle, type-erased, for `Job::client` and `PersistentContext::client`.
    /// The runtime never looks inside: it does not know the client's type.
    pub(crate) client_any: Arc<dyn Any + Send + Sync>,
    /// The client's insert pipeline, for the runtime's own inserts (periodic runs, persistent
    /// instances' rows).
    pub(crate) inserter: Arc<Inserter<D>>,
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
    pub(crate) fetches: Mutex<std::collections::BTreeMap<String, FetchRecord>>,
    /// The persistent workers this client runs an instance of now, for the health report.
    pub(crate) persistent_held: Mutex<BTreeSet<String>>,
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

    /// Those of `queues` whose fetch is under a concurrency limit now (sorted, each once):
    /// a stored completion there frees a slot that waiting jobs may take.
    pub(crate) fn limited_queues<'q>(
        &self,
        queues: impl IntoIterator<Item = &'q str>,
    ) -> BTreeSet<&'q str> {
        let producers = self.producers.lock().expect("lock poisoned");
        queues
            .into_iter()
            .filter(|q| {
                producers
                    .get(*q)
                    .is_some_and(|h| h.limited.load(std::sync::atomic::Ordering::Relaxed))
            })
            .collect()
    }

    /// Hands a queue's new metadata (from a `metadata_changed` notification) to its producer.
    pub(crate) fn metadata_changed(&self, queue: &str, metadata: &serde_json::Value) {
        if let Some(handle) = self.producers.lock().expect("lock poisoned").get(queue) {
            handle.metadata.send_replace(Some(metadata.clone()));
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

    /// The fetch gates of one queue's producer (or every producer, for `*`): once each has been
    /// locked after a pause was applied, no fetch that began before the pause is still running
    /// on this client.
    pub(crate) fn fetch_gates(&self, queue: &str) -> Vec<Arc<tokio::sync::Mutex<()>>> {
        let producers = self.producers.lock().expect("lock poisoned");
        producers
            .iter()
            .filter(|(name, _)| queue == "*" || queue == name.as_str())
            .map(|(_, handle)| handle.fetching.clone())
            .collect()
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
pub(crate) struct WorkGuard(#[allow(dead_code)] pub(crate) mpsc::Sender<()>);

impl<D: Driver> LocalQueues for Shared<D> {
    fn wake_queue(&self, queue: &str) {
        Shared::wake_queue(self, queue);
    }
}

/// One finished attempt, waiting to be stored.
pub(crate) struct Completion {
    pub(crate) row: JobRow,
    pub(crate) outcome: JobOutcome,
    pub(crate) duration: Duration,
    /// The worker already completed the job in its own transaction.
    pub(crate) completed_in_tx: bool,
    /// Metadata stored with the outcome (the job's output).
    pub(crate) metadata_merge: Option<String>,
}

/// Signals from notifications to an elector.
#[derive(Debug, Default)]
pub(crate) struct LeaderSignals {
    /// The leader resigned: try at once.
    pub(crate) resigned: Notify,
    /// Someone asked the leader to resign (wakes the elector).
    pub(crate) resign_requested: Notify,
    /// How many resignation requests arrived: a leader acts only on requests that arrived
    /// after it was elected, never on a wake-up stored while it followed.
    pub(crate) resign_requests: std::sync::atomic::AtomicU64,
}

impl LeaderSignals {
    /// Records a request to resign and wakes the elector.
    pub(crate) fn request_resign(&self) {
        self.resign_requests
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.resign_requested.notify_one();
    }

    pub(crate) fn requests(&self) -> u64 {
        self.resign_requests
            .load(std::sync::atomic::Ordering::Acquire)
    }
}
