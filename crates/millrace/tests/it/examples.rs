//! Runs every example in `examples/` against a test schema of its own: each example's `run`
//! returns an error when its scenario does not end the way the example says it does.
//!
//! The examples are included as modules; their `main` (and what only `main` uses) is the
//! example binary's, hence `dead_code`, and their `pub fn run` is public for that binary only.
//!
//! The persistent recipe is also run as three OS processes, killed with SIGKILL: this test
//! binary started again to run one ignored test, the example's `node`. Examples have no
//! `CARGO_BIN_EXE_*` path, and this keeps the example's code the code under test.

use std::error::Error;
use std::future::Future;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use millrace::Schema;
use millrace_test::TestDb;
use sqlx::{AssertSqlSafe, PgPool};

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

/// The heartbeat lease the recipe's processes run with: short, so the test is, but not so
/// short that a node on a loaded CI machine fences itself: with 2 s, a live node's copy was
/// cancelled 250 ms after it started, and the heartbeat's fence is the only canceller there.
const NODE_LEASE: Duration = Duration::from_secs(4);
/// Where a node process finds its database, schema and id; set only by the test that starts
/// it.
const NODE_URL: &str = "MILLRACE_RECIPE_NODE_URL";
const NODE_SCHEMA: &str = "MILLRACE_RECIPE_NODE_SCHEMA";
const NODE_ID: &str = "MILLRACE_RECIPE_NODE_ID";

/// One process of `persistent_recipe_survives_sigkill_across_three_processes`, which starts
/// this test binary three times to run only this test: the example's `node`, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a process of persistent_recipe_survives_sigkill_across_three_processes"]
async fn persistent_recipe_node() {
    let (Ok(url), Ok(schema), Ok(id)) = (
        std::env::var(NODE_URL),
        std::env::var(NODE_SCHEMA),
        std::env::var(NODE_ID),
    ) else {
        return;
    };
    let pool = PgPool::connect(&url).await.unwrap();
    let schema = Schema::new(schema).unwrap();
    if let Err(err) = persistent_recipe::node(pool, schema, &id, NODE_LEASE).await {
        panic!("node {id} failed: {err}");
    }
}

/// A node process, killed with SIGKILL on drop.
struct Node {
    id: String,
    child: Child,
}

impl Node {
    fn start(db: &TestDb, id: &str) -> Node {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args([
                "--exact",
                "examples::persistent_recipe_node",
                "--ignored",
                "--nocapture",
            ])
            .env(NODE_URL, db.url())
            .env(NODE_SCHEMA, db.schema().name())
            .env(NODE_ID, id)
            .spawn()
            .expect("start a node process");
        Node {
            id: id.to_owned(),
            child,
        }
    }

    fn kill9(&mut self) {
        // std's kill is SIGKILL on Unix: no stop, no resignation, no last heartbeat.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One look at the recipe's rows: how many are running, how many are live (not finalized),
/// and who runs the running one.
#[derive(Debug)]
struct Sample {
    running: i64,
    live: i64,
    holder: Option<String>,
    attempted_at: Option<Timestamp>,
}

async fn sample(db: &TestDb) -> Sample {
    let job = db.schema().qualify("river_job");
    let (running, live, holder, attempted_at): (i64, i64, Option<String>, Option<String>) =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE state = 'running'), \
                    count(*) FILTER (WHERE finalized_at IS NULL), \
                    max(attempted_by[cardinality(attempted_by)]) FILTER (WHERE state = 'running'), \
                    to_char(max(attempted_at) FILTER (WHERE state = 'running') AT TIME ZONE 'UTC', \
                            'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM {job} WHERE kind = 'consume_stream'"
        )))
        .fetch_one(db.pool())
        .await
        .unwrap();
    Sample {
        running,
        live,
        holder,
        attempted_at: attempted_at.map(|t| t.parse().unwrap()),
    }
}

/// The database's time now.
async fn db_now(db: &TestDb) -> Timestamp {
    let now: String = sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    now.parse().unwrap()
}

