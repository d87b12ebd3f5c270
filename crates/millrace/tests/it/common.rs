//! Args types, clients and database helpers shared by the integration tests.

use std::time::Duration;

use millrace::{Client, InsertOpts, JobArgs, JobId, JobState};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgListener;

/// How long a test waits for a notification it expects before failing.
pub(crate) const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Plain args with no options of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Simple {
    pub(crate) name: String,
}

impl Simple {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Simple { name: name.into() }
    }
}

impl JobArgs for Simple {
    const KIND: &'static str = "simple";
}

/// Another kind, for filters and ExcludeKind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Other {
    pub(crate) name: String,
}

impl JobArgs for Other {
    const KIND: &'static str = "other";
}

/// Args whose type sets insert options of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Configured {
    pub(crate) n: i64,
}

impl JobArgs for Configured {
    const KIND: &'static str = "configured";

    fn insert_opts() -> InsertOpts {
        InsertOpts::new()
            .queue("from_args")
            .priority(3)
            .max_attempts(7)
            .tags(["from_args"])
    }
}

/// Args that are unique by one field only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Customer {
    pub(crate) customer_id: i64,
    pub(crate) note: String,
}

impl JobArgs for Customer {
    const KIND: &'static str = "customer";
    const UNIQUE_FIELDS: Option<&'static [&'static str]> = Some(&["customer_id"]);
}

/// A client with default options.
pub(crate) fn client(db: &TestDb) -> Client<PgDriver> {
    Client::builder(db.driver()).build().expect("client builds")
}

/// A client with insert options of its own.
pub(crate) fn client_with(db: &TestDb, opts: InsertOpts) -> Client<PgDriver> {
    Client::builder(db.driver())
        .insert_opts(opts)
        .build()
        .expect("client builds")
}

/// Runs one statement in which `river_job` is written `{job}` and the state type
/// `{state}`, binding `id`.
async fn exec_on_job(db: &TestDb, sql: &str, id: JobId) {
    let sql = sql
        .replace("{job}", &db.schema().qualify("river_job"))
        .replace("{state}", &db.schema().qualify("river_job_state"));
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(id.0)
        .execute(db.pool())
        .await
        .expect("update the job");
    assert_eq!(done.rows_affected(), 1, "job {id} should exist");
}

/// Moves a job to `state` behind the client's back, as a worker or another client would,
/// keeping the table's checks: `finalized_at` exactly for final states, and a running job has
/// an attempt.
pub(crate) async fn set_state(db: &TestDb, id: JobId, state: JobState) {
    let finalized = if state.is_finalized() {
        "now()"
    } else {
        "NULL"
    };
    let running = state == JobState::Running;
    let sql = format!(
        "UPDATE {{job}} SET state = '{state}'::{{state}}, finalized_at = {finalized}, \
         attempt = CASE WHEN {running} THEN greatest(attempt, 1) ELSE attempt END, \
         attempted_at = CASE WHEN {running} THEN now() ELSE attempted_at END \
         WHERE id = $1"
    );
    exec_on_job(db, &sql, id).await;
}

/// Sets a job's attempt and max_attempts.
pub(crate) async fn set_attempts(db: &TestDb, id: JobId, attempt: i16, max_attempts: i16) {
    let sql = format!(
        "UPDATE {{job}} SET attempt = {attempt}, max_attempts = {max_attempts} WHERE id = $1"
    );
    exec_on_job(db, &sql, id).await;
}

/// How many jobs the schema holds.
pub(crate) async fn count_jobs(db: &TestDb) -> i64 {
    let sql = format!("SELECT count(*) FROM {}", db.schema().qualify("river_job"));
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(db.pool())
        .await
        .expect("count jobs")
}

/// Notifications on one of the schema's channels, read with deadlines.
pub(crate) struct Notifications {
    listener: PgListener,
}

impl Notifications {
    /// Listens on `<schema>.<topic>`; notifications sent after this returns are received.
    pub(crate) async fn listen(db: &TestDb, topic: &str) -> Self {
        let mut listener = PgListener::connect_with(db.pool())
            .await
            .expect("connect the listener");
        let channel = format!("{}.{topic}", db.schema().name());
        listener.listen(&channel).await.expect("listen");
        Notifications { listener }
    }

    /// The next payload, parsed as JSON.
    ///
    /// # Panics
    ///
    /// When none arrives within [`NOTIFY_TIMEOUT`].
    pub(crate) async fn next(&mut self) -> Value {
        let notification = tokio::time::timeout(NOTIFY_TIMEOUT, self.listener.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification within {NOTIFY_TIMEOUT:?}"))
            .expect("receive a notification");
        serde_json::from_str(notification.payload()).expect("notification payload is JSON")
    }

    /// Every payload up to and including the first `{"queue": queue}` one. PostgreSQL delivers
    /// one session's notifications in commit order, so a notification sent before the one
    /// on `queue` is among them: inserting into a sentinel queue last proves what was not
    /// sent.
    pub(crate) async fn until_queue(&mut self, queue: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let payload = self.next().await;
            let done = payload["queue"] == queue;
            seen.push(payload);
            if done {
                return seen;
            }
        }
    }
}
