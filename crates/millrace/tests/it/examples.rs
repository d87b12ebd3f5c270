//! Runs every example in `examples/` against a test schema of its own: each example's `run`
//! returns an error when its scenario does not end the way the example says it does.
//!
//! The examples are included as modules; their `main` (and what only `main` uses) is the
//! example binary's, hence `dead_code`, and their `pub fn run` is public for that binary only.

use std::error::Error;
use std::future::Future;

use millrace::Schema;
use millrace_test::TestDb;
use sqlx::PgPool;

#[path = "../../../../examples/cancel.rs"]
#[allow(dead_code, unreachable_pub)]
mod cancel;
#[path = "../../../../examples/complete_in_transaction.rs"]
#[allow(dead_code, unreachable_pub)]
mod complete_in_transaction;
#[path = "../../../../examples/graceful_shutdown.rs"]
#[allow(dead_code, unreachable_pub)]
mod graceful_shutdown;
#[path = "../../../../examples/insert_and_work.rs"]
#[allow(dead_code, unreachable_pub)]
mod insert_and_work;
#[path = "../../../../examples/persistent_recipe.rs"]
#[allow(dead_code, unreachable_pub)]
mod persistent_recipe;
#[path = "../../../../examples/persistent_worker.rs"]
#[allow(dead_code, unreachable_pub)]
mod persistent_worker;
#[path = "../../../../examples/retry_and_discard.rs"]
#[allow(dead_code, unreachable_pub)]
mod retry_and_discard;
#[path = "../../../../examples/snooze.rs"]
#[allow(dead_code, unreachable_pub)]
mod snooze;
#[path = "../../../../examples/timeout_and_panic.rs"]
#[allow(dead_code, unreachable_pub)]
mod timeout_and_panic;
#[path = "../../../../examples/unique.rs"]
#[allow(dead_code, unreachable_pub)]
mod unique;

/// Runs one example's scenario on a fresh test schema, failing the test with its error.
async fn check<F>(run: impl FnOnce(PgPool, Schema) -> F)
where
    F: Future<Output = Result<(), Box<dyn Error>>>,
{
    let db = TestDb::new().await;
    if let Err(err) = run(db.pool().clone(), db.schema().clone()).await {
        panic!("the example's scenario failed: {err}");
    }
}

#[tokio::test]
async fn insert_and_work_example_runs() {
    check(insert_and_work::run).await;
}

#[tokio::test]
async fn retry_and_discard_example_runs() {
    check(retry_and_discard::run).await;
}

#[tokio::test]
async fn snooze_example_runs() {
    check(snooze::run).await;
}

#[tokio::test]
async fn cancel_example_runs() {
    check(cancel::run).await;
}

#[tokio::test]
async fn unique_example_runs() {
    check(unique::run).await;
}

#[tokio::test]
async fn graceful_shutdown_example_runs() {
    check(graceful_shutdown::run).await;
}

#[tokio::test]
async fn timeout_and_panic_example_runs() {
    check(timeout_and_panic::run).await;
}

#[tokio::test]
async fn complete_in_transaction_example_runs() {
    check(complete_in_transaction::run).await;
}

#[tokio::test]
async fn persistent_worker_example_runs() {
    check(persistent_worker::run).await;
}

#[tokio::test]
async fn persistent_recipe_example_runs() {
    check(persistent_recipe::run).await;
}
