//! The migrator against a real PostgreSQL, compared with River's own CLI.
//!
//! Each test works in a fresh schema of its own, dropped at the end. River's CLI is the
//! `riverqueue` binary of the crate riverqueue-cli 0.5.0, looked up through `RIVERQUEUE_BIN`,
//! then `PATH`, then `~/.cargo/bin`; the tests that need it fail, saying how to install it,
//! when it is missing. `pg_dump` comes from `PATH` or `PG_DUMP`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use millrace::{
    Error, LINE_MAIN, LINE_MILLRACE, MigrateOpts, MigrationDirection, Migrator, Schema,
};
use millrace_driver::{Driver, Executor};
use millrace_postgres::PgDriver;
use sqlx::PgPool;

mod lines;
mod river;
mod targets;

/// River's schema at version 8 as River's CLI creates it; see regenerate_river_schema.sh.
const RIVER_SCHEMA_V8: &str =
    include_str!("../../../../millrace-postgres/tests/river_schema_v8.sql");

const SCHEMA_PLACEHOLDER: &str = "SCHEMA_NAME";

/// The versions of line `millrace` (2 is the sequences' index).
const MILLRACE_VERSIONS: [i64; 3] = [1, 2, 3];

/// The tables of line `millrace` (version 1, and version 3's fetch log), in pg_dump's order.
const MILLRACE_TABLES: [&str; 4] = [
    "millrace_client",
    "millrace_leader",
    "millrace_periodic_job",
    "millrace_rate_limit_fetch",
];

fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema, dropped when the value is.
struct TestSchema {
    name: String,
    pool: PgPool,
}

impl TestSchema {
    async fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "millrace_migrate_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let pool = PgPool::connect(&database_url())
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        )))
        .execute(&pool)
        .await
        .expect("create the test schema");
        TestSchema { name, pool }
    }

    fn driver(&self) -> PgDriver {
        PgDriver::new(self.pool.clone()).with_schema(Schema::new(&self.name).unwrap())
    }

    fn migrator(&self) -> Migrator<PgDriver> {
        Migrator::new(self.driver())
    }

    /// `pg_dump --schema-only` of the schema, with its name replaced by a placeholder and
    /// pg_dump's version comments and per-run `\restrict` keys dropped; nothing else changes.
    fn dump(&self) -> String {
        let pg_dump = std::env::var("PG_DUMP").unwrap_or_else(|_| "pg_dump".to_owned());
        let out = Command::new(&pg_dump)
            .args([
                "--schema-only",
                &format!("--schema={}", self.name),
                &database_url(),
            ])
            .output()
            .unwrap_or_else(|err| panic!("could not run {pg_dump}: {err}"));
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|line| {
                !line.starts_with("-- Dumped from database version ")
                    && !line.starts_with("-- Dumped by pg_dump version ")
                    && !line.starts_with("\\restrict ")
                    && !line.starts_with("\\unrestrict ")
            })
            .map(|line| line.replace(&self.name, SCHEMA_PLACEHOLDER) + "\n")
            .collect()
    }

    /// Runs River's CLI on the schema, whatever comes of it.
    fn river_output(&self, args: &[&str]) -> Output {
        Command::new(riverqueue())
            .args(args)
            .args(["--database-url", &database_url(), "--schema", &self.name])
            .output()
            .expect("run riverqueue")
    }

    /// Runs River's CLI on the schema, which must succeed.
    fn river(&self, args: &[&str]) {
        let out = self.river_output(args);
        assert!(
            out.status.success(),
            "riverqueue {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs River's CLI on the schema, which must fail; returns what it printed.
    fn river_fails(&self, args: &[&str]) -> String {
        let out = self.river_output(args);
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "riverqueue {args:?} succeeded: {printed}"
        );
        printed
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(
            sql.replace("/*schema*/", &format!("{}.", self.name)),
        ))
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn applied(&self, line: &str) -> Vec<i64> {
        let rows = self
            .driver()
            .executor()
            .migration_get_all(line)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.version).collect()
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs outside async code's reach, so the cleanup gets a runtime of its own.
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = PgPool::connect(&database_url()).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// River's CLI, or a panic that says how to install it.
fn riverqueue() -> PathBuf {
    let found = std::env::var_os("RIVERQUEUE_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
                std::env::split_paths(&p)
                    .map(|dir| dir.join("riverqueue"))
                    .collect::<Vec<_>>()
            });
            let cargo_home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo"))
                });
            on_path
                .chain(cargo_home.map(|home| home.join("bin/riverqueue")))
                .find(|p| p.is_file())
        });
    let Some(bin) = found.filter(|p| p.is_file()) else {
        panic!(
            "River's CLI `riverqueue` was not found (RIVERQUEUE_BIN, PATH, ~/.cargo/bin); these \
             tests compare Millrace's migrations with it. Install it with \
             `cargo install riverqueue-cli --version 0.5.0`"
        );
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("run riverqueue --version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        "riverqueue 0.5.0",
        "{} is not riverqueue-cli 0.5.0; install it with `cargo install riverqueue-cli --version 0.5.0`",
        bin.display()
    );
    bin
}

