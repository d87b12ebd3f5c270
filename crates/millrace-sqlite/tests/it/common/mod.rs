//! A SQLite file per test, in a directory of its own that is removed afterwards.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use millrace::{MigrateOpts, Migrator};
use millrace_sqlite::SqliteDriver;

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "millrace-sqlite-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of a file in the directory, as a string.
    pub fn file(&self, name: &str) -> String {
        self.path
            .join(name)
            .to_str()
            .expect("a UTF-8 path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A database file migrated all the way up, and a driver on it.
pub struct TestFile {
    pub dir: TempDir,
    pub path: String,
    pub driver: SqliteDriver,
}

impl TestFile {
    pub async fn new() -> Self {
        let dir = TempDir::new();
        let path = dir.file("jobs.db");
        let driver = SqliteDriver::open(&path).await.expect("open the database");
        Migrator::new(driver.clone())
            .migrate_up(MigrateOpts::new())
            .await
            .expect("migrate up");
        TestFile { dir, path, driver }
    }

    /// Another driver (another pool) on the same file, as another process would have.
    pub async fn reopen(&self) -> SqliteDriver {
        SqliteDriver::open(&self.path)
            .await
            .expect("open the database again")
    }
}
