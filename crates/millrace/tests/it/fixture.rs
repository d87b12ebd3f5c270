//! What the tests shared with the SQLite driver need of their database, on PostgreSQL: the
//! driver type, a fresh database, a transaction of the test's own, and taking a running job
//! away behind its client's back. `crates/millrace-sqlite/tests/fixture/mod.rs` is its twin;
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
