//! The API surface River users reach for beyond the basics: middleware, the error handler,
//! kind aliases, strict priorities, bounded events. Shared with the SQLite driver:
//! `crates/millrace-sqlite/tests/it/main.rs` compiles this file against its own `fixture`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{
    BoxFuture, Client, ErrorHandler, ErrorHandling, Event, EventKind, InsertMiddleware, InsertNext,
    InsertOpts, InsertParams, InsertResult, Job, JobArgs, JobId, JobRow, JobState, QueueConfig,
    WorkError, WorkMiddleware, WorkNext, Worker, Workers,
};
use serde::{Deserialize, Serialize};

use crate::fixture::{D, TestDb};

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Task {
    fail: bool,
    panic: bool,
}

impl JobArgs for Task {
    const KIND: &'static str = "task_v2";
    const KIND_ALIASES: &'static [&'static str] = &["task_v1"];
}

#[derive(Clone, Default)]
struct TaskWorker {
    order: Arc<Mutex<Vec<String>>>,
}

impl Worker for TaskWorker {
    type Args = Task;

    async fn work(&self, job: Job<Task>) -> Result<(), WorkError> {
        self.order
            .lock()
            .unwrap()
            .push(format!("work {}", job.row.id));
        if job.args.panic {
            panic!("task panicked");
        }
        if job.args.fail {
            return Err(WorkError::msg("task failed"));
        }
        Ok(())
    }

    fn middleware(&self) -> Vec<Arc<dyn WorkMiddleware>> {
        vec![Arc::new(Record {
            name: "worker",
            order: self.order.clone(),
        })]
    }
}

/// Records entering and leaving, around inserts and work.
struct Record {
    name: &'static str,
    order: Arc<Mutex<Vec<String>>>,
}

impl WorkMiddleware for Record {
    fn work<'a>(
        &'a self,
        job: &'a JobRow,
        next: WorkNext<'a>,
    ) -> BoxFuture<'a, Result<(), WorkError>> {
        Box::pin(async move {
            self.order
                .lock()
                .unwrap()
                .push(format!("{} before {}", self.name, job.id));
            let result = next.await;
            self.order
                .lock()
                .unwrap()
                .push(format!("{} after {}", self.name, job.id));
            result
        })
    }
}

impl InsertMiddleware for Record {
    fn insert_job(&self, job: &mut InsertParams) -> millrace::Result<()> {
        let mut meta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&job.metadata).unwrap();
        meta.insert(self.name.to_owned(), true.into());
        job.metadata = serde_json::Value::Object(meta).to_string();
        Ok(())
    }

    fn insert_many<'a>(
        &'a self,
        jobs: Vec<InsertParams>,
        next: InsertNext<'a>,
    ) -> BoxFuture<'a, millrace::Result<Vec<InsertResult>>> {
        Box::pin(async move {
            self.order
                .lock()
                .unwrap()
                .push(format!("{} batch of {}", self.name, jobs.len()));
            let results = next.run(jobs).await;
            self.order
                .lock()
                .unwrap()
                .push(format!("{} stored", self.name));
            results
        })
    }
}

/// Cancels jobs that panic; leaves other errors to the retry policy.
struct CancelPanics;

impl ErrorHandler for CancelPanics {
    fn handle_panic(&self, _job: &JobRow, message: &str, _trace: &str) -> ErrorHandling {
        assert_eq!(message, "task panicked");
        ErrorHandling::Cancel
    }
}

fn client(db: &TestDb, worker: TaskWorker) -> Client<D> {
    let order = worker.order.clone();
    let mut workers = Workers::new();
    workers.register(worker).unwrap();
    Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .insert_middleware(Record {
            name: "outer",
            order: order.clone(),
        })
        .insert_middleware(Record {
            name: "inner",
            order: order.clone(),
        })
        .work_middleware(Record {
            name: "client",
            order,
        })
        .error_handler(CancelPanics)
        .build()
        .unwrap()
}

