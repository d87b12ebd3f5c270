//! Test helpers for applications and drivers built on Millrace.
//!
//! - [`TestDb`] gives each test a PostgreSQL schema of its own, migrated and empty, from a
//!   pool of schemas reused across tests and test processes (River's `riverdbtest`).
//! - [`require_inserted`], [`require_not_inserted`] and [`require_many_inserted`] assert what
//!   a piece of code inserted (River's `rivertest`), with `_tx` twins that look inside a
//!   transaction.
//! - [`eventually`] waits, with a deadline, on a condition no event announces.
//!
//! The helpers panic with a message saying what differed: they are test assertions.
//!
//! # Examples
//!
//! ```no_run
//! use millrace::{Client, InsertOpts, JobArgs};
//! use millrace_test::{RequireInsertedOpts, TestDb, require_inserted};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail {
//!     to: String,
//! }
//! impl JobArgs for SendEmail {
//!     const KIND: &'static str = "send_email";
//! }
//!
//! # fn main() {}
//! #[tokio::test]
//! async fn signup_sends_a_welcome_email() {
//!     let db = TestDb::new().await;
//!     let client = Client::builder(db.driver()).build().unwrap();
//!
//!     // The code under test.
//!     client
//!         .insert(SendEmail { to: "ada@example.com".into() }, Some(InsertOpts::new().priority(2)))
//!         .await
//!         .unwrap();
//!
//!     let job = require_inserted::<SendEmail>(&client, Some(RequireInsertedOpts::new().priority(2))).await;
//!     assert_eq!(job.args.to, "ada@example.com");
//! }
//! ```
//!
//! The database is `TEST_DATABASE_URL`, or else the local server on `127.0.0.1:5432`,
//! database `test` (created when missing), as the `postgres` or `root` role.

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod driver;
mod eventually;
pub mod fault_plan;
pub mod fault_proxy;
pub mod pg_cluster;
mod require;
pub mod soak;
mod test_db;

pub use eventually::eventually;
pub use require::{
    AsDriver, ExpectedJob, InsertedJob, RequireInsertedOpts, require_inserted, require_inserted_tx,
    require_many_inserted, require_many_inserted_tx, require_not_inserted, require_not_inserted_tx,
};
pub use test_db::{TEST_DATABASE_URL, TestDb};