/// Fails with the first lines that differ, and leaves both dumps in the temp directory.
#[track_caller]
fn assert_same_dump(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let dir = std::env::temp_dir();
    let slug: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let (a, e) = (
        dir.join(format!("{slug}.actual.sql")),
        dir.join(format!("{slug}.expected.sql")),
    );
    std::fs::write(&a, actual).unwrap();
    std::fs::write(&e, expected).unwrap();
    let (al, el): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
    let first = al
        .iter()
        .zip(&el)
        .position(|(x, y)| x != y)
        .unwrap_or(al.len().min(el.len()));
    let context =
        |lines: &[&str]| lines[first.saturating_sub(3)..(first + 6).min(lines.len())].join("\n");
    panic!(
        "{what}: dumps differ from line {}\n--- actual\n{}\n--- expected\n{}\n(diff {} {})",
        first + 1,
        context(&al),
        context(&el),
        a.display(),
        e.display()
    );
}

/// River's trigger function of versions 2 and 3 (dropped by version 4) has the same behaviour
/// in Millrace but not the same text; pg_dump prints function bodies verbatim.
fn mask_notify_body(dump: &str) -> String {
    let Some(start) = dump.find("river_job_notify() RETURNS trigger") else {
        return dump.to_owned();
    };
    let body = start + dump[start..].find("$$").unwrap() + 2;
    let end = body + dump[body..].find("$$").unwrap();
    format!("{}<body>{}", &dump[..body], &dump[end..])
}

/// Splits a schema dump (with the schema name already replaced by the placeholder) into what
/// River's CLI would have dumped and the tables of Millrace's own line.
///
/// pg_dump writes one block per object, opened by a `-- Name: <name>; Type: <type>; ...`
/// header between two `--` lines and running to the next such header. A block is Millrace's
/// when the object it belongs to is named `millrace_*`: for tables, sequences, types and
/// functions that is the name itself; for constraints, defaults and triggers the name starts
/// with their table's; for comments it follows the kind of object (`TABLE millrace_client`);
/// an index named `millrace_*` is Millrace's even on River's table, and any other index
/// belongs to the table its `ON` clause names. Those
/// blocks are dropped whole (the `ALTER ... OWNER` of a table is in its block); every other
/// byte is kept, in pg_dump's order.
fn split_millrace_objects(dump: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = dump.split_inclusive('\n').collect();
    let is_header = |i: usize| {
        lines[i] == "--\n"
            && lines.get(i + 1).is_some_and(|l| l.starts_with("-- "))
            && lines.get(i + 2) == Some(&"--\n")
    };
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| is_header(i)).collect();
    let mut river = lines[..starts.first().copied().unwrap_or(lines.len())].concat();
    let mut millrace_tables = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let block = lines[start..end].concat();
        let header = lines[start + 1].trim_end();
        let object = header.strip_prefix("-- Name: ").and_then(|rest| {
            let (name, rest) = rest.split_once("; Type: ")?;
            let (kind, _) = rest.split_once("; ")?;
            Some((name, kind))
        });
        let Some((name, kind)) = object else {
            river.push_str(&block);
            continue;
        };
        let owner = match kind {
            // An index Millrace adds to River's table (the sequences' index) is Millrace's.
            "INDEX" if name.starts_with("millrace_") => name,
            "INDEX" => {
                let on = block
                    .split_once(" ON ")
                    .unwrap_or_else(|| panic!("index {name} without ON:\n{block}"))
                    .1;
                let on = on.strip_prefix("ONLY ").unwrap_or(on);
                on.strip_prefix(&format!("{SCHEMA_PLACEHOLDER}."))
                    .unwrap_or(on)
            }
            "COMMENT" => name.split_once(' ').map_or(name, |(_, object)| object),
            _ => name,
        };
        if owner.starts_with("millrace_") {
            if kind == "TABLE" {
                millrace_tables.push(name.to_owned());
            }
        } else {
            river.push_str(&block);
        }
    }
    (river, millrace_tables)
}

