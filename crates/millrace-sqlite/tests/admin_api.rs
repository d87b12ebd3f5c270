//! Administering jobs and queues, and what a worker records while it runs, on a SQLite file:
//! the PostgreSQL suite's `crates/millrace/tests/it/admin_api.rs`, compiled against this
//! crate's `fixture`.

mod common;
mod fixture;

#[path = "../../millrace/tests/it/admin_api.rs"]
mod admin_api;
