//! What the tests shared with the SQLite driver need of their database, on PostgreSQL: the
//! driver type, a fresh database, a transaction of the test's own, and taking a running job
//! away behind its client's back. `crates/millrace-sqlite/tests/fixture/mod.rs` is its twin;
//! the shared tests (`api.rs`, `admin_api.rs`, `test_clock.rs`) name only these.

use millrace::{JobId, JobState};
pub(crate) use millrace_test::TestDb;

use crate::common::set_state;

/// The driver the shared tests run on.
pub(crate) type D = millrace_postgres::PgDriver;

/// A transaction of the test's own, as an application would begin it.
pub(crate) async fn begin(db: &TestDb) -> sqlx::Transaction<'static, sqlx::Postgres> {
    db.pool().begin().await.unwrap()
}

/// Finalizes a running job behind its client's back, as a rescue by another client would
/// take it away.
pub(crate) async fn take_row_away(db: &TestDb, id: JobId) {
    set_state(db, id, JobState::Discarded).await;
}
