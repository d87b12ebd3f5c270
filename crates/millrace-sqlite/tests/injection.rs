//! The injection sweep on a SQLite file: the PostgreSQL suite's
//! `crates/millrace/tests/it/injection.rs`, compiled against this crate's `fixture`.

mod common;
mod fixture;

#[path = "../../millrace/tests/it/injection.rs"]
mod injection;
