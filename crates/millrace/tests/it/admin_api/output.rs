//! What a running job records: its output, and metadata merged while it runs.

use std::sync::Arc;

use millrace::{
    Client, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobState, MAX_OUTPUT_BYTES,
    WorkError, Worker, Workers,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::fixture::{D, TestDb, take_row_away};

use super::{DEADLINE, started_builder};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    step: Step,
}

impl JobArgs for Record {
    const KIND: &'static str = "record";
}

#[derive(Clone)]
struct Recorder {
    said: mpsc::UnboundedSender<String>,
    go_on: Arc<Notify>,
}

impl Worker for Recorder {
    type Args = Record;

    async fn work(&self, job: Job<Record>) -> Result<(), WorkError> {
        match job.args.step {
            Step::Output => job.set_output(&json!({ "rows": 42 }))?,
            Step::OutputThenFail => {
                job.set_output(&"partial")?;
                return Err(WorkError::msg("failed after output"));
            }
            Step::OversizedOutput => {
                let err = job.set_output(&"x".repeat(MAX_OUTPUT_BYTES)).unwrap_err();
                self.said.send(err.to_string()).unwrap();
                job.set_output(&"small")?;
            }
            Step::Progress => {
                job.merge_metadata(json!({ "progress": 50 })).await?;
                self.said.send("merged".to_owned()).unwrap();
                self.go_on.notified().await;
                let again = job.merge_metadata(json!({ "progress": 100 })).await;
                self.said.send(format!("{again:?}")).unwrap();
            }
        }
        Ok(())
    }
}

struct Recording {
    client: Client<D>,
    events: broadcast::Receiver<Event>,
    said: mpsc::UnboundedReceiver<String>,
    go_on: Arc<Notify>,
}

impl Recording {
    async fn start(db: &TestDb) -> Self {
        let (said_tx, said) = mpsc::unbounded_channel();
        let go_on = Arc::new(Notify::new());
        let mut workers = Workers::new();
        workers
            .register(Recorder {
                said: said_tx,
                go_on: go_on.clone(),
            })
            .unwrap();
        let client = started_builder(db, workers).build().unwrap();
        let events = client.subscribe();
        client.start().await.unwrap();
        Recording {
            client,
            events,
            said,
            go_on,
        }
    }

    async fn insert(&self, step: Step, opts: InsertOpts) -> JobId {
        self.client
            .insert(Record { step }, Some(opts))
            .await
            .unwrap()
            .job
            .id
    }

    async fn outcome(&mut self, id: JobId) -> EventKind {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Ok(Event::Job { kind, job, .. }) = self.events.recv().await {
                    if job.id == id {
                        return kind;
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no outcome for job {id}"))
    }

    async fn said(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.said.recv())
            .await
            .expect("the worker says something in time")
            .unwrap()
    }
}

/// What a [`Recorder`] job does.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    /// Records output and succeeds.
    Output,
    /// Records output and fails.
    OutputThenFail,
    /// Tries an output over the limit, then records a small one.
    OversizedOutput,
    /// Merges progress, waits to be told to go on, then merges again.
    Progress,
}

#[tokio::test]
async fn set_output_is_stored_as_metadata_output_with_the_outcome() {
    let db = TestDb::new().await;
    let mut rec = Recording::start(&db).await;
    let ok = rec.insert(Step::Output, InsertOpts::new()).await;
    assert_eq!(rec.outcome(ok).await, EventKind::JobCompleted);
    let row = rec.client.job_get(ok).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
    assert_eq!(row.metadata["output"], json!({ "rows": 42 }));

    let failed = rec
        .insert(Step::OutputThenFail, InsertOpts::new().max_attempts(1))
        .await;
    assert_eq!(rec.outcome(failed).await, EventKind::JobFailed);
    let row = rec.client.job_get(failed).await.unwrap();
    assert_eq!(row.state, JobState::Discarded);
    assert_eq!(row.metadata["output"], "partial");

    let oversized = rec.insert(Step::OversizedOutput, InsertOpts::new()).await;
    let refusal = rec.said().await;
    assert!(
        refusal.contains(&format!("the limit is {MAX_OUTPUT_BYTES}")),
        "{refusal}"
    );
    assert_eq!(rec.outcome(oversized).await, EventKind::JobCompleted);
    assert_eq!(
        rec.client.job_get(oversized).await.unwrap().metadata["output"],
        "small"
    );
    rec.client.stop().await.unwrap();
}

#[tokio::test]
async fn merge_metadata_shows_while_running_and_is_refused_once_the_row_is_lost() {
    let db = TestDb::new().await;
    let mut rec = Recording::start(&db).await;
    let id = rec
        .insert(
            Step::Progress,
            InsertOpts::new().metadata(json!({ "from_insert": true })),
        )
        .await;
    assert_eq!(rec.said().await, "merged");
    let row = rec.client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.metadata["progress"], 50);
    assert_eq!(row.metadata["from_insert"], true);

    take_row_away(&db, id).await;
    rec.go_on.notify_one();
    assert_eq!(
        rec.said().await,
        format!("Err(JobNotRunning(JobId({})))", id.0)
    );
    // A soft stop waits for the job's end; its completion is fenced out (and sends no event).
    rec.client.stop().await.unwrap();
    let row = rec.client.job_get(id).await.unwrap();
    assert_eq!(
        row.state,
        JobState::Discarded,
        "the fenced completion did nothing"
    );
    assert_eq!(row.metadata["progress"], 50);
}
