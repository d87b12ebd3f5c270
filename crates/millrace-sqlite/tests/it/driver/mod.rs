//! The SQLite driver on real files: migrations both ways, the verbs the conformance suite
//! leaves out, schemas as attached databases, and several pools (processes) on one file.

use millrace_driver::{Driver, Executor, JobGetAvailableParams, JobInsertParams};
use millrace_sqlite::SqliteDriver;
use millrace_types::JobId;
use sqlx::SqlitePool;

mod files;
mod fleet;
mod migrations;

/// An error and its sources, one per line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!("\n  caused by: {e}"));
        source = e.source();
    }
    text
}

/// Params for one plain available job on the default queue, as the conformance suite makes
/// them.
fn job(kind: &str) -> JobInsertParams {
    millrace_test::driver::job(kind, "default")
}

async fn insert(driver: &SqliteDriver, jobs: &[JobInsertParams]) -> Vec<JobId> {
    driver
        .executor()
        .job_insert_many(jobs)
        .await
        .expect("insert")
        .into_iter()
        .map(|r| r.job.id)
        .collect()
}

async fn fetch(driver: &SqliteDriver, client: &str, max: i32) -> Vec<millrace_types::JobRow> {
    driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            queue: "default".to_owned(),
            max,
            client_id: client.to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .expect("fetch")
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
}

/// The user tables of the file, by name.
async fn tables(pool: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn columns(pool: &SqlitePool, table: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap()
}
