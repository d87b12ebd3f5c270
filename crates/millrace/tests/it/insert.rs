//! Inserting jobs: options, unique jobs, validation, bulk paths and insert notifications.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::{Timestamp, ToSpan};
use millrace::{Error, InsertManyParams, InsertOpts, JobArgs, JobListParams, JobState, UniqueOpts};
use millrace_test::{
    ExpectedJob, RequireInsertedOpts, TestDb, require_inserted, require_inserted_tx,
    require_many_inserted, require_not_inserted,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{
    Configured, Customer, Notifications, Other, Simple, client, client_with, count_jobs, set_state,
};

fn at(s: &str) -> Timestamp {
    s.parse().expect("a valid timestamp")
}

#[tokio::test]
async fn insert_stores_an_available_job_with_rivers_defaults() {
    let db = TestDb::new().await;
    let client = client(&db);

    let before = Timestamp::now();
    let inserted = client.insert(Simple::new("a"), None).await.unwrap();

    assert!(!inserted.unique_skipped_as_duplicate);
    let job = &inserted.job;
    assert_eq!(job.kind, "simple");
    assert_eq!(job.args, json!({ "name": "a" }));
    assert_eq!(job.state, JobState::Available);
    assert_eq!(job.queue, "default");
    assert_eq!(job.priority, 1);
    assert_eq!(job.max_attempts, 25);
    assert_eq!(job.attempt, 0);
    assert!(job.attempted_at.is_none());
    assert!(job.attempted_by.is_empty());
    assert!(job.errors.is_empty());
    assert!(job.finalized_at.is_none());
    assert_eq!(job.metadata, json!({}));
    assert!(job.tags.is_empty());
    assert!(job.unique_key.is_none());
    assert!(job.unique_states.is_none());
    // The database's clock, close to ours.
    assert!(
        job.scheduled_at >= before - 5.seconds()
            && job.scheduled_at <= Timestamp::now() + 5.seconds()
    );

    let found = require_inserted::<Simple>(
        client.driver(),
        Some(
            RequireInsertedOpts::new()
                .queue("default")
                .priority(1)
                .max_attempts(25)
                .state(JobState::Available)
                .tags(Vec::<String>::new()),
        ),
    )
    .await;
    assert_eq!(found.args, Simple::new("a"));
    assert_eq!(found.row, inserted.job);
}

#[tokio::test]
async fn insert_tx_is_visible_only_after_commit() {
    let db = TestDb::new().await;
    let client = client(&db);

    let mut tx = db.tx().await;
    let inserted = client
        .insert_tx(&mut tx, Simple::new("tx"), None)
        .await
        .unwrap();
    require_inserted_tx::<Simple, _>(&client, &mut tx, None).await;
    require_not_inserted::<Simple>(&db, None).await;

    tx.commit().await.unwrap();
    let found = require_inserted::<Simple>(&client, None).await;
    assert_eq!(found.row.id, inserted.job.id);
}

#[tokio::test]
async fn insert_tx_rolled_back_leaves_nothing() {
    let db = TestDb::new().await;
    let client = client(&db);

    let mut tx = db.tx().await;
    client
        .insert_tx(&mut tx, Simple::new("tx"), None)
        .await
        .unwrap();
    client
        .insert_many_tx(&mut tx, [InsertManyParams::new(Simple::new("many"))])
        .await
        .unwrap();
    client
        .insert_many_fast_tx(&mut tx, [InsertManyParams::new(Simple::new("fast"))])
        .await
        .unwrap();
    assert_eq!(
        client
            .job_list_tx(&mut tx, JobListParams::new())
            .await
            .unwrap()
            .jobs
            .len(),
        3
    );
    tx.rollback().await.unwrap();

    assert_eq!(count_jobs(&db).await, 0);
}

#[tokio::test]
async fn insert_many_returns_rows_in_input_order() {
    let db = TestDb::new().await;
    let client = client(&db);

    let params = (0..5).map(|i| {
        InsertManyParams::new(Simple::new(format!("job{i}")))
            .opts(InsertOpts::new().priority(4 - (i % 4) as i16))
    });
    let mut batch: Vec<InsertManyParams> = params.collect();
    batch.insert(
        2,
        InsertManyParams::new(Other {
            name: "other".into(),
        }),
    );
    let results = client.insert_many(batch).await.unwrap();

    let names: Vec<&str> = results
        .iter()
        .map(|r| r.job.args["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["job0", "job1", "other", "job2", "job3", "job4"]);
    assert_eq!(results[2].job.kind, "other");
    assert!(results.iter().all(|r| !r.unique_skipped_as_duplicate));
    assert_eq!(results[0].job.priority, 4);
    assert_eq!(results[1].job.priority, 3);

    require_many_inserted(
        &client,
        &[
            ExpectedJob::of::<Simple>().opts(RequireInsertedOpts::new().priority(4)),
            ExpectedJob::of::<Simple>().opts(RequireInsertedOpts::new().priority(3)),
            ExpectedJob::of::<Other>(),
            ExpectedJob::of::<Simple>().opts(RequireInsertedOpts::new().priority(2)),
            ExpectedJob::of::<Simple>().opts(RequireInsertedOpts::new().priority(1)),
            ExpectedJob::of::<Simple>().opts(RequireInsertedOpts::new().priority(4)),
        ],
    )
    .await;
}

#[tokio::test]
async fn insert_many_of_nothing_is_nothing() {
    let db = TestDb::new().await;
    let client = client(&db);
    assert!(client.insert_many(Vec::new()).await.unwrap().is_empty());
    assert_eq!(client.insert_many_fast(Vec::new()).await.unwrap(), 0);
    assert_eq!(count_jobs(&db).await, 0);
}

#[tokio::test]
async fn insert_many_folds_duplicates_within_a_batch() {
    let db = TestDb::new().await;
    let client = client(&db);
    let unique = || InsertOpts::new().unique(UniqueOpts::new().by_args());

    let results = client
        .insert_many([
            InsertManyParams::new(Simple::new("x")).opts(unique()),
            InsertManyParams::new(Simple::new("y")).opts(unique()),
            InsertManyParams::new(Simple::new("x")).opts(unique()),
            InsertManyParams::new(Simple::new("x")),
        ])
        .await
        .unwrap();

    assert_eq!(results.len(), 4);
    assert!(!results[0].unique_skipped_as_duplicate);
    assert!(!results[1].unique_skipped_as_duplicate);
    assert!(results[2].unique_skipped_as_duplicate);
    assert_eq!(results[2].job, results[0].job);
    // Not unique: a job of its own.
    assert!(!results[3].unique_skipped_as_duplicate);
    assert_ne!(results[3].job.id, results[0].job.id);
    assert_eq!(count_jobs(&db).await, 3);

    // A later batch meets the stored job.
    let again = client
        .insert_many_tx(
            &mut db.pool().acquire().await.unwrap(),
            [InsertManyParams::new(Simple::new("x")).opts(unique())],
        )
        .await
        .unwrap();
    assert!(again[0].unique_skipped_as_duplicate);
    assert_eq!(again[0].job.id, results[0].job.id);
    assert_eq!(count_jobs(&db).await, 3);
}

#[tokio::test]
async fn insert_many_fast_copies_jobs_and_returns_the_count() {
    let db = TestDb::new().await;
    let client = client(&db);

    let count = client
        .insert_many_fast((0..2_000).map(|i| InsertManyParams::new(Simple::new(format!("j{i}")))))
        .await
        .unwrap();

    assert_eq!(count, 2_000);
    assert_eq!(count_jobs(&db).await, 2_000);
    let page = client
        .job_list(JobListParams::new().limit(2_000))
        .await
        .unwrap();
    assert!(page.jobs.iter().all(|j| j.state == JobState::Available
        && j.queue == "default"
        && j.priority == 1
        && j.max_attempts == 25
        && j.metadata == json!({})
        && j.tags.is_empty()));
    assert_eq!(page.jobs[1_999].args, json!({ "name": "j1999" }));
}

#[tokio::test]
async fn insert_many_fast_refuses_unique_options_and_stores_nothing() {
    let db = TestDb::new().await;
    let client = client(&db);

    let err = client
        .insert_many_fast([
            InsertManyParams::new(Simple::new("a")),
            InsertManyParams::new(Simple::new("b"))
                .opts(InsertOpts::new().unique(UniqueOpts::new().by_args())),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInsert(_)), "{err:?}");
    assert!(err.to_string().contains("insert_many"), "{err}");

    let mut conn = db.pool().acquire().await.unwrap();
    let err = client
        .insert_many_fast_tx(
            &mut conn,
            [InsertManyParams::new(Simple::new("c"))
                .opts(InsertOpts::new().unique(UniqueOpts::new().by_queue()))],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInsert(_)), "{err:?}");
    assert_eq!(count_jobs(&db).await, 0);
}

#[tokio::test]
async fn insert_many_fast_keeps_options_tags_metadata_and_scheduled_at() {
    let db = TestDb::new().await;
    let client = client(&db);
    let later = at("2035-06-01T12:00:00Z");

    let count = client
        .insert_many_fast([
            InsertManyParams::new(Simple::new("plain")),
            InsertManyParams::new(Simple::new("dressed")).opts(
                InsertOpts::new()
                    .queue("bulk")
                    .priority(2)
                    .max_attempts(3)
                    .tags(["one", "two_2", "three-3"])
                    .metadata(json!({ "source": "copy", "n": 1 }))
                    .scheduled_at(later),
            ),
            InsertManyParams::new(Simple::new("pending")).opts(InsertOpts::new().pending()),
        ])
        .await
        .unwrap();
    assert_eq!(count, 3);

    let jobs = client.job_list(JobListParams::new()).await.unwrap().jobs;
    assert_eq!(jobs.len(), 3);
    let (plain, dressed, pending) = (&jobs[0], &jobs[1], &jobs[2]);
    assert_eq!(plain.state, JobState::Available);
    assert!(plain.scheduled_at <= Timestamp::now() + 5.seconds());
    assert_eq!(dressed.state, JobState::Scheduled);
    assert_eq!(dressed.queue, "bulk");
    assert_eq!(dressed.priority, 2);
    assert_eq!(dressed.max_attempts, 3);
    assert_eq!(dressed.tags, ["one", "two_2", "three-3"]);
    assert_eq!(dressed.metadata, json!({ "source": "copy", "n": 1 }));
    assert_eq!(dressed.scheduled_at, later);
    assert_eq!(pending.state, JobState::Pending);
}

#[tokio::test]
async fn special_characters_in_args_and_metadata_survive_copy() {
    let db = TestDb::new().await;
    let client = client(&db);
    let tricky = [
        "tab\there",
        "back\\slash and \\N and \\.",
        "new\nline\r\nand carriage\rreturn",
        "quote \" and 'single'",
        "unicode żółw 🐢 ✓ \u{2028}",
        "html <b>&amp;</b>",
        "{\"looks\": [\"like\", \"json\"]}",
        "\\",
        "\u{1}\u{1f} control",
    ];
    let metadata = json!({ "note": "tab\t nl\n bs\\ ü", "list": ["\\N"] });

    let count = client
        .insert_many_fast(tricky.iter().map(|s| {
            InsertManyParams::new(Simple::new(*s))
                .opts(InsertOpts::new().metadata(metadata.clone()))
        }))
        .await
        .unwrap();
    assert_eq!(count, tricky.len() as u64);

    let jobs = client.job_list(JobListParams::new()).await.unwrap().jobs;
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j.args["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, tricky);
    assert!(jobs.iter().all(|j| j.metadata == metadata));

    // The same values through the ordinary insert, for comparison.
    let rows = client
        .insert_many(
            tricky
                .iter()
                .map(|s| InsertManyParams::new(Simple::new(*s))),
        )
        .await
        .unwrap();
    for (row, copied) in rows.iter().zip(&jobs) {
        assert_eq!(row.job.args, copied.args);
    }
}

#[tokio::test]
async fn options_come_from_insert_then_args_type_then_client_then_defaults() {
    let db = TestDb::new().await;
    let client = client_with(
        &db,
        InsertOpts::new()
            .queue("from_client")
            .priority(2)
            .max_attempts(9)
            .tags(["from_client"])
            .metadata(json!({ "from": "client" })),
    );

    // Everything from the client.
    let plain = client.insert(Simple::new("a"), None).await.unwrap().job;
    assert_eq!(plain.queue, "from_client");
    assert_eq!(plain.priority, 2);
    assert_eq!(plain.max_attempts, 9);
    assert_eq!(plain.tags, ["from_client"]);
    assert_eq!(plain.metadata, json!({ "from": "client" }));

    // The args type over the client, option by option.
    let configured = client.insert(Configured { n: 1 }, None).await.unwrap().job;
    assert_eq!(configured.queue, "from_args");
    assert_eq!(configured.priority, 3);
    assert_eq!(configured.max_attempts, 7);
    assert_eq!(configured.tags, ["from_args"]);
    assert_eq!(configured.metadata, json!({ "from": "client" }));

    // The insert over both.
    let overridden = client
        .insert(
            Configured { n: 2 },
            Some(
                InsertOpts::new()
                    .queue("from_insert")
                    .metadata(json!({ "from": "insert" })),
            ),
        )
        .await
        .unwrap()
        .job;
    assert_eq!(overridden.queue, "from_insert");
    assert_eq!(overridden.priority, 3);
    assert_eq!(overridden.max_attempts, 7);
    assert_eq!(overridden.tags, ["from_args"]);
    assert_eq!(overridden.metadata, json!({ "from": "insert" }));

    // Per-job options in a batch follow the same order.
    let batch = client
        .insert_many([
            InsertManyParams::new(Simple::new("b")).opts(InsertOpts::new().priority(4)),
            InsertManyParams::new(Configured { n: 3 }),
        ])
        .await
        .unwrap();
    assert_eq!(batch[0].job.queue, "from_client");
    assert_eq!(batch[0].job.priority, 4);
    assert_eq!(batch[1].job.queue, "from_args");

    // With no client options, River's defaults fill the rest.
    let bare = crate::common::client(&db)
        .insert(Configured { n: 4 }, Some(InsertOpts::new().queue("q")))
        .await
        .unwrap()
        .job;
    assert_eq!(bare.queue, "q");
    assert_eq!(bare.priority, 3);
    assert_eq!(bare.metadata, json!({}));
}

#[tokio::test]
async fn scheduled_at_and_pending_choose_the_state() {
    let db = TestDb::new().await;
    let client = client(&db);
    let future = Timestamp::now() + 1.hour();
    let past = Timestamp::now() - 1.hour();

    let available = client.insert(Simple::new("now"), None).await.unwrap().job;
    let scheduled = client
        .insert(
            Simple::new("later"),
            Some(InsertOpts::new().scheduled_at(future)),
        )
        .await
        .unwrap()
        .job;
    let past_due = client
        .insert(
            Simple::new("past"),
            Some(InsertOpts::new().scheduled_at(past)),
        )
        .await
        .unwrap()
        .job;
    let pending = client
        .insert(Simple::new("pending"), Some(InsertOpts::new().pending()))
        .await
        .unwrap()
        .job;
    let pending_later = client
        .insert(
            Simple::new("pending later"),
            Some(InsertOpts::new().pending().scheduled_at(future)),
        )
        .await
        .unwrap()
        .job;

    assert_eq!(available.state, JobState::Available);
    assert_eq!(scheduled.state, JobState::Scheduled);
    assert_eq!(
        scheduled.scheduled_at.as_microsecond(),
        future.as_microsecond()
    );
    // As in River, a time given is scheduled even when it has passed; the scheduler makes it
    // available.
    assert_eq!(past_due.state, JobState::Scheduled);
    assert_eq!(pending.state, JobState::Pending);
    assert_eq!(pending_later.state, JobState::Pending);
    assert_eq!(
        pending_later.scheduled_at.as_microsecond(),
        future.as_microsecond()
    );
}

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

/// Args that serialize to a JSON array.
#[derive(Serialize)]
struct ListArgs(Vec<i32>);
impl JobArgs for ListArgs {
    const KIND: &'static str = "list_args";
}

/// Args that serialize to `null`.
#[derive(Serialize)]
struct UnitArgs;
impl JobArgs for UnitArgs {
    const KIND: &'static str = "unit_args";
}

/// Args that cannot be encoded at all: JSON keys must be strings.
#[derive(Serialize)]
struct UnencodableArgs {
    map: HashMap<(i32, i32), i32>,
}
impl JobArgs for UnencodableArgs {
    const KIND: &'static str = "unencodable";
}

#[derive(Serialize, Deserialize)]
struct SpacedKind {}
impl JobArgs for SpacedKind {
    const KIND: &'static str = "bad kind";
}

#[derive(Serialize, Deserialize)]
struct ShortKind {}
impl JobArgs for ShortKind {
    const KIND: &'static str = "k";
}

#[track_caller]
fn assert_invalid(result: millrace::Result<impl std::fmt::Debug>, needles: &[&str]) {
    let err = result.expect_err("the insert should be refused");
    assert!(matches!(err, Error::InvalidInsert(_)), "{err:?}");
    let message = err.to_string();
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[tokio::test]
async fn invalid_inserts_are_refused_with_clear_errors_and_store_nothing() {
    let db = TestDb::new().await;
    let client = client(&db);
    let with = |opts: InsertOpts| Some(opts);
    let s = || Simple::new("x");

    for n in [0, -1, 32_768] {
        assert_invalid(
            client
                .insert(s(), with(InsertOpts::new().max_attempts(n)))
                .await,
            &["max_attempts", "between 1 and 32767", &n.to_string()],
        );
    }
    assert_invalid(
        client
            .insert(s(), with(InsertOpts::new().max_attempts(1_000_000_000)))
            .await,
        &[
            "max_attempts",
            "1000000000",
            "smallint",
            "persistent worker",
        ],
    );
    for p in [0, 5, -1] {
        assert_invalid(
            client
                .insert(s(), with(InsertOpts::new().priority(p)))
                .await,
            &["priority", "between 1 and 4", &p.to_string()],
        );
    }
    for q in [
        "",
        "Upper",
        "a b",
        "a__b",
        "trailing_",
        "q".repeat(65).as_str(),
    ] {
        assert_invalid(
            client.insert(s(), with(InsertOpts::new().queue(q))).await,
            &["queue name"],
        );
    }
    assert_invalid(
        client.insert(SpacedKind {}, None).await,
        &["kind", "\"bad kind\""],
    );
    assert_invalid(client.insert(ShortKind {}, None).await, &["kind", "\"k\""]);
    for tag in ["a,b,c", "ab", "-abc", "with space", ""] {
        assert_invalid(
            client
                .insert(s(), with(InsertOpts::new().tags([tag])))
                .await,
            &["tag"],
        );
    }
    assert_invalid(
        client
            .insert(
                s(),
                with(
                    InsertOpts::new().unique(
                        UniqueOpts::new().by_state([JobState::Available, JobState::Running]),
                    ),
                ),
            )
            .await,
        &["by-state", "pending", "scheduled"],
    );
    assert_invalid(
        client
            .insert(
                s(),
                with(InsertOpts::new().unique(UniqueOpts::new().by_state([]).exclude_kind())),
            )
            .await,
        &["exclude the kind", "by-args"],
    );
    assert_invalid(
        client
            .insert(
                s(),
                with(
                    InsertOpts::new()
                        .unique(UniqueOpts::new().by_period(Duration::from_millis(500))),
                ),
            )
            .await,
        &["period", "second"],
    );
    assert_invalid(
        client.insert(ListArgs(vec![1, 2]), None).await,
        &["JSON object", "[1,2]"],
    );
    assert_invalid(
        client.insert(UnitArgs, None).await,
        &["JSON object", "null"],
    );
    assert_invalid(
        client
            .insert(s(), with(InsertOpts::new().metadata(json!([1, 2]))))
            .await,
        &["metadata", "JSON object"],
    );
    assert_invalid(
        client
            .insert(s(), with(InsertOpts::new().metadata(json!("text"))))
            .await,
        &["metadata", "JSON object"],
    );

    let err = client
        .insert(
            UnencodableArgs {
                map: HashMap::from([((1, 2), 3)]),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ArgsEncode { ref kind, .. } if kind == "unencodable"),
        "{err:?}"
    );

    // One bad job fails its whole batch, on every path.
    let batch = || {
        vec![
            InsertManyParams::new(s()),
            InsertManyParams::new(s()).opts(InsertOpts::new().priority(9)),
        ]
    };
    assert_invalid(client.insert_many(batch()).await, &["priority"]);
    assert_invalid(client.insert_many_fast(batch()).await, &["priority"]);
    let mut tx = db.tx().await;
    assert_invalid(
        client
            .insert_tx(&mut tx, s(), with(InsertOpts::new().priority(0)))
            .await,
        &["priority"],
    );
    assert_invalid(client.insert_many_tx(&mut tx, batch()).await, &["priority"]);
    assert_invalid(
        client.insert_many_fast_tx(&mut tx, batch()).await,
        &["priority"],
    );
    tx.commit().await.unwrap();

    assert_eq!(count_jobs(&db).await, 0);

    // The limits themselves are accepted.
    let edge = client
        .insert(
            s(),
            with(
                InsertOpts::new()
                    .max_attempts(32_767)
                    .priority(4)
                    .queue("q".repeat(64)),
            ),
        )
        .await
        .unwrap();
    assert_eq!(edge.job.max_attempts, 32_767);
    let edge = client
        .insert(
            s(),
            with(
                InsertOpts::new()
                    .max_attempts(1)
                    .priority(1)
                    .tags(["a-b", "t".repeat(255).as_str()]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(edge.job.max_attempts, 1);
    assert_eq!(count_jobs(&db).await, 2);
}

#[tokio::test]
async fn a_client_with_an_invalid_queue_is_refused_at_build() {
    let db = TestDb::new().await;
    let err = millrace::Client::builder(db.driver())
        .insert_opts(InsertOpts::new().queue("Not Valid"))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("queue"), "{err}");
}

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
