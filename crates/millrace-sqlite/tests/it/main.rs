//! Millrace on SQLite files: one integration binary, which links faster than many.
//!
//! The client-level tests are the PostgreSQL suite's own (`crates/millrace/tests/it/`),
//! compiled here with `#[path]` against this crate's `fixture`, which gives them a SQLite file
//! instead of a PostgreSQL schema (the raw SQL that differs, such as times as UTC text and JSON
//! columns as JSONB blobs, comes from the fixture too); the rest are SQLite's own: the driver
//! conformance suite (on the same fixture), the driver's verbs, faults, River compatibility and
//! the notification outbox.

mod common;
mod fixture;

// The PostgreSQL suite's tests, on SQLite.
#[path = "../../../millrace/tests/it/admin_api/mod.rs"]
mod admin_api;
#[path = "../../../millrace/tests/it/api.rs"]
mod api;
#[path = "../../../millrace/tests/it/fleet/mod.rs"]
mod fleet;
#[path = "../../../millrace/tests/it/health.rs"]
mod health;
#[path = "../../../millrace/tests/it/hostile_rows.rs"]
mod hostile_rows;
#[path = "../../../millrace/tests/it/injection.rs"]
mod injection;
#[path = "../../../millrace/tests/it/limits/mod.rs"]
mod limits;
#[path = "../../../millrace/tests/it/persistent.rs"]
mod persistent;
#[path = "../../../millrace/tests/it/rate_limits.rs"]
mod rate_limits;
#[path = "../../../millrace/tests/it/runtime/mod.rs"]
mod runtime;
#[path = "../../../millrace/tests/it/sequences.rs"]
mod sequences;
#[path = "../../../millrace/tests/it/shared.rs"]
mod shared;
#[path = "../../../millrace/tests/it/test_clock.rs"]
mod test_clock;

// SQLite's own.
mod conformance;
mod driver;
mod faults;
mod river_compat;
mod sqlite_notifications;
