//! SQLite's own notifications: rows of an outbox, polled by every process.

use std::time::Duration;

use millrace::{Client, EventKind};

use crate::fixture::TestDb;
use crate::runtime::{Script, Scripted, start};

// SQLite's notifications are rows polled by every process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_from_another_process_wakes_the_workers() {
    let db = TestDb::new().await;
    // Polling alone would take 30 s; the outbox listener takes about 100 ms.
    let mut rt = start(&db, |b| b.fetch_poll_interval(Duration::from_secs(30))).await;
    // Let the first fetch (at start) pass, so only a notification can wake the producer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other_process = Client::builder(db.0.reopen().await).build().unwrap();
    let started = std::time::Instant::now();
    let id = other_process
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
    assert_eq!(rt.outcome(id).await.0, EventKind::JobCompleted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the notification, not the poll: {:?}",
        started.elapsed()
    );
    rt.client.stop().await.unwrap();
}
