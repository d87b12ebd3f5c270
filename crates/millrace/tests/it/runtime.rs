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
use sqlx::AssertSqlSafe;
use tokio::sync::broadcast;

use crate::fixture::{
    D, TestDb, begin_tx, run_attempt_elsewhere, set_metadata_raw, settle_before_pause,
};

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
async fn successful_job_completes() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Succeed, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobCompleted);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.attempt, 1);
    assert!(row.finalized_at.is_some());
    assert_eq!(row.attempted_by, vec![rt.client.id().to_owned()]);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn failed_job_is_retried_with_an_attempt_error() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Fail, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    // River's first retry comes after about 1 s: within 5 s, so straight to available.
    assert_eq!(row.state, JobState::Available);
    assert_eq!(row.errors.len(), 1);
    assert_eq!(row.errors[0].attempt, 1);
    assert_eq!(row.errors[0].error, "scripted failure");
    assert_eq!(Some(row.errors[0].at), row.attempted_at);
    // It runs again once due, as attempt 2.
    let (_, second) = rt.outcome(id).await;
    assert_eq!(second.attempt, 2);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn an_error_holding_nul_is_recorded_and_its_batch_completes() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    // Inserted together so that they are fetched, and completed, in one batch.
    let bad = rt.insert(Script::FailWithNul, None).await;
    let good = rt.insert(Script::Succeed, None).await;
    let (kind, _) = rt.outcome(bad).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(bad).await.unwrap();
    assert_eq!(row.errors.len(), 1);
    assert_eq!(row.errors[0].error, "bad\u{FFFD}byte");
    assert!(row.metadata.get("p").is_none());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let row = rt.client.job_get(good).await.unwrap();
        if row.state == JobState::Completed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job beside it is {:?}",
            row.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn last_attempt_failure_discards() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt
        .insert(Script::Fail, Some(InsertOpts::new().max_attempts(1)))
        .await;
    let (kind, job) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    assert_eq!(job.state, JobState::Discarded);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Discarded);
    assert!(row.finalized_at.is_some());
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn cancel_error_cancels_the_job() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Cancel, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobCancelled);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.errors.last().unwrap().error, "scripted cancel");
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn snooze_gives_the_attempt_back_and_counts_snoozes() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Snooze { millis: 10 }, None).await;
    for n in 1..=3 {
        let (kind, _) = rt.outcome(id).await;
        assert_eq!(kind, EventKind::JobSnoozed);
        let row = rt.client.job_get(id).await.unwrap();
        assert!(row.errors.is_empty(), "a snooze records no error");
        assert!(row.metadata["snoozes"].as_i64().unwrap() >= n);
        assert!(row.attempt <= 1, "snoozing never spends attempts");
    }
    rt.client.stop().await.unwrap();
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.attempt, 0);
}

#[tokio::test]
async fn long_snooze_schedules_the_job() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Snooze { millis: 60_000 }, None).await;
    rt.outcome(id).await;
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Scheduled);
    assert_eq!(row.attempt, 0);
    assert_eq!(row.metadata["snoozes"], 1);
    rt.client.stop().await.unwrap();
}

