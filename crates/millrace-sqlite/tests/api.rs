//! The API surface River users reach for beyond the basics, on a SQLite file: the PostgreSQL
//! suite's `crates/millrace/tests/it/api.rs`, compiled against this crate's `fixture`.

mod common;
mod fixture;

#[path = "../../millrace/tests/it/api.rs"]
mod api;
