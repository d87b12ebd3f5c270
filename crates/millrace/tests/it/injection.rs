//! The injection sweep (issue 20): hostile strings (quotes, `;`, `$$`, `$1`, NUL, very long)
//! through every name a user controls: schema, queue, kind, tags, metadata keys and values,
//! periodic job ids, persistent worker names, client ids, and the client's queues. Each is
//! stored exactly as given or refused with a typed error; none is ever executed (the jobs
//! table is still there, with exactly the rows inserted). Shared with the SQLite driver
//! (`crates/millrace-sqlite/tests/injection.rs`). Rust's names are `&str`, so no API takes
//! bytes that are not UTF-8; the raw-byte cases live in the fuzz targets (`fuzz/`).

use std::time::Duration;

use millrace::{
    BoxError, Client, Driver, Error, InsertManyParams, InsertOpts, Job, JobArgs, JobListParams,
    PeriodicJob, PersistentContext, PersistentWorker, QueueConfig, Schedule, Schema, WorkError,
    Worker, Workers,
};
use millrace_driver::Executor as _;
use serde::{Deserialize, Serialize};

use crate::fixture::{D, TestDb};

/// The longest the sweep waits for a periodic job's next run to be stored.
const DEADLINE: Duration = Duration::from_secs(20);

/// Strings a careless or hostile caller might pass as a name.
fn hostile() -> Vec<String> {
    vec![
        "it's".to_owned(),
        "a\"b".to_owned(),
        "x'; DROP TABLE river_job; --".to_owned(),
        "Robert'); DELETE FROM river_job;--".to_owned(),
        "$$".to_owned(),
        "$1".to_owned(),
        "$tag$ SELECT 1 $tag$".to_owned(),
        "a\0b".to_owned(),
        "back\\slash".to_owned(),
        "' OR '1'='1".to_owned(),
        "line\nbreak".to_owned(),
        "%s%n".to_owned(),
        "é😀".to_owned(),
        "x".repeat(10_000),
    ]
}

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    n: i64,
}

impl JobArgs for Note {
    const KIND: &'static str = "note";
}

struct NoteWorker;

impl Worker for NoteWorker {
    type Args = Note;

    async fn work(&self, _job: Job<Note>) -> Result<(), WorkError> {
        Ok(())
    }
}

/// Kinds are constants of the args type, so each hostile kind is a type of its own.
macro_rules! hostile_kind {
    ($name:ident = $kind:expr) => {
        #[derive(Debug, Serialize, Deserialize)]
        struct $name {}
        impl JobArgs for $name {
            const KIND: &'static str = $kind;
        }
    };
}
hostile_kind!(KindQuote = "x'; DROP TABLE river_job; --");
hostile_kind!(KindDollar = "$$");
hostile_kind!(KindNul = "a\0b");
hostile_kind!(KindSpace = "a b");
hostile_kind!(KindEmpty = "");

fn workers() -> Workers {
    let mut workers = Workers::new();
    workers.register(NoteWorker).unwrap();
    workers
}

async fn job_count(client: &Client<D>) -> usize {
    client
        .job_list(JobListParams::new().limit(1000))
        .await
        .expect("the jobs table is still there")
        .jobs
        .len()
}

fn assert_typed(what: &str, input: &str, result: Result<(), Error>) {
    match result {
        Ok(()) | Err(Error::InvalidInsert(_) | Error::Config(_)) => {}
        Err(other) => panic!("{what} {input:?}: not a typed input error: {other:?}"),
    }
}

#[tokio::test]
async fn hostile_schema_names_are_refused() {
    for name in hostile() {
        assert!(
            Schema::new(name.clone()).is_err(),
            "schema {name:?} was accepted"
        );
    }
}

