//! Rows as River's Ruby client (the `riverqueue` gem with its Sequel or ActiveRecord driver)
//! writes them: Millrace works them, and unique jobs block each other both ways.
//!
//! Ruby and its gems are not installed here (Debian has no `riverqueue` gem), so the rows are
//! written by the statement the gem's driver sends, with the values its client computes: the
//! columns it sets (no `metadata`, which keeps the table's default), `available` or
//! `scheduled` by whether a time was given, tags as an explicit `text[]`, and the unique key
//! as the SHA-256 of `&kind=…&args=…` with the states as an eight-bit mask. The recipe for
//! the key and the mask is built here from the gem's rules, not from Millrace's code, so a
//! drift on either side fails the test.

use std::collections::BTreeMap;
use std::time::Duration;

use millrace::{
    Client, Event, EventKind, InsertOpts, Job, JobArgs, JobId, JobState, QueueConfig, UniqueOpts,
    WorkError, Worker, Workers,
};
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

/// The longest a test waits for the client to work the rows.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RubyJob {
    customer: i64,
    note: String,
}

impl JobArgs for RubyJob {
    const KIND: &'static str = "ruby_job";
}

struct RubyWorker;

impl Worker for RubyWorker {
    type Args = RubyJob;

    async fn work(&self, _job: Job<RubyJob>) -> Result<(), WorkError> {
        Ok(())
    }
}

/// The gem's bit for each state (`UniqueBitmask::JOB_STATE_BIT_POSITIONS`), written as it
/// writes it: `1 << (7 - position)`, formatted as eight binary digits.
fn ruby_bitmask(states: &[&str]) -> String {
    let position = |state: &str| match state {
        "available" => 7,
        "cancelled" => 6,
        "completed" => 5,
        "discarded" => 4,
        "pending" => 3,
        "retryable" => 2,
        "running" => 1,
        "scheduled" => 0,
        other => panic!("no such state {other}"),
    };
    let mask = states
        .iter()
        .fold(0u8, |mask, state| mask | 1 << (7 - position(state)));
    format!("{mask:08b}")
}

/// The gem's default unique states.
const RUBY_DEFAULT_STATES: [&str; 6] = [
    "available",
    "completed",
    "pending",
    "retryable",
    "running",
    "scheduled",
];

/// The string the gem hashes for a job unique by args: `&kind=KIND&args=JSON`, the args'
/// keys sorted and the JSON compact (`JSON.generate(args.sort.to_h)`).
fn ruby_unique_key(kind: &str, args: &serde_json::Value) -> String {
    let sorted: BTreeMap<&String, &serde_json::Value> =
        args.as_object().expect("args object").iter().collect();
    format!(
        "&kind={kind}&args={}",
        serde_json::to_string(&sorted).unwrap()
    )
}

/// One row as the gem's Sequel driver inserts it (`job_insert_many`): the conflict target
/// and returning clause are the driver's, so a duplicate comes back with `xmax <> 0`.
struct RubyInsert<'a> {
    args: serde_json::Value,
    scheduled_at: Option<&'a str>,
    tags: &'a [&'a str],
    priority: i16,
    max_attempts: i16,
    unique: Option<(String, String)>,
}

async fn ruby_insert(db: &TestDb, insert: RubyInsert<'_>) -> (i64, bool) {
    // The gem's connection has the schema on its search path; here each name is qualified.
    let job = db.schema().qualify("river_job");
    let state_type = db.schema().qualify("river_job_state");
    let in_bitmask = db.schema().qualify("river_job_state_in_bitmask");
    let state = if insert.scheduled_at.is_some() {
        "scheduled"
    } else {
        "available"
    };
    let (unique_key, unique_states) = match insert.unique {
        Some((key, states)) => (Some(key), Some(states)),
        None => (None, None),
    };
    let tags: Vec<String> = insert.tags.iter().map(|t| t.to_string()).collect();
    sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO {job} (args, kind, max_attempts, priority, queue, state, scheduled_at, tags, \
             unique_key, unique_states) \
         VALUES ($1::jsonb, 'ruby_job', $2, $3, 'default', $4::{state_type}, \
             coalesce($5::timestamptz, now()), $6::text[], sha256(convert_to($7, 'UTF8')), \
             $8::bit(8)) \
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL \
             AND {in_bitmask}(unique_states, state) \
         DO UPDATE SET kind = excluded.kind \
         RETURNING id, (xmax <> 0) AS unique_skipped_as_duplicate"
    )))
    .bind(insert.args.to_string())
    .bind(insert.max_attempts)
    .bind(insert.priority)
    .bind(state)
    .bind(insert.scheduled_at)
    .bind(tags)
    .bind(unique_key)
    .bind(unique_states)
    .fetch_one(db.pool())
    .await
    .expect("insert as the Ruby gem does")
}

