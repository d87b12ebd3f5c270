//! What the tests shared with the SQLite driver need of their database, on PostgreSQL: the
//! driver type, a fresh database, a transaction of the test's own, and taking a running job
//! away behind its client's back. `crates/millrace-sqlite/tests/it/fixture/mod.rs` is its twin;
//! the shared tests (`api.rs`, `admin_api.rs`, `persistent.rs`,
//! `runtime.rs`, `test_clock.rs`) name only these.

use millrace::{JobId, JobState};
pub(crate) use millrace_test::TestDb;
use sqlx::AssertSqlSafe;

use crate::common::set_state;

/// The driver the shared tests run on.
pub(crate) type D = millrace_postgres::PgDriver;

/// A transaction of the test's own, as an application would begin it.
pub(crate) async fn begin(db: &TestDb) -> sqlx::Transaction<'static, sqlx::Postgres> {
    begin_tx(&db.driver()).await.unwrap()
}

/// A transaction on `driver`'s pool, as a worker would begin it.
pub(crate) async fn begin_tx(
    driver: &D,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    driver.pool().begin().await
}

/// Makes a running job look taken for stuck and run again elsewhere: attempt 2, by another
/// client.
pub(crate) async fn run_attempt_elsewhere(db: &TestDb, id: JobId) {
    let job = db.schema().qualify("river_job");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {job} SET attempt = 2, attempted_by = array_append(attempted_by, 'other') WHERE id = $1"
    )))
    .bind(id.0)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Makes a job look taken by `client` `ago` ago (by the database's clock) and still running
/// there: attempt 1, `client` its only `attempted_by`.
pub(crate) async fn claim_as(db: &TestDb, id: JobId, client: &str, ago: std::time::Duration) {
    let job = db.schema().qualify("river_job");
    let done = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {job} SET state = 'running', attempt = 1, \
         attempted_at = now() - make_interval(secs => $2), attempted_by = ARRAY[$3] WHERE id = $1"
    )))
    .bind(id.0)
    .bind(ago.as_secs_f64())
    .bind(client)
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

/// Overwrites a job's metadata by raw SQL with `json`, which need not be an object, as a
/// hand-written statement or another tool would.
pub(crate) async fn set_metadata_raw(db: &TestDb, id: JobId, json: &str) {
    let job = db.schema().qualify("river_job");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {job} SET metadata = $2::jsonb WHERE id = $1"
    )))
    .bind(id.0)
    .bind(json)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Nothing to wait for before pausing a queue a client just started on: see the SQLite twin.
pub(crate) async fn settle_before_pause(_db: &TestDb) {}

/// Finalizes a running job behind its client's back, as a rescue by another client would
/// take it away.
pub(crate) async fn take_row_away(db: &TestDb, id: JobId) {
    set_state(db, id, JobState::Discarded).await;
}

/// The persistent worker `looper`'s live row: state, attempt, metadata and error count.
pub(crate) async fn persistent_row(db: &TestDb) -> (String, i16, serde_json::Value, i64) {
    let job = db.schema().qualify("river_job");
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT state::text, attempt, metadata, coalesce(array_length(errors, 1), 0)::int8 \
         FROM {job} WHERE kind = 'millrace_persistent:looper' AND state NOT IN ('completed', 'cancelled', 'discarded')"
    )))
    .fetch_one(db.pool())
    .await
    .unwrap()
}

/// The last error recorded on the persistent worker `looper`'s row.
pub(crate) async fn persistent_last_error(db: &TestDb) -> String {
    let job = db.schema().qualify("river_job");
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT errors[array_length(errors, 1)] ->> 'error' FROM {job} WHERE kind = 'millrace_persistent:looper'"
    )))
    .fetch_one(db.pool())
    .await
    .unwrap()
}

/// Pretends a holder took the persistent worker `looper` and died: running, last renewed just
/// now, by a ghost.
pub(crate) async fn persistent_claim_as_ghost(db: &TestDb) {
    let job = db.schema().qualify("river_job");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {job} SET state = 'running', attempt = attempt + 1, attempted_at = now(), \
         attempted_by = array_append(attempted_by, 'ghost') WHERE kind = 'millrace_persistent:looper'"
    )))
    .execute(db.pool())
    .await
    .unwrap();
}

