//! A queue's limits as the fleet sees them: the metadata override, an invalid one, clients
//! that disagree, and setting the override alone.

use millrace::{Client, ConcurrencyLimit, Error, QueueUpdateParams};
use millrace_test::eventually;

use crate::fixture::{D, TestDb};

use super::{Counting, DEADLINE, QUEUE, client, insert_calls, wait_all_completed};

/// Starts and stops `client` once, so its queue's row exists, then stores `metadata` on it and
/// starts the client again: its producer reads the override before its first fetch.
async fn restart_with_metadata(client: &Client<D>, metadata: serde_json::Value) {
    client.start().await.unwrap();
    client.stop().await.unwrap();
    client
        .queue_update(QUEUE, QueueUpdateParams::new().metadata(metadata))
        .await
        .unwrap();
    client.start().await.unwrap();
}

/// Issue 19, part 4: a concurrency limit in the queue's metadata, in River Pro's shape,
/// overrides the one the client was built with.
#[tokio::test]
async fn a_concurrency_override_in_the_queues_metadata_wins_over_the_code() {
    let db = TestDb::new().await;
    let worker = Counting::default();
    let client = client(&db, "override", worker.clone(), ConcurrencyLimit::global(5));
    restart_with_metadata(&client, ConcurrencyLimit::global(1).to_queue_metadata()).await;
    // The producer reads the queue's row as it starts, before its first fetch.
    millrace_test::eventually("the override applied", DEADLINE, || async {
        let health = client.health().await;
        health.queues.get(QUEUE).and_then(|q| q.concurrency.clone())
            == Some(ConcurrencyLimit::global(1))
    })
    .await;
    assert_eq!(
        client.health().await.queues[QUEUE].concurrency_override_error,
        None
    );
    // Four jobs that would run together under the code's limit of 5.
    insert_calls(&client, 4, 1, 100).await;
    wait_all_completed(&client, 4).await;
    assert_eq!(
        worker.state.lock().unwrap().total_max,
        1,
        "the override's limit of 1 held"
    );
    client.stop().await.unwrap();
}

/// An override of another shape is not applied: the client keeps its own limit and its health
/// report says why.
#[tokio::test]
async fn an_invalid_concurrency_override_is_reported_and_not_applied() {
    let db = TestDb::new().await;
    let client = client(
        &db,
        "bad-override",
        Counting::default(),
        ConcurrencyLimit::global(2),
    );
    let cases = [
        (
            serde_json::json!({"concurrency": {"global_limit": "one"}}),
            "not a whole number",
        ),
        (
            serde_json::json!({"concurrency": {"global_limit": 0}}),
            "global or a local limit",
        ),
        (
            serde_json::json!({"concurrency": {"global_limit": 1, "partition": {"by_args": ["a b"]}}}),
            "may hold only",
        ),
        (serde_json::json!({"concurrency": [1]}), "not an object"),
    ];
    for (metadata, reason) in cases {
        restart_with_metadata(&client, metadata.clone()).await;
        millrace_test::eventually(
            &format!("the override {metadata} refused"),
            DEADLINE,
            || async {
                let health = client.health().await;
                health
                    .queues
                    .get(QUEUE)
                    .is_some_and(|q| q.concurrency_override_error.is_some())
            },
        )
        .await;
        let health = client.health().await;
        let queue = &health.queues[QUEUE];
        assert_eq!(
            queue.concurrency,
            Some(ConcurrencyLimit::global(2)),
            "{metadata}: the code's limit stays"
        );
        let error = queue.concurrency_override_error.clone().unwrap_or_default();
        assert!(error.contains(reason), "{metadata}: {error:?}");
        client.stop().await.unwrap();
    }
}

