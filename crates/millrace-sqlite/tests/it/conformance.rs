//! The driver conformance suite of `millrace-test`, run against SQLite files.

use crate::common;

use millrace_sqlite::SqliteDriver;

/// A migrated SQLite file of its own for each check.
struct SqliteFixture(common::TestFile);

impl millrace_test::driver::DriverFixture for SqliteFixture {
    type Driver = SqliteDriver;

    async fn create() -> Self {
        SqliteFixture(common::TestFile::new().await)
    }

    fn driver(&self) -> SqliteDriver {
        self.0.driver.clone()
    }
}

millrace_test::driver_conformance!(SqliteFixture);
