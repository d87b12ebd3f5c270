//! The worker runtime: every outcome as River records it, stop, pause, the completion fence.
//! Shared with the SQLite driver: `crates/millrace-sqlite/tests/it/main.rs` compiles this file
//! against its own `fixture`, and adds a test of its own that uses the helpers here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millrace::{
    Client, Error, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobRow, JobState,
    PeriodicJob, QueueConfig, Schedule, UniqueOpts, WorkError, Worker, Workers,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::fixture::{D, TestDb, begin_tx};

mod lifecycle;
mod outcomes;

/// The longest a test waits for a job's outcome.
const DEADLINE: Duration = Duration::from_secs(20);

/// What a [`Scripted`] job does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Script {
    Succeed,
    Fail,
    Cancel,
    Snooze {
        millis: u64,
    },
    Panic,
    /// Fails with a message holding a NUL character, after trying to record output and merge
    /// metadata that hold one (both refused).
    FailWithNul,
    /// Waits for its token, then fails (a cooperative long job).
    WaitForToken,
    /// Sleeps without looking at its token.
    Ignore {
        millis: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Scripted {
    pub(crate) script: Script,
}

impl JobArgs for Scripted {
    const KIND: &'static str = "scripted";
}

#[derive(Default, Clone)]
struct ScriptedWorker {
    runs: Arc<AtomicUsize>,
}

impl Worker for ScriptedWorker {
    type Args = Scripted;

    async fn work(&self, job: Job<Scripted>) -> Result<(), WorkError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match job.args.script {
            Script::Succeed => Ok(()),
            Script::Fail => Err(WorkError::msg("scripted failure")),
            Script::Cancel => Err(WorkError::cancel("scripted cancel")),
            Script::Snooze { millis } => Err(WorkError::snooze(Duration::from_millis(millis))),
            Script::Panic => panic!("scripted panic"),
            Script::FailWithNul => {
                let output = job.set_output("out\0put");
                assert!(
                    matches!(output, Err(Error::InvalidArgument(_))),
                    "{output:?}"
                );
                let merge = job.merge_metadata(serde_json::json!({ "p": "a\0b" })).await;
                assert!(matches!(merge, Err(Error::InvalidArgument(_))), "{merge:?}");
                Err(WorkError::msg("bad\0byte"))
            }
            Script::WaitForToken => {
                job.cancelled().await;
                Err(WorkError::msg("stopped by its token"))
            }
            Script::Ignore { millis } => {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                Ok(())
            }
        }
    }
}

pub(crate) struct Running {
    pub(crate) client: Client<D>,
    events: broadcast::Receiver<Event>,
    worker: ScriptedWorker,
}

fn builder(db: &TestDb, worker: ScriptedWorker) -> millrace::ClientBuilder<D> {
    let mut workers = Workers::new();
    workers.register(worker).expect("register");
    Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(10))
        .fetch_cooldown(Duration::from_millis(10))
        .fetch_poll_interval(Duration::from_millis(200))
        .schedule_interval(Duration::from_millis(200))
        .cancel_grace(Duration::from_millis(300))
}

pub(crate) async fn start(
    db: &TestDb,
    configure: impl FnOnce(millrace::ClientBuilder<D>) -> millrace::ClientBuilder<D>,
) -> Running {
    let worker = ScriptedWorker::default();
    let client = configure(builder(db, worker.clone()))
        .build()
        .expect("build");
    let events = client.subscribe();
    client.start().await.expect("start");
    Running {
        client,
        events,
        worker,
    }
}

impl Running {
    async fn insert(&self, script: Script, opts: Option<InsertOpts>) -> JobId {
        self.client
            .insert(Scripted { script }, opts)
            .await
            .expect("insert")
            .job
            .id
    }

