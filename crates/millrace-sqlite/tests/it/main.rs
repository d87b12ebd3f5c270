//! Millrace on SQLite files: one integration binary, which links faster than many.
//!
//! The client-level tests are the PostgreSQL suite's own (`crates/millrace/tests/it/`),
//! compiled here with `#[path]` against this crate's `fixture`, which gives them a SQLite file
//! instead of a PostgreSQL schema; the rest are SQLite's own: the driver conformance suite, the
//! driver's verbs, faults, fleet tests (times are UTC text and JSON columns JSONB blobs, so
//! their SQL differs from PostgreSQL's), River compatibility and the notification outbox.

mod common;
mod fixture;

// The PostgreSQL suite's tests, on SQLite.
#[path = "../../../millrace/tests/it/admin_api.rs"]
mod admin_api;
#[path = "../../../millrace/tests/it/api.rs"]
mod api;
#[path = "../../../millrace/tests/it/health.rs"]
mod health;
#[path = "../../../millrace/tests/it/hostile_rows.rs"]
mod hostile_rows;
#[path = "../../../millrace/tests/it/injection.rs"]
mod injection;
#[path = "../../../millrace/tests/it/persistent.rs"]
mod persistent;
#[path = "../../../millrace/tests/it/runtime.rs"]
mod runtime;
#[path = "../../../millrace/tests/it/test_clock.rs"]
mod test_clock;

// SQLite's own.
mod conformance;
mod driver;
mod faults;
mod fleet;
mod river_compat;
mod sqlite_notifications;
