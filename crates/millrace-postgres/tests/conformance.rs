//! The driver conformance suite on PostgreSQL.

millrace_test::driver_conformance!(millrace_test::TestDb);