// Issue 13, item 2: a snooze on metadata that is not an object used to append to it on
// every snooze (PostgreSQL) or leave it unchanged (SQLite), so the count never grew.
#[tokio::test]
async fn snooze_on_metadata_that_is_not_an_object_keeps_it_and_counts() {
    let db = TestDb::new().await;
    let foreign = ["[]", r#""str""#, "5", "null", r#"[{"snoozes": 7}]"#];
    let inserter = Client::builder(db.driver()).build().unwrap();
    let mut ids = Vec::new();
    for raw in foreign {
        let id = inserter
            .insert(
                Scripted {
                    script: Script::Snooze { millis: 10 },
                },
                None,
            )
            .await
            .unwrap()
            .job
            .id;
        set_metadata_raw(&db, id, raw).await;
        ids.push(id);
    }
    let mut rt = start(&db, |b| b).await;
    let mut snoozed = std::collections::HashMap::<JobId, usize>::new();
    let wait = async {
        while ids
            .iter()
            .any(|id| snoozed.get(id).copied().unwrap_or(0) < 3)
        {
            if let Event::Job { kind, job, .. } = rt.events.recv().await.unwrap() {
                assert_eq!(kind, EventKind::JobSnoozed, "job {} {kind:?}", job.id);
                *snoozed.entry(job.id).or_default() += 1;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("every job snoozes three times");
    rt.client.stop().await.unwrap();
    for (id, raw) in ids.iter().zip(foreign) {
        let row = rt.client.job_get(*id).await.unwrap();
        let old: serde_json::Value = serde_json::from_str(raw).unwrap();
        let object = row.metadata.as_object().expect("metadata became an object");
        assert_eq!(object.len(), 2, "{raw}: {}", row.metadata);
        assert_eq!(object["millrace:replaced_metadata"], old, "{raw}");
        assert!(
            object["snoozes"].as_i64().unwrap() >= 3,
            "{raw}: {}",
            row.metadata
        );
        assert_eq!(row.attempt, 0, "{raw}: snoozing spends no attempt");
        assert!(row.errors.is_empty());
    }
}

// Issue 13, item 2: a snooze past year 9999 used to run the job again at once.
#[tokio::test]
async fn snooze_past_year_9999_fails_the_attempt() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let ten_thousand_years = 10_000 * 366 * 86_400 * 1_000;
    let id = rt
        .insert(
            Script::Snooze {
                millis: ten_thousand_years,
            },
            Some(InsertOpts::new().max_attempts(1)),
        )
        .await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    rt.client.stop().await.unwrap();
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.attempt, 1, "a refused snooze spends its attempt");
    assert_eq!(row.errors.len(), 1);
    assert!(
        row.errors[0].error.contains("snooze") && row.errors[0].error.contains("9999"),
        "{}",
        row.errors[0].error
    );
    assert!(row.metadata.get("snoozes").is_none());
}

#[tokio::test]
async fn panic_is_recorded_with_a_trace_and_the_client_lives_on() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Panic, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    let error = row.errors.last().unwrap();
    assert_eq!(error.error, "panic: scripted panic");
    assert!(!error.trace.is_empty(), "a panic records a stack trace");
    // The client still works jobs.
    let ok = rt.insert(Script::Succeed, None).await;
    assert_eq!(rt.outcome(ok).await.0, EventKind::JobCompleted);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_fires_the_token_and_records_an_error() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(Some(Duration::from_millis(100)))).await;
    let id = rt.insert(Script::WaitForToken, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    assert!(
        row.errors[0].error.contains("timed out"),
        "{:?}",
        row.errors
    );
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_aborts_work_that_ignores_its_token() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(Some(Duration::from_millis(100)))).await;
    let id = rt.insert(Script::Ignore { millis: 60_000 }, None).await;
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobFailed);
    let row = rt.client.job_get(id).await.unwrap();
    assert!(row.errors[0].error.contains("timed out"));
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_kind_is_an_error_with_a_clear_message() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    #[derive(Serialize)]
    struct Stranger {}
    impl JobArgs for Stranger {
        const KIND: &'static str = "stranger";
    }
    let id = rt.client.insert(Stranger {}, None).await.unwrap().job.id;
    rt.outcome(id).await;
    let row = rt.client.job_get(id).await.unwrap();
    assert!(
        row.errors[0]
            .error
            .contains("no worker is registered for kind \"stranger\"")
    );
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn undecodable_args_are_an_error_with_a_clear_message() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    #[derive(Serialize)]
    struct Wrong {
        script: i64,
    }
    impl JobArgs for Wrong {
        const KIND: &'static str = "scripted";
    }
    let id = rt
        .client
        .insert(Wrong { script: 5 }, None)
        .await
        .unwrap()
        .job
        .id;
    rt.outcome(id).await;
    let row = rt.client.job_get(id).await.unwrap();
    assert!(
        row.errors[0]
            .error
            .contains("failed to decode args of kind \"scripted\""),
        "{}",
        row.errors[0].error
    );
    assert_eq!(rt.worker.runs.load(Ordering::SeqCst), 0);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn remote_cancel_reaches_a_running_job() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::WaitForToken, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    // From another client, as an admin tool would.
    let admin = Client::builder(db.driver()).build().unwrap();
    admin.job_cancel(id).await.unwrap();
    let (kind, _) = rt.outcome(id).await;
    assert_eq!(kind, EventKind::JobCancelled);
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert!(row.metadata.get("cancel_attempted_at").is_some());
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn soft_stop_lets_running_jobs_finish() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b).await;
    let id = rt.insert(Script::Ignore { millis: 300 }, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    rt.client.stop().await.unwrap();
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Completed
    );
}

#[tokio::test]
async fn hard_stop_returns_jobs_without_spending_an_attempt() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b.job_timeout(None)).await;
    let cooperative = rt.insert(Script::WaitForToken, None).await;
    let stubborn = rt.insert(Script::Ignore { millis: 60_000 }, None).await;
    wait_for_state(&rt.client, cooperative, JobState::Running).await;
    wait_for_state(&rt.client, stubborn, JobState::Running).await;
    tokio::time::timeout(DEADLINE, rt.client.stop_and_cancel())
        .await
        .expect("hard stop ends within the grace period")
        .unwrap();
    for id in [cooperative, stubborn] {
        let row = rt.client.job_get(id).await.unwrap();
        assert_eq!(row.state, JobState::Available, "job {id}");
        assert_eq!(row.attempt, 0, "job {id} keeps its attempt");
        assert!(row.errors.is_empty());
    }
}

