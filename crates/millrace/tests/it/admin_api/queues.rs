//! The queue admin verbs, and every client hearing of a change.

use std::time::Duration;

use millrace::{Client, Error, Event, QUEUE_LIST_MAX_LIMIT, QueueUpdateParams, Workers};
use serde_json::json;

use crate::fixture::TestDb;

use super::{DEADLINE, NoteWorker, started_builder};

#[tokio::test]
async fn queue_admin_gets_lists_and_updates_and_every_client_hears_of_it() {
    let db = TestDb::new().await;
    let mut workers = Workers::new();
    workers.register(NoteWorker).unwrap();
    let worker_client = started_builder(&db, workers).build().unwrap();
    let mut events = worker_client.subscribe();
    worker_client.start().await.unwrap();
    let admin = Client::builder(db.driver()).build().unwrap();

    assert!(matches!(
        admin.queue_get("nowhere").await,
        Err(Error::QueueNotFound(name)) if name == "nowhere"
    ));
    let updated = admin
        .queue_update(
            "reports",
            QueueUpdateParams::new().metadata(json!({ "owner": "billing" })),
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "reports");
    assert_eq!(updated.metadata, json!({ "owner": "billing" }));
    let heard = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(Event::QueueMetadataChanged { queue, metadata }) = events.recv().await {
                return (queue, metadata);
            }
        }
    })
    .await
    .expect("the other client hears of the change");
    assert_eq!(heard, ("reports".to_owned(), json!({ "owner": "billing" })));
    // The producer records its queue on its first refresh, which races its first fetch: wait
    // for the row rather than assume it is there by now.
    tokio::time::timeout(DEADLINE, async {
        while admin.queue_get(millrace::QUEUE_DEFAULT).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker client records its queue");
    worker_client.stop().await.unwrap();

    let got = admin.queue_get("reports").await.unwrap();
    assert_eq!(got.metadata, json!({ "owner": "billing" }));
    let unchanged = admin
        .queue_update("reports", QueueUpdateParams::new())
        .await
        .unwrap();
    assert_eq!(
        unchanged.metadata, got.metadata,
        "no change without metadata"
    );

    for name in ["alpha", "bravo"] {
        admin
            .queue_update(name, QueueUpdateParams::new().metadata(json!({})))
            .await
            .unwrap();
    }
    let names = |queues: Vec<millrace::QueueRow>| -> Vec<String> {
        queues.into_iter().map(|q| q.name).collect()
    };
    let first = names(admin.queue_list(None, 2).await.unwrap());
    assert_eq!(first, ["alpha", "bravo"]);
    let rest = names(admin.queue_list(Some("bravo"), 2).await.unwrap());
    assert_eq!(rest, [millrace::QUEUE_DEFAULT, "reports"]);
    for limit in [0, QUEUE_LIST_MAX_LIMIT + 1] {
        assert!(matches!(
            admin.queue_list(None, limit).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        admin
            .queue_update("reports", QueueUpdateParams::new().metadata(json!([1])))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        admin
            .queue_update("bad name!", QueueUpdateParams::new().metadata(json!({})))
            .await,
        Err(Error::Config(_))
    ));
}
