//! `Client::run_until_shutdown`: SIGTERM stops softly, letting the running job finish; a
//! second signal cancels it at once, returning it to `available` without spending an attempt.
//! Each test sends the signal to its own process, which nextest runs alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use millrace::{
    Client, Job, JobArgs, JobState, QueueConfig, ShutdownSignal, WorkError, Worker, Workers,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::fixture::{D, TestDb};

#[derive(Debug, Serialize, Deserialize)]
struct Slow {
    /// How long the job works, ignoring its token unless `cooperative`.
    millis: u64,
    cooperative: bool,
}

impl JobArgs for Slow {
    const KIND: &'static str = "slow";
}

struct SlowWorker {
    started: Arc<Notify>,
    finished: Arc<AtomicUsize>,
}

impl Worker for SlowWorker {
    type Args = Slow;

    async fn work(&self, job: Job<Slow>) -> Result<(), WorkError> {
        self.started.notify_one();
        let sleep = tokio::time::sleep(Duration::from_millis(job.args.millis));
        if job.args.cooperative {
            tokio::select! {
                () = sleep => {}
                () = job.cancelled() => return Err(WorkError::msg("cancelled by the stop")),
            }
        } else {
            sleep.await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn send(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

async fn started_client(db: &TestDb) -> (Client<D>, Arc<Notify>, Arc<AtomicUsize>) {
    let started = Arc::new(Notify::new());
    let finished = Arc::new(AtomicUsize::new(0));
    let mut workers = Workers::new();
    workers
        .register(SlowWorker {
            started: started.clone(),
            finished: finished.clone(),
        })
        .unwrap();
    let client = Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new().max_workers(2))
        .cancel_grace(Duration::from_millis(200))
        .build()
        .unwrap();
    client.start().await.unwrap();
    (client, started, finished)
}

#[tokio::test]
async fn sigterm_stops_softly_and_lets_the_running_job_finish() {
    let db = TestDb::new().await;
    let (client, started, finished) = started_client(&db).await;
    let id = client
        .insert(
            Slow {
                millis: 700,
                cooperative: false,
            },
            None,
        )
        .await
        .unwrap()
        .job
        .id;
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .expect("the job starts");
    let run = {
        let client = client.clone();
        tokio::spawn(async move { client.run_until_shutdown(Duration::from_secs(20)).await })
    };
    // The spawned task installs its handlers on its first poll, which this wait lets happen.
    tokio::time::sleep(Duration::from_millis(100)).await;
    send("-TERM");
    let signal = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the stop ends")
        .unwrap()
        .unwrap();
    assert_eq!(signal, ShutdownSignal::Terminate);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the running job finished"
    );
    assert_eq!(client.job_get(id).await.unwrap().state, JobState::Completed);
    assert!(matches!(
        client.stop().await,
        Err(millrace::Error::NotStarted)
    ));
}

#[tokio::test]
async fn a_second_signal_cancels_running_jobs_at_once_without_spending_an_attempt() {
    let db = TestDb::new().await;
    let (client, started, finished) = started_client(&db).await;
    let id = client
        .insert(
            Slow {
                millis: 60_000,
                cooperative: true,
            },
            None,
        )
        .await
        .unwrap()
        .job
        .id;
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .expect("the job starts");
    let run = {
        let client = client.clone();
        tokio::spawn(async move { client.run_until_shutdown(Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    send("-INT");
    // The first signal waits for the job (60 s); the second must end the stop at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished(), "a soft stop waits for the running job");
    let second = Instant::now();
    send("-TERM");
    let signal = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("the second signal ends the stop")
        .unwrap()
        .unwrap();
    assert_eq!(
        signal,
        ShutdownSignal::Interrupt,
        "the first signal is returned"
    );
    eprintln!("second signal to stopped: {:?}", second.elapsed());
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    let row = client.job_get(id).await.unwrap();
    assert_eq!(row.state, JobState::Available, "returned, not failed");
    assert_eq!(row.attempt, 0, "the cut-off attempt is not spent");
    assert!(row.errors.is_empty());
}

#[tokio::test]
async fn run_until_shutdown_on_a_client_not_started_is_an_error() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    assert!(matches!(
        client.run_until_shutdown(Duration::from_secs(1)).await,
        Err(millrace::Error::NotStarted)
    ));
}
