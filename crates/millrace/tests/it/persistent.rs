//! Persistent workers, with several clients in one process. The guarantees with killed
//! processes and lost connections are tested in millrace-test, on PostgreSQL. Shared with the
//! SQLite driver: `crates/millrace-sqlite/tests/it/main.rs` compiles this file against its
//! own `fixture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use millrace::{
    BoxError, Client, ClientBuilder, Event, PersistentContext, PersistentOpts, PersistentWorker,
};

use crate::fixture::{D, TestDb, persistent_claim_as_ghost, persistent_last_error, persistent_row};

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Default)]
struct Loop {
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    starts: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
}

impl PersistentWorker for Loop {
    async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.starts.fetch_add(1, Ordering::SeqCst);
        let result = async {
            if self.panic.load(Ordering::SeqCst) {
                panic!("persistent panic");
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err::<(), BoxError>("persistent failure".into());
            }
            // The deprecated attempt stays tested while it is public.
            #[allow(deprecated)]
            let attempt = ctx.attempt();
            let token = ctx.fencing_token();
            ctx.record_progress(serde_json::json!({ "attempt": attempt, "token": token }))
                .await?;
            ctx.cancelled().await;
            Ok(())
        };
        let result = std::panic::AssertUnwindSafe(result);
        let outcome = futures_util::FutureExt::catch_unwind(result).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

fn client(db: &TestDb, id: &str, worker: Loop, opts: PersistentOpts) -> Client<D> {
    ClientBuilder::persistent_worker_with(
        Client::builder(db.driver()).id(id),
        "looper",
        worker,
        opts,
    )
    .heartbeat_lease(Duration::from_secs(2))
    .cancel_grace(Duration::from_millis(500))
    .build()
    .unwrap()
}

fn fast() -> PersistentOpts {
    PersistentOpts::new()
        .lease(Duration::from_secs(2))
        .restart_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .keep_errors(3)
}

/// Waits, up to [`DEADLINE`], until `check` holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    millrace_test::eventually(what, DEADLINE, check).await;
}

#[tokio::test]
async fn one_instance_across_clients_starts_at_once() {
    let db = TestDb::new().await;
    let worker = Loop::default();
    let clients: Vec<_> = (0..3)
        .map(|n| client(&db, &format!("node-{n}"), worker.clone(), fast()))
        .collect();
    let started = Instant::now();
    for c in &clients {
        c.start().await.unwrap();
    }
    eventually("the instance runs", || async {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        // Promised within 2 s; the test allows three times that under load (the exact figure
        // comes from `millrace bench persistent`).
        started.elapsed() < Duration::from_secs(6),
        "started after {:?}",
        started.elapsed()
    );
    eventually("progress recorded", || async {
        persistent_row(&db).await.2.get("progress").is_some()
    })
    .await;
    let (state, attempt, metadata, _) = persistent_row(&db).await;
    assert_eq!(state, "running");
    assert_eq!(metadata["progress"]["attempt"], attempt);
    // The one token the instance is fenced on is the row's `millrace:fence`.
    assert_eq!(metadata["progress"]["token"], metadata["millrace:fence"]);
    assert!(metadata["millrace:fence"].as_i64().is_some_and(|t| t >= 1));
    // Several renewal periods later, still exactly one, never restarted.
    tokio::time::timeout(Duration::from_secs(2), std::future::pending::<()>())
        .await
        .ok();
    assert_eq!(worker.starts.load(Ordering::SeqCst), 1);
    assert_eq!(worker.max_running.load(Ordering::SeqCst), 1);
    for c in &clients {
        c.stop().await.unwrap();
    }
    assert_eq!(worker.running.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn graceful_stop_hands_the_instance_over() {
    let db = TestDb::new().await;
    let worker = Loop::default();
    let a = client(&db, "node-a", worker.clone(), fast());
    let b = client(&db, "node-b", worker.clone(), fast());
    let mut events = b.subscribe();
    a.start().await.unwrap();
    eventually("a runs it", || async {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    b.start().await.unwrap();
    let stopped = Instant::now();
    a.stop().await.unwrap();
    let moved = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(Event::PersistentWorkerStarted { client, .. }) = events.recv().await {
                return client;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(moved, "node-b");
    // The new holder's fencing token is higher than the old one's, handover or not.
    eventually("the new holder's token is stored", || async {
        persistent_row(&db).await.2["millrace:fence"] == 2
    })
    .await;
    assert!(
        // Promised within 2 s; three times that under load.
        stopped.elapsed() < Duration::from_secs(6),
        "handover took {:?}",
        stopped.elapsed()
    );
    assert_eq!(worker.max_running.load(Ordering::SeqCst), 1);
    b.stop().await.unwrap();
}

#[tokio::test]
async fn failures_restart_with_backoff_and_keep_the_row_bounded() {
    let db = TestDb::new().await;
    let worker = Loop::default();
    worker.fail.store(true, Ordering::SeqCst);
    let c = client(&db, "node", worker.clone(), fast());
    c.start().await.unwrap();
    eventually("many restarts", || async {
        worker.starts.load(Ordering::SeqCst) >= 6
    })
    .await;
    let (state, _, _, errors) = persistent_row(&db).await;
    assert_ne!(state, "discarded", "a persistent worker is never discarded");
    assert!(
        errors <= 3,
        "errors are trimmed to the most recent, got {errors}"
    );
    // Panics too are restarts, never crashes of the client.
    worker.fail.store(false, Ordering::SeqCst);
    worker.panic.store(true, Ordering::SeqCst);
    let before = worker.starts.load(Ordering::SeqCst);
    eventually("restarts after panics", || async {
        worker.starts.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    worker.panic.store(false, Ordering::SeqCst);
    eventually("running again", || async {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(persistent_last_error(&db).await, "panic: persistent panic");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_holder_is_taken_over_after_its_lease() {
    let db = TestDb::new().await;
    let worker = Loop::default();
    let c = client(&db, "survivor", worker.clone(), fast());
    c.start().await.unwrap();
    eventually("it runs", || async {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    c.stop().await.unwrap();
    // Pretend a holder took it and died: running, last renewed just now, by a ghost.
    persistent_claim_as_ghost(&db).await;
    let c = client(&db, "survivor-2", worker.clone(), fast());
    let started = Instant::now();
    c.start().await.unwrap();
    eventually("taken over", || async {
        worker.running.load(Ordering::SeqCst) == 1
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "taken over before the lease ran out: {waited:?}"
    );
    // Promised within the lease plus 2 s (4 s here); three times that under load.
    assert!(waited < Duration::from_secs(12), "took {waited:?}");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_registrations_are_typed_errors() {
    let db = TestDb::new().await;
    let bad_name = Client::builder(db.driver())
        .persistent_worker("no spaces", Loop::default())
        .build();
    assert!(matches!(bad_name, Err(millrace::Error::Config(_))));
    let twice = Client::builder(db.driver())
        .persistent_worker("x", Loop::default())
        .persistent_worker("x", Loop::default())
        .build();
    assert!(matches!(twice, Err(millrace::Error::Config(_))));
    let short_lease = Client::builder(db.driver())
        .persistent_worker_with(
            "x",
            Loop::default(),
            PersistentOpts::new().lease(Duration::from_millis(10)),
        )
        .build();
    assert!(matches!(short_lease, Err(millrace::Error::Config(_))));
}
