//! Insert notifications: `river_insert` with the queue, at most once per queue per 100 ms,
//! and at commit.

use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use millrace::{InsertManyParams, InsertOpts};
use millrace_test::TestDb;
use serde_json::json;

use crate::common::{Notifications, Simple, client};

#[tokio::test]
async fn insert_notifies_river_insert_with_the_queue() {
    let db = TestDb::new().await;
    let mut notes = Notifications::listen(&db, "river_insert").await;
    let client = client(&db);

    client
        .insert(Simple::new("a"), Some(InsertOpts::new().queue("mail")))
        .await
        .unwrap();
    assert_eq!(notes.next().await, json!({ "queue": "mail" }));

    client
        .insert_many([
            InsertManyParams::new(Simple::new("b")).opts(InsertOpts::new().queue("many_a")),
            InsertManyParams::new(Simple::new("c")).opts(InsertOpts::new().queue("many_b")),
            InsertManyParams::new(Simple::new("d")).opts(InsertOpts::new().queue("many_a")),
        ])
        .await
        .unwrap();
    let mut queues = vec![notes.next().await, notes.next().await];
    queues.sort_by_key(|p| p["queue"].as_str().unwrap().to_owned());
    assert_eq!(
        queues,
        [json!({ "queue": "many_a" }), json!({ "queue": "many_b" })]
    );

    client
        .insert_many_fast([
            InsertManyParams::new(Simple::new("e")).opts(InsertOpts::new().queue("bulk"))
        ])
        .await
        .unwrap();
    let seen = notes.until_queue("bulk").await;
    assert_eq!(
        seen,
        [json!({ "queue": "bulk" })],
        "many_a was notified twice"
    );
}

#[tokio::test]
async fn insert_notifies_each_queue_at_most_once_per_100ms() {
    let db = TestDb::new().await;
    let mut notes = Notifications::listen(&db, "river_insert").await;
    let client = client(&db);
    let in_queue = |q: &str| Some(InsertOpts::new().queue(q));

    let started = Instant::now();
    client
        .insert(Simple::new("1"), in_queue("limited"))
        .await
        .unwrap();
    client
        .insert(Simple::new("2"), in_queue("limited"))
        .await
        .unwrap();
    // The queue's last notification went out before this point, whenever the first insert sent
    // it.
    let limited_at = Instant::now();
    let quick = started.elapsed() < Duration::from_millis(100);
    client
        .insert(Simple::new("3"), in_queue("sentinel"))
        .await
        .unwrap();

    let seen = notes.until_queue("sentinel").await;
    let limited = seen.iter().filter(|p| p["queue"] == "limited").count();
    if quick {
        assert_eq!(limited, 1, "{seen:?}");
    } else {
        // The machine was too slow to test the limit: the two inserts were 100 ms apart.
        assert!((1..=2).contains(&limited), "{seen:?}");
    }

    // Once the interval has passed the queue is notified again. Waiting out the interval is
    // the behaviour under test, not a guess at how long something takes.
    tokio::time::sleep_until((limited_at + Duration::from_millis(150)).into()).await;
    client
        .insert(Simple::new("4"), in_queue("limited"))
        .await
        .unwrap();
    assert_eq!(notes.next().await, json!({ "queue": "limited" }));
}

#[tokio::test]
async fn scheduled_and_pending_inserts_do_not_notify() {
    let db = TestDb::new().await;
    let mut notes = Notifications::listen(&db, "river_insert").await;
    let client = client(&db);
    let later = Timestamp::now() + 1.hour();

    client
        .insert(
            Simple::new("s"),
            Some(InsertOpts::new().queue("quiet").scheduled_at(later)),
        )
        .await
        .unwrap();
    client
        .insert(
            Simple::new("p"),
            Some(InsertOpts::new().queue("quiet").pending()),
        )
        .await
        .unwrap();
    client
        .insert_many_fast([
            InsertManyParams::new(Simple::new("fs"))
                .opts(InsertOpts::new().queue("quiet").scheduled_at(later)),
            InsertManyParams::new(Simple::new("fp"))
                .opts(InsertOpts::new().queue("quiet").pending()),
        ])
        .await
        .unwrap();
    client
        .insert(Simple::new("x"), Some(InsertOpts::new().queue("sentinel")))
        .await
        .unwrap();

    let seen = notes.until_queue("sentinel").await;
    assert_eq!(seen, [json!({ "queue": "sentinel" })]);
}

#[tokio::test]
async fn insert_tx_notifies_at_commit_and_not_after_rollback() {
    let db = TestDb::new().await;
    let mut notes = Notifications::listen(&db, "river_insert").await;
    let client = client(&db);
    let other_client = crate::common::client(&db);

    let mut tx = db.tx().await;
    client
        .insert_tx(
            &mut tx,
            Simple::new("a"),
            Some(InsertOpts::new().queue("committed")),
        )
        .await
        .unwrap();
    other_client
        .insert(
            Simple::new("b"),
            Some(InsertOpts::new().queue("sentinel_one")),
        )
        .await
        .unwrap();
    assert_eq!(
        notes.until_queue("sentinel_one").await,
        [json!({ "queue": "sentinel_one" })]
    );
    tx.commit().await.unwrap();
    assert_eq!(notes.next().await, json!({ "queue": "committed" }));

    let mut tx = db.tx().await;
    client
        .insert_tx(
            &mut tx,
            Simple::new("c"),
            Some(InsertOpts::new().queue("rolled_back")),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    other_client
        .insert(
            Simple::new("d"),
            Some(InsertOpts::new().queue("sentinel_two")),
        )
        .await
        .unwrap();
    assert_eq!(
        notes.until_queue("sentinel_two").await,
        [json!({ "queue": "sentinel_two" })]
    );
}