async fn outcome(events: &mut tokio::sync::broadcast::Receiver<Event>, id: JobId) -> EventKind {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(Event::Job { kind, job, .. }) = events.recv().await {
                if job.id == id {
                    return kind;
                }
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn middleware_wrap_inserts_and_work_in_order() {
    let db = TestDb::new().await;
    let worker = TaskWorker::default();
    let order = worker.order.clone();
    let client = client(&db, worker);
    let mut events = client.subscribe();
    let job = client
        .insert(
            Task {
                fail: false,
                panic: false,
            },
            None,
        )
        .await
        .unwrap()
        .job;
    assert_eq!(
        job.metadata["outer"], true,
        "insert hooks change what is stored"
    );
    assert_eq!(job.metadata["inner"], true);
    client.start().await.unwrap();
    assert_eq!(outcome(&mut events, job.id).await, EventKind::JobCompleted);
    client.stop().await.unwrap();
    let id = job.id;
    assert_eq!(
        *order.lock().unwrap(),
        [
            "outer batch of 1".to_owned(),
            "inner batch of 1".to_owned(),
            "inner stored".to_owned(),
            "outer stored".to_owned(),
            format!("client before {id}"),
            format!("worker before {id}"),
            format!("work {id}"),
            format!("worker after {id}"),
            format!("client after {id}"),
        ]
    );
}

#[tokio::test]
async fn error_handler_can_cancel_and_errors_otherwise_retry() {
    let db = TestDb::new().await;
    let client = client(&db, TaskWorker::default());
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let panics = client
        .insert(
            Task {
                fail: false,
                panic: true,
            },
            None,
        )
        .await
        .unwrap()
        .job
        .id;
    let fails = client
        .insert(
            Task {
                fail: true,
                panic: false,
            },
            None,
        )
        .await
        .unwrap()
        .job
        .id;
    assert_eq!(outcome(&mut events, panics).await, EventKind::JobCancelled);
    assert_eq!(
        client.job_get(panics).await.unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(outcome(&mut events, fails).await, EventKind::JobFailed);
    client.stop().await.unwrap();
}

#[tokio::test]
async fn kind_aliases_work_rows_of_the_old_kind() {
    let db = TestDb::new().await;
    #[derive(Serialize)]
    struct OldTask {
        fail: bool,
        panic: bool,
    }
    impl JobArgs for OldTask {
        const KIND: &'static str = "task_v1";
    }
    let client = client(&db, TaskWorker::default());
    let mut events = client.subscribe();
    let old = client
        .insert(
            OldTask {
                fail: false,
                panic: false,
            },
            None,
        )
        .await
        .unwrap()
        .job;
    assert_eq!(old.kind, "task_v1");
    client.start().await.unwrap();
    assert_eq!(outcome(&mut events, old.id).await, EventKind::JobCompleted);
    client.stop().await.unwrap();
    // A second worker claiming an alias is refused.
    let mut workers = Workers::new();
    workers.register(TaskWorker::default()).unwrap();
    #[derive(Serialize, Deserialize)]
    struct Clash {}
    impl JobArgs for Clash {
        const KIND: &'static str = "task_v1";
    }
    struct ClashWorker;
    impl Worker for ClashWorker {
        type Args = Clash;
        async fn work(&self, _job: Job<Clash>) -> Result<(), WorkError> {
            Ok(())
        }
    }
    assert!(matches!(
        workers.register(ClashWorker),
        Err(millrace::Error::Config(_))
    ));
}

#[tokio::test]
async fn priorities_are_strict_then_by_time() {
    let db = TestDb::new().await;
    let worker = TaskWorker::default();
    let order = worker.order.clone();
    let mut workers = Workers::new();
    workers.register(worker).unwrap();
    // One worker, so jobs run one at a time in fetch order.
    let client = Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(1))
        .fetch_cooldown(Duration::from_millis(1))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for priority in [4, 2, 3, 1, 2] {
        let opts = InsertOpts::new().priority(priority);
        ids.push((
            priority,
            client
                .insert(
                    Task {
                        fail: false,
                        panic: false,
                    },
                    Some(opts),
                )
                .await
                .unwrap()
                .job
                .id,
        ));
    }
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let last = ids.iter().find(|(p, _)| *p == 4).unwrap().1;
    outcome(&mut events, last).await;
    client.stop().await.unwrap();
    let worked: Vec<String> = order
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("work "))
        .cloned()
        .collect();
    let mut expected = ids.clone();
    expected.sort_by_key(|(p, id)| (*p, *id));
    let expected: Vec<String> = expected
        .iter()
        .map(|(_, id)| format!("work {id}"))
        .collect();
    assert_eq!(worked, expected);
}

#[tokio::test]
async fn a_slow_subscriber_loses_events_and_is_told() {
    let db = TestDb::new().await;
    let client = client(&db, TaskWorker::default());
    let mut slow = client.subscribe();
    let mut fast = client.subscribe();
    let jobs: Vec<_> = (0..5_000)
        .map(|_| {
            millrace::InsertManyParams::new(Task {
                fail: false,
                panic: false,
            })
        })
        .collect();
    client.insert_many_fast(jobs).await.unwrap();
    client.start().await.unwrap();
    // The fast subscriber keeps up; the runtime never waits for the slow one.
    let mut seen = 0;
    tokio::time::timeout(DEADLINE, async {
        while seen < 5_000 {
            match fast.recv().await {
                Ok(Event::Job { .. }) => seen += 1,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => seen += n as usize,
                Err(err) => panic!("{err}"),
            }
        }
    })
    .await
    .unwrap();
    client.stop().await.unwrap();
    let mut lagged = false;
    loop {
        match slow.try_recv() {
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
            Err(_) => break,
        }
    }
    assert!(
        lagged,
        "a subscriber that fell behind is told how many events it lost"
    );
}
