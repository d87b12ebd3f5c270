//! A client on a `TestClock`, on a SQLite file: the PostgreSQL suite's
//! `crates/millrace/tests/it/test_clock.rs`, compiled against this crate's `fixture`.

mod common;
mod fixture;

#[path = "../../millrace/tests/it/test_clock.rs"]
mod test_clock;
