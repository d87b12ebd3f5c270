//! Unique jobs: by args, fields, period, queue and state, in a batch, a transaction and a race.

use std::time::Duration;

use millrace::{InsertOpts, JobState, UniqueOpts};
use millrace_test::{TestDb, require_not_inserted};

use crate::common::{Customer, Other, Simple, client, count_jobs, set_state};

use super::at;

#[tokio::test]
async fn unique_by_args_returns_the_existing_job_unchanged() {
    let db = TestDb::new().await;
    let client = client(&db);
    let opts = || Some(InsertOpts::new().unique(UniqueOpts::new().by_args()));

    let first = client.insert(Simple::new("x"), opts()).await.unwrap();
    assert!(!first.unique_skipped_as_duplicate);
    assert_eq!(first.job.unique_key.as_ref().map(Vec::len), Some(32));
    assert_eq!(first.job.unique_states.map(|s| s.bits()), Some(245));

    let second = client
        .insert(
            Simple::new("x"),
            Some(
                InsertOpts::new()
                    .unique(UniqueOpts::new().by_args())
                    .priority(4)
                    .tags(["ignored"]),
            ),
        )
        .await
        .unwrap();
    assert!(second.unique_skipped_as_duplicate);
    assert_eq!(second.job, first.job);

    let other = client.insert(Simple::new("y"), opts()).await.unwrap();
    assert!(!other.unique_skipped_as_duplicate);
    assert_ne!(other.job.id, first.job.id);
    assert_eq!(count_jobs(&db).await, 2);

    // The same args without unique options are an ordinary job.
    let plain = client.insert(Simple::new("x"), None).await.unwrap();
    assert!(!plain.unique_skipped_as_duplicate);
    assert_eq!(count_jobs(&db).await, 3);
}

#[tokio::test]
async fn unique_fields_limit_what_by_args_compares() {
    let db = TestDb::new().await;
    let client = client(&db);
    let opts = || Some(InsertOpts::new().unique(UniqueOpts::new().by_args()));

    let first = client
        .insert(
            Customer {
                customer_id: 1,
                note: "first".into(),
            },
            opts(),
        )
        .await
        .unwrap();
    let same_customer = client
        .insert(
            Customer {
                customer_id: 1,
                note: "second".into(),
            },
            opts(),
        )
        .await
        .unwrap();
    assert!(same_customer.unique_skipped_as_duplicate);
    assert_eq!(same_customer.job, first.job);
    assert_eq!(same_customer.job.args["note"], "first");

    let other_customer = client
        .insert(
            Customer {
                customer_id: 2,
                note: "first".into(),
            },
            opts(),
        )
        .await
        .unwrap();
    assert!(!other_customer.unique_skipped_as_duplicate);
    assert_eq!(count_jobs(&db).await, 2);
}

#[tokio::test]
async fn unique_by_period_floors_the_scheduled_time() {
    let db = TestDb::new().await;
    let client = client(&db);
    let hourly = |t: &str| {
        Some(
            InsertOpts::new()
                .scheduled_at(at(t))
                .unique(UniqueOpts::new().by_period(Duration::from_secs(3600))),
        )
    };

    let first = client
        .insert(Simple::new("a"), hourly("2035-01-01T10:15:00Z"))
        .await
        .unwrap();
    // Same hour, different args: by period alone ignores the args.
    let same_hour = client
        .insert(Simple::new("b"), hourly("2035-01-01T10:45:00Z"))
        .await
        .unwrap();
    let next_hour = client
        .insert(Simple::new("c"), hourly("2035-01-01T11:05:00Z"))
        .await
        .unwrap();

    assert!(!first.unique_skipped_as_duplicate);
    assert!(same_hour.unique_skipped_as_duplicate);
    assert_eq!(same_hour.job, first.job);
    assert!(!next_hour.unique_skipped_as_duplicate);
    assert_eq!(count_jobs(&db).await, 2);

    // Without a scheduled time the insert time is floored: two inserts a moment apart share
    // a day (unless they straddle midnight, which a retry of the pair rules out).
    let daily =
        || Some(InsertOpts::new().unique(UniqueOpts::new().by_period(Duration::from_secs(86_400))));
    let mut shared = false;
    for _ in 0..2 {
        let a = client.insert(Simple::new("d"), daily()).await.unwrap();
        let b = client.insert(Simple::new("e"), daily()).await.unwrap();
        if b.unique_skipped_as_duplicate && b.job.id == a.job.id {
            shared = true;
            break;
        }
    }
    assert!(
        shared,
        "two inserts a moment apart should share a daily period"
    );
}

#[tokio::test]
async fn unique_by_queue_separates_queues() {
    let db = TestDb::new().await;
    let client = client(&db);
    let in_queue = |q: &str| {
        Some(
            InsertOpts::new()
                .queue(q)
                .unique(UniqueOpts::new().by_queue()),
        )
    };

    let a1 = client
        .insert(Simple::new("1"), in_queue("a"))
        .await
        .unwrap();
    let a2 = client
        .insert(Simple::new("2"), in_queue("a"))
        .await
        .unwrap();
    let b1 = client
        .insert(Simple::new("1"), in_queue("b"))
        .await
        .unwrap();
    // Other kinds have keys of their own.
    let other = client
        .insert(Other { name: "1".into() }, in_queue("a"))
        .await
        .unwrap();

    assert!(!a1.unique_skipped_as_duplicate);
    assert!(a2.unique_skipped_as_duplicate);
    assert_eq!(a2.job.id, a1.job.id);
    assert!(!b1.unique_skipped_as_duplicate);
    assert!(!other.unique_skipped_as_duplicate);
    assert_eq!(count_jobs(&db).await, 3);
}