#[tokio::test]
async fn hostile_queues_tags_and_kinds_are_refused_and_never_run() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    for name in hostile() {
        let queue = client
            .insert(Note { n: 1 }, Some(InsertOpts::new().queue(name.clone())))
            .await;
        assert!(
            matches!(queue, Err(Error::InvalidInsert(_))),
            "queue {name:?}: {queue:?}"
        );
        let tag = client
            .insert(Note { n: 1 }, Some(InsertOpts::new().tags([name.clone()])))
            .await;
        assert!(
            matches!(tag, Err(Error::InvalidInsert(_))),
            "tag {name:?}: {tag:?}"
        );
        let worked = Client::builder(db.driver())
            .queue(name.clone(), QueueConfig::new())
            .workers(workers())
            .build();
        assert!(
            matches!(worked, Err(Error::Config(_))),
            "worked queue {name:?}"
        );
    }
    for result in [
        client.insert(KindQuote {}, None).await.map(drop),
        client.insert(KindDollar {}, None).await.map(drop),
        client.insert(KindNul {}, None).await.map(drop),
        client.insert(KindSpace {}, None).await.map(drop),
        client.insert(KindEmpty {}, None).await.map(drop),
    ] {
        assert!(matches!(result, Err(Error::InvalidInsert(_))), "{result:?}");
    }
    assert_eq!(job_count(&client).await, 0);
}

#[tokio::test]
async fn hostile_metadata_is_stored_as_given_or_refused() {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let mut stored = 0;
    for name in hostile() {
        let metadata = serde_json::json!({ name.clone(): name.clone() });
        let inserted = client
            .insert(
                Note { n: 1 },
                Some(InsertOpts::new().metadata(metadata.clone())),
            )
            .await;
        match inserted {
            Ok(result) => {
                let row = client.job_get(result.job.id).await.unwrap();
                assert_eq!(
                    row.metadata, metadata,
                    "metadata {name:?} was not stored as given"
                );
                stored += 1;
            }
            Err(err) => assert_typed("metadata", &name, Err(err)),
        }
    }
    assert_eq!(job_count(&client).await, stored);
}

/// Args holding hostile strings, as keys and values, are stored as given; those holding NUL,
/// which PostgreSQL's `jsonb` cannot store, are refused with a typed error before anything is
/// sent, on every insert path, and take their whole batch with them (issue 20). SQLite would
/// store them; it refuses them too, so a job means the same on either driver.
#[tokio::test]
async fn hostile_args_are_stored_as_given_or_refused_on_every_insert_path() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Text {
        s: String,
    }
    impl JobArgs for Text {
        const KIND: &'static str = "text";
    }

    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let mut stored = 0;
    for name in hostile() {
        let args = serde_json::json!({ "s": name.clone(), name.clone(): name.clone() });
        let inserted = client
            .insert_many([InsertManyParams::from_json("note", &args)])
            .await;
        if !name.contains('\0') {
            let inserted = inserted.unwrap_or_else(|err| panic!("args {name:?}: {err:?}"));
            let row = client.job_get(inserted[0].job.id).await.unwrap();
            assert_eq!(row.args, args, "args {name:?} were not stored as given");
            stored += 1;
            continue;
        }
        assert!(
            matches!(&inserted, Err(Error::InvalidInsert(m)) if m.contains("NUL")),
            "insert_many of args {name:?}: {inserted:?}"
        );
        let one = client.insert(Text { s: name.clone() }, None).await;
        assert!(
            matches!(&one, Err(Error::InvalidInsert(m)) if m.contains("NUL")),
            "insert of args {name:?}: {one:?}"
        );
        // One bad job fails its batch, on both batch paths: nothing of it is stored.
        let batch = || {
            [
                InsertManyParams::new(Text {
                    s: "fine".to_owned(),
                }),
                InsertManyParams::from_json("note", &args),
            ]
        };
        let many = client.insert_many(batch()).await;
        assert!(
            matches!(&many, Err(Error::InvalidInsert(_))),
            "insert_many batch with args {name:?}: {many:?}"
        );
        let fast = client.insert_many_fast(batch()).await;
        assert!(
            matches!(&fast, Err(Error::InvalidInsert(_))),
            "insert_many_fast batch with args {name:?}: {fast:?}"
        );
        // A periodic job is refused when it is added, not at each run.
        let periodic = Client::builder(db.driver())
            .periodic_job(PeriodicJob::new(
                Schedule::interval(Duration::from_secs(3600)),
                move || (Text { s: name.clone() }, None),
            ))
            .build();
        assert!(
            matches!(&periodic, Err(Error::InvalidInsert(m)) if m.contains("NUL")),
            "periodic job with NUL args: {:?}",
            periodic.err()
        );
    }
    assert_eq!(job_count(&client).await, stored);
}