#[tokio::test]
async fn stop_timeout_escalates_to_cancel() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::WaitForToken, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    tokio::time::timeout(
        DEADLINE,
        rt.client.stop_with_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("stop ends")
    .unwrap();
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Available
    );
}

#[tokio::test]
async fn completion_is_fenced_on_the_attempt() {
    let db = TestDb::new().await;
    let rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::Ignore { millis: 500 }, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    // A rescuer takes the job for stuck and another client runs it as attempt 2 meanwhile.
    run_attempt_elsewhere(&db, id).await;
    rt.client.stop().await.unwrap();
    // The late worker's completion of attempt 1 must not overwrite attempt 2.
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.attempt, 2);
}

// Issue 13, item 4: a completion the fence kept out used to be dropped without a word.
#[tokio::test]
async fn fenced_out_completion_is_reported_and_leaves_the_row() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b.job_timeout(None)).await;
    let id = rt.insert(Script::Ignore { millis: 500 }, None).await;
    wait_for_state(&rt.client, id, JobState::Running).await;
    // A rescue takes the job and another client runs it as attempt 2 while the worker runs.
    run_attempt_elsewhere(&db, id).await;
    let wait = async {
        loop {
            match rt.events.recv().await.unwrap() {
                Event::CompletionsFencedOut { jobs } => return jobs,
                Event::Job { kind, job, .. } if job.id == id => {
                    panic!("a fenced-out completion reported as {kind:?}")
                }
                _ => {}
            }
        }
    };
    let jobs = tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the fenced-out completion is reported");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, id);
    assert_eq!(
        jobs[0].attempt, 1,
        "the event names the attempt that was fenced out"
    );
    rt.client.stop().await.unwrap();
    let row = rt.client.job_get(id).await.unwrap();
    assert_eq!(
        row.state,
        JobState::Running,
        "left as the other side left it"
    );
    assert_eq!(row.attempt, 2);
    assert_eq!(row.attempted_by.last().map(String::as_str), Some("other"));
}

#[tokio::test]
async fn paused_queue_is_not_fetched_until_resumed() {
    let db = TestDb::new().await;
    let mut rt = start(&db, |b| b).await;
    settle_before_pause(&db).await;
    rt.client.queue_pause("default").await.unwrap();
    let id = rt.insert(Script::Succeed, None).await;
    // Prove the pause holds by completing a job of another queue after the insert.
    rt.client
        .queue_add("other", QueueConfig::new())
        .await
        .unwrap();
    let other = rt
        .insert(Script::Succeed, Some(InsertOpts::new().queue("other")))
        .await;
    rt.outcome(other).await;
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Available
    );
    let queue = db.schema().qualify("river_queue");
    let paused: Option<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT paused_at IS NOT NULL FROM {queue} WHERE name = 'default'"
    )))
    .fetch_optional(db.pool())
    .await
    .unwrap();
    assert_eq!(paused, Some(true));
    rt.client.queue_resume("default").await.unwrap();
    assert_eq!(rt.outcome(id).await.0, EventKind::JobCompleted);
    rt.client.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_started_on_a_paused_queue_takes_nothing_from_it() {
    let db = TestDb::new().await;
    let worker = ScriptedWorker::default();
    let client = builder(&db, worker.clone())
        .queue("other", QueueConfig::new())
        .build()
        .expect("build");
    let events = client.subscribe();
    client.queue_pause("default").await.unwrap();
    let id = client
        .insert(
            Scripted {
                script: Script::Succeed,
            },
            None,
        )
        .await
        .unwrap()
        .job
        .id;
    client.start().await.expect("start");
    let mut rt = Running {
        client,
        events,
        worker,
    };
    // A job of another queue completing shows the producers are running; the paused
    // queue's job must still be waiting, not taken by a first fetch before the first refresh.
    let other = rt
        .insert(Script::Succeed, Some(InsertOpts::new().queue("other")))
        .await;
    rt.outcome(other).await;
    assert_eq!(
        rt.client.job_get(id).await.unwrap().state,
        JobState::Available
    );
    rt.client.queue_resume("default").await.unwrap();
    assert_eq!(rt.outcome(id).await.0, EventKind::JobCompleted);
    rt.client.stop().await.unwrap();
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