/// Compares a dump of a schema Millrace migrated with River's dump, object for object, with
/// Millrace's own objects aside: those must be line `millrace`'s tables when
/// `millrace_applied`, and nothing otherwise.
#[track_caller]
fn assert_river_dump(ours: &str, river: &str, millrace_applied: bool, what: &str) {
    let (ours, millrace_tables) = split_millrace_objects(ours);
    let expected: &[&str] = if millrace_applied {
        &MILLRACE_TABLES
    } else {
        &[]
    };
    assert_eq!(millrace_tables, expected, "{what}: Millrace's own tables");
    assert_same_dump(&ours, river, what);
}

fn step_versions(report: &millrace::MigrateReport) -> Vec<(&'static str, i64)> {
    report.steps.iter().map(|s| (s.line, s.version)).collect()
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    let report = migrator
        .migrate_up(MigrateOpts::new().dry_run(true))
        .await
        .unwrap();
    assert!(report.dry_run);
    // Line millrace too: line main would have reached version 5.
    assert_eq!(
        step_versions(&report),
        (1..=8)
            .map(|v| (LINE_MAIN, v))
            .chain(MILLRACE_VERSIONS.map(|v| (LINE_MILLRACE, v)))
            .collect::<Vec<_>>()
    );
    assert!(report.steps.iter().all(|s| s.duration.is_zero()));
    assert!(
        report.steps[1]
            .sql
            .contains(&format!("CREATE TABLE \"{}\".river_job", db.name))
    );
    assert!(
        !db.driver()
            .executor()
            .table_exists("river_migration")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn sql_fills_in_the_schema() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    let sql = migrator.sql("main", 6, MigrationDirection::Up).unwrap();
    assert!(
        sql.contains(&format!("\"{}\".river_job_state_in_bitmask(", db.name)),
        "{sql}"
    );
    assert!(!sql.contains("/*schema*/"));
    let down = migrator.sql("main", 4, MigrationDirection::Down).unwrap();
    assert!(
        down.contains(&format!("DROP TABLE \"{}\".river_queue", db.name)),
        "{down}"
    );
    assert!(matches!(
        migrator.sql("main", 9, MigrationDirection::Up),
        Err(Error::Migration(_))
    ));
    assert!(matches!(
        migrator.sql("pro", 1, MigrationDirection::Up),
        Err(Error::Migration(_))
    ));
    assert_eq!(migrator.versions("main").unwrap().len(), 8);
    assert_eq!(
        migrator.versions("millrace").unwrap(),
        [(1, "fleet"), (2, "sequences"), (3, "limits")]
    );
    let fleet = migrator.sql("millrace", 1, MigrationDirection::Up).unwrap();
    assert!(
        fleet.contains(&format!("CREATE TABLE \"{}\".millrace_client", db.name)),
        "{fleet}"
    );
    assert!(!fleet.contains("/*schema*/"));
    assert!(matches!(
        migrator.sql("millrace", 4, MigrationDirection::Up),
        Err(Error::Migration(_))
    ));
}

#[test]
fn invalid_schema_names_are_typed_errors() {
    for bad in [
        "",
        "bad-name",
        "1st",
        "x\"; DROP SCHEMA public CASCADE; --",
        "a.b",
        &"s".repeat(47),
    ] {
        let err = Schema::new(bad).map_err(Error::from).unwrap_err();
        assert!(matches!(err, Error::InvalidSchema(_)), "{bad:?}: {err:?}");
        assert!(err.to_string().starts_with("invalid schema name"), "{err}");
    }
}

#[tokio::test]
async fn migrators_started_at_once_take_turns() {
    let db = millrace_test::TestDb::empty().await;
    let runs = (0..3).map(|_| {
        let migrator = Migrator::new(db.driver());
        async move { migrator.migrate_up(MigrateOpts::new()).await }
    });
    let reports = futures_util::future::join_all(runs).await;
    let mut applied = 0;
    for report in reports {
        applied += report.expect("every migrator succeeds").steps.len();
    }
    // Each version was applied exactly once, by one of them.
    let main = Migrator::new(db.driver())
        .versions(LINE_MAIN)
        .unwrap()
        .len();
    let millrace = Migrator::new(db.driver())
        .versions(LINE_MILLRACE)
        .unwrap()
        .len();
    assert_eq!(applied, main + millrace);
    assert!(
        Migrator::new(db.driver())
            .validate(None)
            .await
            .unwrap()
            .is_valid()
    );
}
