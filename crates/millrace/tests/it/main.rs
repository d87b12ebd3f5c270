//! Millrace against a real PostgreSQL: one integration binary, which links faster than many.
//!
//! Each test takes a schema of its own from `millrace_test::TestDb`; see its docs for the
//! database it uses.

mod admin_api;
mod api;
mod common;
mod examples;
mod fixture;
mod fleet;
mod health;
mod hostile_rows;
mod injection;
mod insert;
mod job_admin;
mod limits;
mod limits_fleet;
mod migrate;
mod outage;
mod persistent;
mod pgbouncer;
mod rate_limits;
mod runtime;
mod sequences;
mod shared;
mod shutdown;
mod test_clock;
mod test_helpers;