/// Samples every 100 ms, asserting each time that at most one copy runs and one row lives,
/// until `done` accepts a sample or `deadline` passes; returns that sample and the count.
async fn sample_until(
    db: &TestDb,
    what: &str,
    deadline: Duration,
    samples: &mut usize,
    mut done: impl FnMut(&Sample) -> bool,
) -> Sample {
    let started = Instant::now();
    loop {
        let s = sample(db).await;
        *samples += 1;
        assert!(s.running <= 1 && s.live <= 1, "two copies at once: {s:?}");
        if done(&s) {
            return s;
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}, last sample {s:?}"
        );
        // Sampling the table at a steady rate is the point here, not waiting for an event.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 21: River's hand-made persistent recipe across three processes on one database.
/// Never two running rows at any sample; after SIGKILL of the holder, another process takes
/// the job over once the holder's heartbeat lease runs out, and the rescue is stamped with
/// the time it happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recipe_survives_sigkill_across_three_processes() {
    let db = TestDb::new().await;
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(&db, &format!("recipe-{n}")))
        .collect();
    let mut samples = 0;
    let first = sample_until(
        &db,
        "a copy starts",
        Duration::from_secs(30),
        &mut samples,
        |s| s.running == 1,
    )
    .await;
    let holder = first.holder.clone().unwrap();
    // Several periodic ticks (every 500 ms) meet the running copy and are skipped.
    let steady = Instant::now() + Duration::from_secs(2);
    sample_until(&db, "", Duration::from_secs(5), &mut samples, |s| {
        assert_eq!(
            s.holder.as_deref(),
            Some(holder.as_str()),
            "moved while alive"
        );
        Instant::now() >= steady
    })
    .await;

    let victim = nodes.iter().position(|n| n.id == holder).unwrap();
    nodes[victim].kill9();
    let killed_at = db_now(&db).await;
    // Promised: the lease, then the leaseholder's next rescue pass (each second) and a fetch.
    let promised = NODE_LEASE + Duration::from_secs(2);
    let taken = sample_until(
        &db,
        "another process takes over",
        promised * 3,
        &mut samples,
        |s| s.holder.as_deref().is_some_and(|h| h != holder),
    )
    .await;
    let took = taken.attempted_at.unwrap().duration_since(killed_at);
    eprintln!(
        "recipe: {holder} killed; {} took over {took:#} later ({samples} samples so far)",
        taken.holder.as_deref().unwrap()
    );
    // The heartbeat is renewed every third of the lease, so it runs out at least two thirds
    // of it after the kill.
    assert!(
        took >= jiff::SignedDuration::try_from(NODE_LEASE / 2).unwrap(),
        "taken over before the lease could run out: {took:#}"
    );
    assert!(
        took <= jiff::SignedDuration::try_from(promised * 3).unwrap(),
        "{took:#}"
    );
    // The rescue is recorded at the time it happened: after the kill, before the new attempt.
    let rescue_at: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT errors[1] ->> 'at' FROM {} WHERE kind = 'consume_stream'",
        db.schema().qualify("river_job")
    )))
    .fetch_one(db.pool())
    .await
    .unwrap();
    let rescue_at: Timestamp = rescue_at.parse().unwrap();
    assert!(
        killed_at <= rescue_at && rescue_at <= taken.attempted_at.unwrap(),
        "rescue stamped {rescue_at}, killed at {killed_at}, taken over at {:?}",
        taken.attempted_at
    );

    // The new holder keeps it through more ticks.
    let new_holder = taken.holder.unwrap();
    let steady = Instant::now() + Duration::from_secs(2);
    sample_until(&db, "", Duration::from_secs(5), &mut samples, |s| {
        assert_eq!(
            s.holder.as_deref(),
            Some(new_holder.as_str()),
            "moved again"
        );
        Instant::now() >= steady
    })
    .await;
    eprintln!("recipe: never two running rows across {samples} samples at 100 ms");
}