fn plain(customer: i64) -> RubyInsert<'static> {
    RubyInsert {
        args: serde_json::json!({ "note": "from ruby", "customer": customer }),
        scheduled_at: None,
        tags: &[],
        priority: 1,
        max_attempts: 25,
        unique: None,
    }
}

#[tokio::test]
async fn rows_written_as_rivers_ruby_client_writes_them_are_worked() {
    let db = TestDb::new().await;
    let available = ruby_insert(&db, plain(1)).await.0;
    let scheduled = ruby_insert(
        &db,
        RubyInsert {
            // A time the gem was given, already past: the row waits in `scheduled` until the
            // scheduler makes it available.
            scheduled_at: Some("2000-01-01T00:00:00Z"),
            ..plain(2)
        },
    )
    .await
    .0;
    let tagged = ruby_insert(
        &db,
        RubyInsert {
            tags: &["ruby", "sequel"],
            priority: 3,
            max_attempts: 5,
            ..plain(3)
        },
    )
    .await
    .0;

    let mut workers = Workers::new();
    workers.register(RubyWorker).unwrap();
    let client = Client::builder(db.driver())
        .workers(workers)
        .queue("default", QueueConfig::new())
        .fetch_poll_interval(Duration::from_millis(50))
        .schedule_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let mut waiting: Vec<JobId> = [available, scheduled, tagged].map(JobId).to_vec();
    tokio::time::timeout(DEADLINE, async {
        while !waiting.is_empty() {
            if let Event::Job {
                kind: EventKind::JobCompleted,
                job,
                ..
            } = events.recv().await.expect("events open")
            {
                waiting.retain(|id| *id != job.id);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("rows {waiting:?} were not worked within {DEADLINE:?}"));
    client.stop().await.unwrap();

    let row = client.job_get(JobId(tagged)).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
    assert_eq!((row.priority, row.max_attempts, row.attempt), (3, 5, 1));
    assert_eq!(row.tags, ["ruby", "sequel"]);
    assert_eq!(row.metadata, serde_json::json!({}), "the table's default");
    let row = client.job_get(JobId(scheduled)).await.unwrap();
    assert_eq!(row.state, JobState::Completed);
}

#[tokio::test]
async fn unique_jobs_from_rivers_ruby_client_and_millrace_block_each_other() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let mask = ruby_bitmask(&RUBY_DEFAULT_STATES);
    assert_eq!(mask, "11110101", "the gem's default states");

    // Ruby first: Millrace's insert of the same args finds the gem's row.
    let args = serde_json::json!({ "note": "ruby first", "customer": 7 });
    let key = ruby_unique_key(RubyJob::KIND, &args);
    let (ruby_id, skipped) = ruby_insert(
        &db,
        RubyInsert {
            unique: Some((key, mask.clone())),
            ..RubyInsert { args, ..plain(7) }
        },
    )
    .await;
    assert!(!skipped);
    let millrace = client
        .insert(
            RubyJob {
                customer: 7,
                note: "ruby first".into(),
            },
            Some(InsertOpts::new().unique(UniqueOpts::new().by_args())),
        )
        .await
        .unwrap();
    assert!(
        millrace.unique_skipped_as_duplicate,
        "Millrace saw the gem's job"
    );
    assert_eq!(millrace.job.id.0, ruby_id);

    // Millrace first: the gem's insert conflicts on Millrace's key and states.
    let first = client
        .insert(
            RubyJob {
                customer: 8,
                note: "millrace first".into(),
            },
            Some(InsertOpts::new().unique(UniqueOpts::new().by_args())),
        )
        .await
        .unwrap();
    assert!(!first.unique_skipped_as_duplicate);
    let args = serde_json::json!({ "customer": 8, "note": "millrace first" });
    let key = ruby_unique_key(RubyJob::KIND, &args);
    let (id, skipped) = ruby_insert(
        &db,
        RubyInsert {
            unique: Some((key, mask)),
            ..RubyInsert { args, ..plain(8) }
        },
    )
    .await;
    assert!(skipped, "the gem saw Millrace's job");
    assert_eq!(id, first.job.id.0);

    // A different customer is a different job for both.
    let other = client
        .insert(
            RubyJob {
                customer: 9,
                note: "millrace first".into(),
            },
            Some(InsertOpts::new().unique(UniqueOpts::new().by_args())),
        )
        .await
        .unwrap();
    assert!(!other.unique_skipped_as_duplicate);
}
