//! Rows written by hand with values no River client writes, on a SQLite file: the PostgreSQL
//! suite's `crates/millrace/tests/it/hostile_rows.rs`, compiled against this crate's
//! `fixture`, which lists the values SQLite's schema can hold.

mod common;
mod fixture;

#[path = "../../millrace/tests/it/hostile_rows.rs"]
mod hostile_rows;
