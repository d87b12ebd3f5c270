//! Inserting jobs: River's defaults, transactions, batches, the COPY path and how options
//! resolve. Unique jobs, invalid inserts and insert notifications have a file each.

use jiff::{Timestamp, ToSpan};
use millrace::{Error, InsertManyParams, InsertOpts, JobListParams, JobState, UniqueOpts};
use millrace_test::{
    ExpectedJob, RequireInsertedOpts, TestDb, require_inserted, require_inserted_tx,
    require_many_inserted, require_not_inserted,
};
use serde_json::json;

use crate::common::{Configured, Other, Simple, client, client_with, count_jobs};

mod invalid;
mod notify;
mod unique;

pub(super) fn at(s: &str) -> Timestamp {
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
