//! The dashboard's integration tests, in one binary (one link on a two-core machine):
//! HTTP-level checks of the security rules and bad input through `tower::ServiceExt::oneshot`,
//! and a real headless Chromium driven over WebDriver, on PostgreSQL and on a SQLite file.

mod browser;
mod http;
mod load;
mod support;