#[tokio::test]
async fn hostile_persistent_names_are_refused() {
    let db = TestDb::new().await;
    struct Idle;
    impl PersistentWorker for Idle {
        async fn run(&self, ctx: PersistentContext) -> Result<(), BoxError> {
            ctx.cancelled().await;
            Ok(())
        }
    }
    for name in hostile() {
        let built = Client::builder(db.driver())
            .workers(workers())
            .persistent_worker(&name, Idle)
            .build();
        assert!(
            matches!(built, Err(Error::Config(_))),
            "persistent name {name:?} accepted"
        );
    }
}

/// Periodic ids that a client accepts are stored as given by the scheduling client; the rest
/// are refused when the client is built.
#[tokio::test]
async fn hostile_periodic_ids_are_stored_as_given_or_refused() {
    let db = TestDb::new().await;
    let mut builder = Client::builder(db.driver())
        .workers(workers())
        .queue(millrace::QUEUE_DEFAULT, QueueConfig::new());
    let mut accepted = Vec::new();
    for name in hostile() {
        let job = || {
            PeriodicJob::new(Schedule::interval(Duration::from_secs(3600)), || {
                (Note { n: 0 }, None)
            })
            .id(name.clone())
        };
        // One client per id first, to see each refusal apart.
        let alone = Client::builder(db.driver()).periodic_job(job()).build();
        match alone {
            Ok(_) => {
                accepted.push(name.clone());
                builder = builder.periodic_job(job());
            }
            Err(err) => assert_typed("periodic id", &name, Err(err)),
        }
    }
    let client = builder.build().unwrap();
    client.start().await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let stored = loop {
        let stored = client
            .driver()
            .executor()
            .periodic_job_get(&accepted)
            .await
            .unwrap();
        if stored.len() == accepted.len() || tokio::time::Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    client.stop().await.unwrap();
    let mut ids: Vec<String> = stored.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    accepted.sort();
    assert_eq!(
        ids, accepted,
        "accepted periodic ids were not all stored as given"
    );
}

/// Client ids a client accepts start, and name their client in `attempted_by` as given.
#[tokio::test]
async fn hostile_client_ids_start_as_given_or_are_refused() {
    let db = TestDb::new().await;
    let inserter = Client::builder(db.driver()).build().unwrap();
    for name in hostile() {
        let built = Client::builder(db.driver())
            .id(name.clone())
            .workers(workers())
            .queue(millrace::QUEUE_DEFAULT, QueueConfig::new())
            .fetch_poll_interval(Duration::from_millis(50))
            .build();
        let client = match built {
            Ok(client) => client,
            Err(err) => {
                assert_typed("client id", &name, Err(err));
                continue;
            }
        };
        client
            .start()
            .await
            .unwrap_or_else(|err| panic!("client id {name:?} built but did not start: {err:?}"));
        let job = inserter.insert(Note { n: 1 }, None).await.unwrap().job;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let row = loop {
            let row = inserter.job_get(job.id).await.unwrap();
            if row.finalized_at.is_some() || tokio::time::Instant::now() >= deadline {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        client.stop().await.unwrap();
        assert_eq!(row.attempted_by, vec![name.clone()], "client id {name:?}");
    }
}
