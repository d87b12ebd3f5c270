//! `Client::health` on a SQLite file: the PostgreSQL suite's
//! `crates/millrace/tests/it/health.rs`, compiled against this crate's `fixture`.

mod common;
mod fixture;

#[path = "../../millrace/tests/it/health.rs"]
mod health;