    /// Waits for the next job event of `id`.
    pub(crate) async fn outcome(&mut self, id: JobId) -> (EventKind, JobRow) {
        let wait = async {
            loop {
                match self.events.recv().await.expect("events open") {
                    Event::Job { kind, job, .. } if job.id == id => return (kind, (*job).clone()),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no outcome for job {id} within {DEADLINE:?}"))
    }
}

#[tokio::test]
async fn worker_completes_its_job_in_its_own_transaction() {
    #[derive(Serialize, Deserialize)]
    struct Audited {}
    impl JobArgs for Audited {
        const KIND: &'static str = "audited";
    }
    struct AuditWorker;
    impl Worker for AuditWorker {
        type Args = Audited;
        async fn work(&self, job: Job<Audited>) -> Result<(), WorkError> {
            let client = job.client::<D>()?;
            let mut tx = begin_tx(client.driver()).await?;
            job.complete_tx::<D>(&mut tx).await?;
            // Visible only after commit: before it, the row is still running elsewhere.
            tx.commit().await?;
            Ok(())
        }
    }
    let db = TestDb::new().await;
    let mut workers = Workers::new();
    workers.register(AuditWorker).unwrap();
    let client = Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new())
        .fetch_cooldown(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let id = client.insert(Audited {}, None).await.unwrap().job.id;
    let kind = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(Event::Job { kind, job, .. }) = events.recv().await {
                if job.id == id {
                    return kind;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(kind, EventKind::JobCompleted);
    assert_eq!(client.job_get(id).await.unwrap().state, JobState::Completed);
    client.stop().await.unwrap();
}

#[tokio::test]
async fn configuration_errors_are_typed() {
    let db = TestDb::new().await;
    let too_many = Client::builder(db.driver())
        .queue("default", QueueConfig::new().max_workers(10_001))
        .build();
    assert!(matches!(too_many, Err(Error::Config(_))));
    let zero = Client::builder(db.driver())
        .queue("default", QueueConfig::new().max_workers(0))
        .build();
    assert!(matches!(zero, Err(Error::Config(_))));
    let bad_name = Client::builder(db.driver())
        .queue("Bad Name", QueueConfig::new())
        .build();
    assert!(matches!(bad_name, Err(Error::Config(_))));

    let mut workers = Workers::new();
    workers.register(ScriptedWorker::default()).unwrap();
    assert!(matches!(
        workers.register(ScriptedWorker::default()),
        Err(Error::Config(_))
    ));

    let insert_only = Client::builder(db.driver()).build().unwrap();
    assert!(matches!(insert_only.start().await, Err(Error::NoWorkers)));
    assert!(matches!(insert_only.stop().await, Err(Error::NotStarted)));
}

/// Issue 21: the job a periodic job inserts is checked when the client is built, and refused
/// with the error a direct insert of it gives, instead of an error logged at every run.
#[tokio::test]
async fn periodic_job_options_are_refused_when_the_client_is_built() {
    #[derive(Debug, Serialize, Deserialize)]
    struct BadKind {}
    impl JobArgs for BadKind {
        const KIND: &'static str = "bad kind";
    }

    let db = TestDb::new().await;
    let every = Schedule::interval(Duration::from_secs(60));
    let periodic = |opts: InsertOpts| {
        PeriodicJob::new(every.clone(), move || {
            let args = Scripted {
                script: Script::Succeed,
            };
            (args, Some(opts.clone()))
        })
        .id("recipe")
    };
    let without_pending = UniqueOpts::new().by_state([
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Scheduled,
    ]);
    let insert_only = Client::builder(db.driver()).build().unwrap();
    let cases = [
        (InsertOpts::new().unique(without_pending), "missing pending"),
        (InsertOpts::new().priority(9), "priority"),
        (
            InsertOpts::new().max_attempts(1_000_000_000),
            "max_attempts",
        ),
        (InsertOpts::new().max_attempts(0), "max_attempts"),
        (InsertOpts::new().queue("Not A Queue"), "queue name"),
    ];
    for (opts, names) in cases {
        let direct = insert_only
            .insert(
                Scripted {
                    script: Script::Succeed,
                },
                Some(opts.clone()),
            )
            .await;
        let Err(Error::InvalidInsert(direct)) = direct else {
            panic!("a direct insert with {opts:?} was not refused: {direct:?}");
        };
        let built = Client::builder(db.driver())
            .periodic_job(periodic(opts.clone()))
            .build();
        match built {
            Err(Error::InvalidInsert(message)) => {
                assert_eq!(message, format!("periodic job \"recipe\": {direct}"));
                assert!(message.contains(names), "{message}");
            }
            other => panic!("a periodic job with {opts:?} was not refused: {other:?}"),
        }
    }

    // A kind an insert refuses, on a periodic job without an id.
    let bad_kind = PeriodicJob::new(every.clone(), || (BadKind {}, None));
    match Client::builder(db.driver()).periodic_job(bad_kind).build() {
        Err(Error::InvalidInsert(message)) => {
            assert!(
                message.starts_with("periodic job of kind \"bad kind\": kind"),
                "{message}"
            );
        }
        other => panic!("a periodic job of an invalid kind was not refused: {other:?}"),
    }

    // The client's insert options are the job's too, so they are checked with it.
    let inherited = Client::builder(db.driver())
        .insert_opts(InsertOpts::new().priority(0))
        .periodic_job(periodic(InsertOpts::new()))
        .build();
    assert!(
        matches!(&inherited, Err(Error::InvalidInsert(m)) if m.contains("priority")),
        "{inherited:?}"
    );

    // Added to a built client, the same check applies, and nothing is added.
    let client = Client::builder(db.driver())
        .periodic_job(periodic(InsertOpts::new().priority(2)))
        .build()
        .unwrap();
    let added = client
        .periodic_jobs()
        .add(periodic(InsertOpts::new().priority(5)).id("later"));
    assert!(matches!(added, Err(Error::InvalidInsert(_))), "{added:?}");
    assert_eq!(client.periodic_jobs().len(), 1);
}

async fn wait_for_state(client: &Client<D>, id: JobId, state: JobState) {
    let wait = async {
        loop {
            if client.job_get(id).await.unwrap().state == state {
                return;
            }
            // Polling a row: there is no event for "started running".
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("job {id} never became {state}"));
}

#[tokio::test]
async fn harness_works_one_job_in_a_test_transaction() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    let ok = client
        .work_one_tx(
            &mut tx,
            ScriptedWorker::default(),
            Scripted {
                script: Script::Succeed,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(ok.kind, EventKind::JobCompleted);
    assert_eq!(ok.job.state, JobState::Completed);
    assert_eq!(ok.job.attempt, 1);
    let failed = client
        .work_one_tx(
            &mut tx,
            ScriptedWorker::default(),
            Scripted {
                script: Script::Fail,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(failed.kind, EventKind::JobFailed);
    assert_eq!(failed.job.errors[0].error, "scripted failure");
    let snoozed = client
        .work_one_tx(
            &mut tx,
            ScriptedWorker::default(),
            Scripted {
                script: Script::Snooze { millis: 60_000 },
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(snoozed.kind, EventKind::JobSnoozed);
    assert_eq!(snoozed.job.state, JobState::Scheduled);
    tx.rollback().await.unwrap();
    // Nothing outlives the test's transaction.
    assert!(matches!(
        client.job_get(ok.job.id).await,
        Err(Error::JobNotFound(_))
    ));
}
