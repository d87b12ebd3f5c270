//! The chaos soak (issue 20): worker processes, an inserter process and a fault scheduler that,
//! at times drawn from a seed, kills and pauses workers, restarts PostgreSQL, terminates
//! backends, cuts, delays and half-opens the network between a worker and PostgreSQL (a proxy
//! on the loopback per worker), writes rows no client can decode, and on SQLite fills the file
//! to its page limit and holds its write lock from another process. Afterwards the ledger
//! checker (`millrace_test::soak`) must find nothing lost, nothing twice, no two holders of
//! the persistent worker at once, no periodic slot skipped or doubled, and no unique job twice.
//!
//! By default each test runs a fixed seed and one random seed (printed), about a minute in
//! all; `SOAK_SEED=n` replays one seed, `SOAK_SECS=n` sets how long faults go on per seed:
//!
//! ```text
//! SOAK_SEED=20 SOAK_SECS=900 cargo nextest run -p millrace-test --test soak --no-capture
//! ```
//!
//! PostgreSQL restarts happen on a private cluster (`millrace_test::pg_cluster`), never on the
//! shared server. Correctness is asserted strictly; time bounds are generous, since CI runs
//! this on two busy cores.
//!
//! The runs live in `soak/`: `postgres.rs` and `sqlite.rs`, beside the harness they share
//! (`harness.rs`: bounds, processes, logs) and their figures and verdicts (`verdict.rs`).

#[path = "soak/harness.rs"]
mod harness;
#[path = "soak/postgres.rs"]
mod postgres;
#[path = "soak/sqlite.rs"]
mod sqlite;
#[path = "soak/verdict.rs"]
mod verdict;

use std::time::Duration;

use postgres::pg_soak;
use sqlite::sqlite_soak;

/// The seed every default run replays.
const FIXED_SEED: u64 = 20;
/// How long faults go on per seed by default, PostgreSQL and SQLite.
const PG_SECS: u64 = 30;
const SQLITE_SECS: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_soak_loses_and_repeats_nothing() {
    for seed in seeds() {
        let secs = soak_secs(PG_SECS);
        eprintln!("postgres soak: seed {seed}, faults for {secs} s (SOAK_SEED={seed} replays it)");
        pg_soak(seed, Duration::from_secs(secs)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_soak_loses_and_repeats_nothing() {
    for seed in seeds() {
        let secs = soak_secs(SQLITE_SECS);
        eprintln!("sqlite soak: seed {seed}, faults for {secs} s (SOAK_SEED={seed} replays it)");
        sqlite_soak(seed, Duration::from_secs(secs)).await;
    }
}

/// `SOAK_SEED` alone, or the fixed seed and one drawn now.
fn seeds() -> Vec<u64> {
    match std::env::var("SOAK_SEED") {
        Ok(seed) => vec![seed.parse().expect("SOAK_SEED is a number")],
        Err(_) => {
            let random = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
                ^ u64::from(std::process::id());
            vec![FIXED_SEED, random % 1_000_000]
        }
    }
}

fn soak_secs(default: u64) -> u64 {
    std::env::var("SOAK_SECS")
        .map(|s| s.parse().expect("SOAK_SECS is a number"))
        .unwrap_or(default)
}
