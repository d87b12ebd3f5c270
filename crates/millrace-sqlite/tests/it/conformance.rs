//! The driver conformance suite of `millrace-test`, run against SQLite files: the fixture's
//! `TestDb` gives each check a migrated file of its own.

millrace_test::driver_conformance!(crate::fixture::TestDb);