#[tokio::test]
async fn unique_by_state_without_completed_lets_a_new_job_in_after_completion() {
    let db = TestDb::new().await;
    let client = client(&db);
    let live_only = || {
        Some(InsertOpts::new().unique(UniqueOpts::new().by_state([
            JobState::Available,
            JobState::Pending,
            JobState::Retryable,
            JobState::Running,
            JobState::Scheduled,
        ])))
    };

    let first = client
        .insert(Simple::new("loop"), live_only())
        .await
        .unwrap();
    assert_eq!(first.job.unique_states.map(|s| s.bits()), Some(0b1111_0001));
    let blocked = client
        .insert(Simple::new("loop"), live_only())
        .await
        .unwrap();
    assert!(blocked.unique_skipped_as_duplicate);

    set_state(&db, first.job.id, JobState::Running).await;
    assert!(
        client
            .insert(Simple::new("loop"), live_only())
            .await
            .unwrap()
            .unique_skipped_as_duplicate
    );

    set_state(&db, first.job.id, JobState::Completed).await;
    let next = client
        .insert(Simple::new("loop"), live_only())
        .await
        .unwrap();
    assert!(!next.unique_skipped_as_duplicate);
    assert_ne!(next.job.id, first.job.id);
    assert_eq!(next.job.state, JobState::Available);
}

#[tokio::test]
async fn unique_default_states_block_after_completion_but_not_after_cancel() {
    let db = TestDb::new().await;
    let client = client(&db);
    let opts = || Some(InsertOpts::new().unique(UniqueOpts::new().by_args()));

    let first = client.insert(Simple::new("x"), opts()).await.unwrap();
    set_state(&db, first.job.id, JobState::Completed).await;
    let after_completed = client.insert(Simple::new("x"), opts()).await.unwrap();
    assert!(after_completed.unique_skipped_as_duplicate);
    assert_eq!(after_completed.job.id, first.job.id);
    assert_eq!(after_completed.job.state, JobState::Completed);

    set_state(&db, first.job.id, JobState::Cancelled).await;
    let after_cancelled = client.insert(Simple::new("x"), opts()).await.unwrap();
    assert!(!after_cancelled.unique_skipped_as_duplicate);
    assert_ne!(after_cancelled.job.id, first.job.id);
}

#[tokio::test]
async fn an_empty_by_state_list_means_the_default_states() {
    let db = TestDb::new().await;
    let client = client(&db);
    // As River for Go and River's Rust crate: an empty ByState is the default set, and ByState
    // alone makes a key of the kind only.
    let opts = || Some(InsertOpts::new().unique(UniqueOpts::new().by_state([])));

    let first = client.insert(Simple::new("a"), opts()).await.unwrap();
    assert_eq!(first.job.unique_states.map(|s| s.bits()), Some(245));
    let second = client.insert(Simple::new("b"), opts()).await.unwrap();
    assert!(second.unique_skipped_as_duplicate);
    assert_eq!(second.job.id, first.job.id);
}

#[tokio::test]
async fn a_duplicate_within_one_transaction_is_reported() {
    let db = TestDb::new().await;
    let client = client(&db);
    let opts = || Some(InsertOpts::new().unique(UniqueOpts::new().by_args()));

    let mut tx = db.tx().await;
    let first = client
        .insert_tx(&mut tx, Simple::new("x"), opts())
        .await
        .unwrap();
    let second = client
        .insert_tx(&mut tx, Simple::new("x"), opts())
        .await
        .unwrap();
    assert!(!first.unique_skipped_as_duplicate);
    assert!(second.unique_skipped_as_duplicate);
    assert_eq!(second.job, first.job);
    tx.commit().await.unwrap();
    assert_eq!(count_jobs(&db).await, 1);
}

#[tokio::test]
async fn concurrent_unique_inserts_store_one_job() {
    let db = TestDb::new().await;
    let client = client(&db);

    let inserts = (0..8).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .insert(
                    Simple::new("race"),
                    Some(InsertOpts::new().unique(UniqueOpts::new().by_args())),
                )
                .await
                .unwrap()
        })
    });
    let mut results = Vec::new();
    for insert in inserts.collect::<Vec<_>>() {
        results.push(insert.await.unwrap());
    }

    assert_eq!(count_jobs(&db).await, 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| !r.unique_skipped_as_duplicate)
            .count(),
        1
    );
    assert!(results.iter().all(|r| r.job.id == results[0].job.id));
}

#[tokio::test]
async fn exclude_kind_makes_kinds_collide_and_keeps_the_existing_row() {
    let db = TestDb::new().await;
    let client = client(&db);
    let opts = || Some(InsertOpts::new().unique(UniqueOpts::new().by_args().exclude_kind()));

    let simple = client.insert(Simple::new("same"), opts()).await.unwrap();
    let other = client
        .insert(
            Other {
                name: "same".into(),
            },
            opts(),
        )
        .await
        .unwrap();

    assert!(other.unique_skipped_as_duplicate);
    // River for Go would overwrite the kind; River's Rust crate and Millrace leave it.
    assert_eq!(other.job, simple.job);
    assert_eq!(other.job.kind, "simple");
    require_not_inserted::<Other>(client.driver(), None).await;

    // With the kind in the key, the kinds do not collide.
    let with_kind = client
        .insert(
            Other {
                name: "same".into(),
            },
            Some(InsertOpts::new().unique(UniqueOpts::new().by_args())),
        )
        .await
        .unwrap();
    assert!(!with_kind.unique_skipped_as_duplicate);
}
