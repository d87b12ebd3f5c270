//! Helpers shared by the client-level test files that both drivers run (`limits.rs`,
//! `rate_limits.rs`, `sequences.rs`): compiled into the SQLite suite too, against its own
//! `fixture`, so they name the driver only as `fixture::D`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millrace::{
    Client, ClientBuilder, InsertOpts, JobArgs, JobId, Metric, MetricHook, QueueConfig, Worker,
    Workers,
};

use crate::fixture::{D, TestDb};

/// A client builder named `id` that runs `worker` on `queue` with `config` and ten worker
/// slots, fetching often: a short cooldown so racing clients fetch back to back, and a short
/// poll so a freed slot or window is seen well within a test's deadline.
pub(crate) fn limited_builder<W: Worker>(
    db: &TestDb,
    id: &str,
    worker: W,
    queue: &str,
    config: QueueConfig,
) -> ClientBuilder<D> {
    let mut workers = Workers::new();
    workers.register(worker).unwrap();
    Client::builder(db.driver())
        .id(id)
        .workers(workers)
        .queue(queue, config.max_workers(10))
        .fetch_cooldown(Duration::from_millis(20))
        .fetch_poll_interval(Duration::from_millis(100))
}

/// Inserts one job, which must succeed, and gives its id.
pub(crate) async fn insert_id<A: JobArgs>(
    client: &Client<D>,
    args: A,
    opts: Option<InsertOpts>,
) -> JobId {
    client.insert(args, opts).await.unwrap().job.id
}

/// Counts a client's fetches of one queue, as its metric hook: the tests that must show a
/// fetch came back (or did not come) wait on this count.
#[derive(Clone)]
pub(crate) struct Fetches {
    queue: &'static str,
    count: Arc<AtomicUsize>,
}

impl Fetches {
    /// Counts the fetches of `queue`.
    pub(crate) fn of(queue: &'static str) -> Self {
        Self {
            queue,
            count: Arc::default(),
        }
    }

    /// The fetches so far.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl MetricHook for Fetches {
    fn emit(&self, metric: &Metric<'_>) {
        if let Metric::JobGetAvailable { queue, .. } = metric
            && *queue == self.queue
        {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}
