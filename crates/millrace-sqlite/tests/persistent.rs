//! Persistent workers on a SQLite file, with several clients in one process: the PostgreSQL
//! suite's `crates/millrace/tests/it/persistent.rs`, compiled against this crate's `fixture`
//! (JSON columns are JSONB blobs there, and times UTC text).

mod common;
mod fixture;

#[path = "../../millrace/tests/it/persistent.rs"]
mod persistent;
