//! The proof under load (issue 3, point 6), against a real PostgreSQL:
//!
//! - 10,000 jobs worked by three clients, one of them in an OS process of its own
//!   (`millrace-load-worker`), each job exactly once;
//! - the same while the clients' connections are killed with `pg_terminate_backend`, while
//!   PostgreSQL restarts (a private cluster on a port of its own, never the shared server), and
//!   while replies are lost after the server committed (a proxy drops them): a fetch whose
//!   reply was lost gives its rows back, also when the client stops right after it;
//! - jobs crossing between Millrace and River's own clients: the `riverqueue` crate both ways,
//!   and River's Python client inserting;
//! - 10,000 jobs in 100 sequences over three processes: none overlap, none reorder
//!   (`proof/sequences.rs`, issue 19);
//! - a global limit of 2 per partition over 5 partitions, three processes, one of them
//!   SIGKILLed and PostgreSQL restarted: never more than 2 running per partition
//!   (`proof/limits.rs`, issue 19);
//! - a rate limit of 50 jobs/s held within 5 % over a minute by three clients
//!   (`proof/rate.rs`, issue 19).
//!
//! Workers record every run in `<schema>.load_runs`, and each test asks the database, not the
//! clients: every job completed at its first attempt without an error, and was recorded exactly
//! once, by the client that `attempted_by` names.
//!
//! The proofs live in `proof/`, grouped by what they prove (`exactly_once.rs`,
//! `lost_replies.rs`, `interop.rs`, `sequences.rs`, `limits.rs`, `rate.rs`), beside what they
//! share: the fleet (`fleet.rs`), the jobs and the checks of them (`jobs.rs`) and the clients'
//! logs (`logs.rs`). This file holds the settings they share.

#[path = "proof/exactly_once.rs"]
mod exactly_once;
#[path = "proof/fleet.rs"]
mod fleet;
#[path = "proof/interop.rs"]
mod interop;
#[path = "proof/jobs.rs"]
mod jobs;
#[path = "proof/limits.rs"]
mod limits;
#[allow(
    dead_code,
    reason = "the binary's `main` and argument parsing are not used here"
)]
#[path = "../src/bin/millrace-load-worker.rs"]
mod load_worker;
#[path = "proof/logs.rs"]
mod logs;
#[path = "proof/lost_replies.rs"]
mod lost_replies;
#[path = "proof/rate.rs"]
mod rate;
#[path = "proof/sequences.rs"]
mod sequences;

use std::time::Duration;

/// Jobs in each load run.
const JOBS: i64 = 10_000;
/// Jobs in each interop test.
const INTEROP_JOBS: i64 = 500;
/// Workers per client, and connections per client's pool.
const MAX_WORKERS: usize = 20;
const POOL_SIZE: u32 = 5;
/// How often a test looks at the database while it waits.
const POLL: Duration = Duration::from_millis(50);
/// The longest a load run may go without one more job completed: a stall, where slowness is
/// not. Under faults every fraction of a second on two cores that CI shares with other tests, a run has
/// taken from 20 s to over 60 s, so its total time says little; progress says whether the
/// fleet still works.
const STALL: Duration = Duration::from_secs(20);
/// The longest a load run may take in all, well inside nextest's limit of five minutes.
const LOAD_DEADLINE: Duration = Duration::from_secs(240);
/// The longest an interop run may take.
const INTEROP_DEADLINE: Duration = Duration::from_secs(30);
/// How often the killer terminates every connection of the fleet. At 200 ms the run sat on a
/// cliff: when opening a connection and running a statement took longer than the interval,
/// nothing got through for 30 s, even on a quiet machine; half a second still kills every
/// connection many times a run.
const KILL_EVERY: Duration = Duration::from_millis(500);
/// The fleet's acquire timeout while its connections are killed: the library's default
/// (`ConnectOptions::connect_timeout`, 10 s), not the load pools' one second. sqlx's acquire
/// timeout covers both the wait in the pool's queue and the opening of a connection; with
/// every connection killed at once and 20 workers queuing, callers reached the head of the
/// queue with too little of one second left to connect, none got a connection, and nothing
/// got through for 30 s, until the workers gave up recording their runs.
const CHURN_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long PostgreSQL stays down at each restart.
const OUTAGE: Duration = Duration::from_millis(3_000);
/// How long `millrace-load-worker` may take to start, and to exit after SIGTERM.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);