/// Issue 19, part 4: clients built with different limits for one queue are detected. Each
/// declares its limits in its heartbeat row; a client that finds other live ones declaring
/// different ones reports the first and how many more (clients that agree, dead ones and other
/// queues are left out: `limits_check`'s unit test).
#[tokio::test]
async fn clients_that_disagree_about_a_queues_limits_are_reported() {
    let db = TestDb::new().await;
    let declared = |client: &Client<D>, id: &'static str| {
        let client = client.clone();
        async move {
            client.fleet_clients().await.unwrap().iter().any(|c| {
                c.id == id
                    && c.declared_limits
                        .as_ref()
                        .is_some_and(|d| d.get(QUEUE).is_some())
            })
        }
    };
    let a = client(
        &db,
        "declares-2",
        Counting::default(),
        ConcurrencyLimit::global(2),
    );
    a.start().await.unwrap();
    eventually("a declares its limits", DEADLINE, || {
        declared(&a, "declares-2")
    })
    .await;
    let fleet = a.fleet_clients().await.unwrap();
    assert_eq!(
        fleet[0].declared_limits.as_ref().unwrap()[QUEUE]["concurrency"]["global_limit"],
        2,
        "{fleet:?}"
    );

    // Two declaring 2, and one declaring 5 that reports them.
    let same = client(
        &db,
        "declares-2-too",
        Counting::default(),
        ConcurrencyLimit::global(2),
    );
    same.start().await.unwrap();
    // `other` compares at its start: both must have declared by then.
    eventually("the second client declares its limits", DEADLINE, || {
        declared(&a, "declares-2-too")
    })
    .await;
    let other = client(
        &db,
        "declares-5",
        Counting::default(),
        ConcurrencyLimit::global(5),
    );
    other.start().await.unwrap();
    let report = |client: &Client<D>| {
        let client = client.clone();
        async move {
            client
                .health()
                .await
                .queues
                .get(QUEUE)
                .and_then(|q| q.limits_disagreement.clone())
        }
    };
    eventually(
        "the one declaring 5 reports the others",
        DEADLINE,
        || async { report(&other).await.is_some() },
    )
    .await;
    let text = report(&other).await.unwrap();
    assert!(
        text.starts_with("client \"declares-2\" declares")
            && text.contains("\"global_limit\":2")
            && text.contains("this client declares")
            && text.contains("\"global_limit\":5")
            && text.ends_with("(1 more clients differ too)"),
        "{text}"
    );
    for client in [a, same, other] {
        client.stop().await.unwrap();
    }
}

/// `queue_set_concurrency` writes the override in River Pro's shape beside the queue's other
/// metadata, refuses an invalid limit before writing, and removes only its own key.
#[tokio::test]
async fn queue_set_concurrency_keeps_the_queues_other_metadata() {
    let db = TestDb::new().await;
    let client = client(
        &db,
        "set-concurrency",
        Counting::default(),
        ConcurrencyLimit::global(5),
    );
    let owner = serde_json::json!({"owner": "growth"});
    client
        .queue_update(QUEUE, QueueUpdateParams::new().metadata(owner.clone()))
        .await
        .unwrap();
    let row = client
        .queue_set_concurrency(QUEUE, Some(&ConcurrencyLimit::global(1)))
        .await
        .unwrap();
    assert_eq!(row.metadata["owner"], "growth");
    assert_eq!(
        ConcurrencyLimit::from_queue_metadata(&row.metadata),
        Ok(Some(ConcurrencyLimit::global(1)))
    );
    let err = client
        .queue_set_concurrency(QUEUE, Some(&ConcurrencyLimit::global(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Limit { ref queue, .. } if queue == QUEUE),
        "{err:?}"
    );
    client.start().await.unwrap();
    eventually("the override applied", DEADLINE, || async {
        let health = client.health().await;
        health.queues.get(QUEUE).and_then(|q| q.concurrency.clone())
            == Some(ConcurrencyLimit::global(1))
    })
    .await;
    client.stop().await.unwrap();
    let row = client.queue_set_concurrency(QUEUE, None).await.unwrap();
    assert_eq!(row.metadata, owner, "only the override is removed");
}