/// Values no River client writes but PostgreSQL's `river_job` can hold, as `SET` clauses by
/// name: the hostile rows of `hostile_rows.rs`.
pub(crate) fn hostile_values() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "errors_without_fields",
            r#"errors = ARRAY['{"trace":"by hand"}'::jsonb]"#,
        ),
        (
            "errors_with_nulls",
            r#"errors = ARRAY[NULL, 'null'::jsonb, '{"at":"2024-01-01T00:00:00Z","attempt":1,"error":"kept"}'::jsonb]"#,
        ),
        ("tags_with_null", "tags = ARRAY['a', NULL]::varchar[]"),
        (
            "attempted_by_with_null",
            "attempted_by = ARRAY[NULL, 'elsewhere']::text[]",
        ),
        (
            "errors_at_not_a_time",
            r#"errors = ARRAY['{"at":"yesterday","attempt":1,"error":"x"}'::jsonb]"#,
        ),
        ("scheduled_at_minus_infinity", "scheduled_at = '-infinity'"),
        (
            "created_at_past_9999",
            "created_at = '10000-01-01 00:00:00+00'",
        ),
    ]
}

/// Runs `UPDATE river_job SET {set} WHERE id = {id}`, as another client or a hand might.
pub(crate) async fn set_raw(db: &TestDb, id: JobId, set: &str) {
    let job = db.schema().qualify("river_job");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {job} SET {set} WHERE id = $1"
    )))
    .bind(id.0)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Makes a job look stuck by River's rule: running for a day under a client Millrace does not
/// know.
pub(crate) async fn make_stuck(db: &TestDb, id: JobId) {
    set_raw(
        db,
        id,
        "state = 'running', attempt = 1, attempted_at = now() - interval '1 day', \
         attempted_by = ARRAY['a-river-client']",
    )
    .await;
}

/// A driver whose database cannot be reached: a pool that connects lazily to a port nothing
/// listens on.
pub(crate) fn unreachable_driver() -> D {
    let options: sqlx::postgres::PgConnectOptions =
        "postgres://postgres@127.0.0.1:1/test".parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy_with(options);
    millrace_postgres::PgDriver::new(pool)
}

/// The database the shared tests' raw SQL runs on.
pub(crate) type Db = sqlx::Postgres;

/// SQL for the database's current time.
pub(crate) fn sql_now() -> String {
    "now()".to_owned()
}

/// SQL for the database's current time moved by `secs` seconds (negative: in the past).
pub(crate) fn sql_now_plus(secs: i64) -> String {
    format!("(now() + make_interval(secs => {secs}))")
}

/// SQL for an `attempted_by` list holding only `client`.
pub(crate) fn sql_attempted_by(client: &str) -> String {
    format!("ARRAY['{client}']::text[]")
}

/// SQL for the text of the metadata key `key`.
pub(crate) fn sql_metadata_text(key: &str) -> String {
    format!("metadata ->> '{key}'")
}

/// SQL that holds when the metadata key `key` is JSON `true`.
pub(crate) fn sql_metadata_is_true(key: &str) -> String {
    format!("metadata -> '{key}' = 'true'::jsonb")
}

/// SQL for the time column `column` as seconds since the Unix epoch, with fractions.
pub(crate) fn sql_epoch(column: &str) -> String {
    format!("extract(epoch FROM {column})::float8")
}

/// Asks whoever leads River's leadership to resign, as River's `request_resign` does.
pub(crate) async fn request_resign(db: &TestDb) {
    let channel = format!("{}.river_leadership", db.schema().name());
    sqlx::query("SELECT pg_notify($1, '{\"action\":\"request_resign\",\"leader_id\":\"\"}')")
        .bind(channel)
        .execute(db.pool())
        .await
        .unwrap();
}

/// Makes `leader_id` River's leader for the next hour, as a River client would be.
pub(crate) async fn insert_river_leader(db: &TestDb, leader_id: &str) {
    let leader = db.schema().qualify("river_leader");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {leader} (leader_id, elected_at, expires_at) \
         VALUES ($1, now(), now() + interval '1 hour')"
    )))
    .bind(leader_id)
    .execute(db.pool())
    .await
    .unwrap();
}
