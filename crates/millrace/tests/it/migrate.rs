//! The migrator against a real PostgreSQL, compared with River's own CLI.
//!
//! Each test works in a fresh schema of its own, dropped at the end. River's CLI is the
//! `riverqueue` binary of the crate riverqueue-cli 0.5.0, looked up through `RIVERQUEUE_BIN`,
//! then `PATH`, then `~/.cargo/bin`; the tests that need it fail, saying how to install it,
//! when it is missing. `pg_dump` comes from `PATH` or `PG_DUMP`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use millrace::{
    Error, LINE_MAIN, LINE_MILLRACE, MigrateOpts, MigrationDirection, Migrator, Schema,
};
use millrace_driver::{Driver, Executor, Migration};
use millrace_postgres::PgDriver;
use sqlx::PgPool;

/// River's schema at version 8 as River's CLI creates it; see regenerate_river_schema.sh.
const RIVER_SCHEMA_V8: &str = include_str!("../../../millrace-postgres/tests/river_schema_v8.sql");

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
async fn schema_matches_rivers_dump() {
    let db = TestSchema::new().await;
    let report = db.migrator().migrate_up(MigrateOpts::new()).await.unwrap();
    assert_eq!(report.direction, MigrationDirection::Up);
    assert_eq!(
        step_versions(&report),
        (1..=8)
            .map(|v| (LINE_MAIN, v))
            .chain(MILLRACE_VERSIONS.map(|v| (LINE_MILLRACE, v)))
            .collect::<Vec<_>>()
    );
    assert_river_dump(
        &db.dump(),
        RIVER_SCHEMA_V8,
        true,
        "schema after migrate-up vs river_schema_v8.sql",
    );
    assert_eq!(db.applied(LINE_MAIN).await, (1..=8).collect::<Vec<_>>());
    assert_eq!(db.applied(LINE_MILLRACE).await, MILLRACE_VERSIONS);

    // Everything is applied, so a second run does nothing.
    let again = db.migrator().migrate_up(MigrateOpts::new()).await.unwrap();
    assert!(again.steps.is_empty());
    assert!(db.migrator().validate(None).await.unwrap().is_valid());
}

#[tokio::test]
async fn every_version_matches_river_up_and_down() {
    let river = TestSchema::new().await;
    let ours = TestSchema::new().await;
    for version in 1..=8 {
        river.river(&["migrate-up", "--target-version", &version.to_string()]);
        let report = ours
            .migrator()
            .migrate_up(MigrateOpts::new().target_version(version))
            .await
            .unwrap();
        // Line millrace comes with main version 5, which lets river_migration record it.
        let mut expected = vec![(LINE_MAIN, version)];
        if version == 5 {
            expected.extend(MILLRACE_VERSIONS.map(|v| (LINE_MILLRACE, v)));
        }
        assert_eq!(step_versions(&report), expected);
        assert_river_dump(
            &mask_notify_body(&ours.dump()),
            &mask_notify_body(&river.dump()),
            version >= 5,
            &format!("up to version {version}"),
        );
    }
    for version in (1..=8).rev() {
        river.river(&["migrate-down"]);
        let report = ours
            .migrator()
            .migrate_down(MigrateOpts::new())
            .await
            .unwrap();
        // Reverting main version 5 takes line millrace to nothing first.
        let mut expected = vec![(LINE_MAIN, version)];
        if version == 5 {
            for v in MILLRACE_VERSIONS {
                expected.insert(0, (LINE_MILLRACE, v));
            }
        }
        assert_eq!(step_versions(&report), expected);
        assert_river_dump(
            &mask_notify_body(&ours.dump()),
            &mask_notify_body(&river.dump()),
            version > 5,
            &format!("down from version {version}"),
        );
    }
}

#[tokio::test]
async fn round_trip_up_down_to_zero_up() {
    let db = TestSchema::new().await;
    let empty = db.dump();
    let migrator = db.migrator();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    let up = db.dump();

    // Jobs survive a round trip through versions that keep river_job.
    db.exec("INSERT INTO /*schema*/river_job (args, kind, max_attempts) VALUES ('{}', 'k', 5)")
        .await;
    migrator
        .migrate_down(MigrateOpts::new().target_version(3))
        .await
        .unwrap();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    let jobs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.river_job",
        db.name
    )))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(jobs, 1);
    assert_same_dump(&db.dump(), &up, "after down to 3 and up vs first up");

    let down = migrator
        .migrate_down(MigrateOpts::new().target_version(0))
        .await
        .unwrap();
    assert_eq!(down.direction, MigrationDirection::Down);
    assert_eq!(
        step_versions(&down),
        MILLRACE_VERSIONS
            .into_iter()
            .rev()
            .map(|v| (LINE_MILLRACE, v))
            .chain((1..=8).rev().map(|v| (LINE_MAIN, v)))
            .collect::<Vec<_>>()
    );
    // Version 4's down leaves `pending` in the enum, but version 2's down drops the enum.
    assert_same_dump(&db.dump(), &empty, "after down to 0 vs an empty schema");
    assert!(db.applied(LINE_MAIN).await.is_empty());

    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    assert_same_dump(&db.dump(), &up, "up again vs first up");
    // River spells "everything" -1.
    migrator
        .migrate_down(MigrateOpts::new().target_version(-1))
        .await
        .unwrap();
    assert_same_dump(&db.dump(), &empty, "after down to -1 vs an empty schema");
}

#[tokio::test]
async fn down_goes_one_version_by_default_and_targets_are_left_applied() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();

    let one = migrator.migrate_down(MigrateOpts::new()).await.unwrap();
    assert_eq!(step_versions(&one), [(LINE_MAIN, 8)]);
    let two = migrator
        .migrate_down(MigrateOpts::new().max_steps(2))
        .await
        .unwrap();
    assert_eq!(step_versions(&two), [(LINE_MAIN, 7), (LINE_MAIN, 6)]);
    let to_3 = migrator
        .migrate_down(MigrateOpts::new().target_version(3))
        .await
        .unwrap();
    // Below main version 5, line millrace goes first, whole (and is not counted as a step).
    assert_eq!(
        step_versions(&to_3),
        [
            (LINE_MILLRACE, 3),
            (LINE_MILLRACE, 2),
            (LINE_MILLRACE, 1),
            (LINE_MAIN, 5),
            (LINE_MAIN, 4)
        ]
    );
    // Below version 5 the driver reads and writes River's older river_migration table.
    assert_eq!(db.applied(LINE_MAIN).await, [1, 2, 3]);
    assert!(db.applied(LINE_MILLRACE).await.is_empty());

    let err = migrator
        .migrate_down(MigrateOpts::new().target_version(6))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration(_)), "{err:?}");
    assert!(
        err.to_string().contains("version 6 is not applied"),
        "{err}"
    );

    let up = migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    assert_eq!(
        step_versions(&up),
        (4..=8)
            .map(|v| (LINE_MAIN, v))
            .chain(MILLRACE_VERSIONS.map(|v| (LINE_MILLRACE, v)))
            .collect::<Vec<_>>()
    );
    assert_river_dump(&db.dump(), RIVER_SCHEMA_V8, true, "after down to 3 and up");
}

#[tokio::test]
async fn target_version_7_leaves_version_8_pending() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    let report = migrator
        .migrate_up(MigrateOpts::new().target_version(7))
        .await
        .unwrap();
    // The target is line main's; line millrace follows, as main is past version 5.
    assert_eq!(
        step_versions(&report),
        (1..=7)
            .map(|v| (LINE_MAIN, v))
            .chain(MILLRACE_VERSIONS.map(|v| (LINE_MILLRACE, v)))
            .collect::<Vec<_>>()
    );

    let validate = migrator.validate(None).await.unwrap();
    assert!(!validate.is_valid());
    assert_eq!(
        validate.to_string(),
        "pending migrations: main 008 (job_id_autoincrement)"
    );
    assert!(migrator.validate(Some(7)).await.unwrap().is_valid());

    let list = migrator.list().await.unwrap();
    let main: Vec<_> = list.iter().filter(|m| m.line == LINE_MAIN).collect();
    assert_eq!(main.len(), 8);
    assert!(main[..7].iter().all(|m| m.is_applied()));
    assert!(!main[7].is_applied());
    assert_eq!(main[7].name, Some("job_id_autoincrement"));

    // A target already applied is a no-op, as in River.
    assert!(
        migrator
            .migrate_up(MigrateOpts::new().target_version(7))
            .await
            .unwrap()
            .steps
            .is_empty()
    );
    assert!(
        migrator
            .migrate_up(MigrateOpts::new().target_version(3))
            .await
            .unwrap()
            .steps
            .is_empty()
    );
    let rest = migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    assert_eq!(step_versions(&rest), [(LINE_MAIN, 8)]);

    let err = migrator
        .migrate_up(MigrateOpts::new().target_version(9))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration(_)), "{err:?}");
}

#[tokio::test]
async fn adopts_databases_river_migrated() {
    // At version 7, and at version 4, whose river_migration has no `line` column yet.
    for river_version in [7, 4] {
        let db = TestSchema::new().await;
        db.river(&["migrate-up", "--target-version", &river_version.to_string()]);
        let migrator = db.migrator();
        let before = migrator.list().await.unwrap();
        let applied: Vec<_> = before
            .iter()
            .filter(|m| m.is_applied())
            .map(|m| m.version)
            .collect();
        assert_eq!(applied, (1..=river_version).collect::<Vec<_>>());

        let report = migrator.migrate_up(MigrateOpts::new()).await.unwrap();
        assert_eq!(
            step_versions(&report),
            (river_version + 1..=8)
                .map(|v| (LINE_MAIN, v))
                .chain(MILLRACE_VERSIONS.map(|v| (LINE_MILLRACE, v)))
                .collect::<Vec<_>>()
        );
        // River's rows are kept as River wrote them.
        let after = migrator.list().await.unwrap();
        for (b, a) in before.iter().zip(&after).filter(|(b, _)| b.is_applied()) {
            assert_eq!(b.applied_at, a.applied_at, "version {}", b.version);
        }
        assert_river_dump(
            &db.dump(),
            RIVER_SCHEMA_V8,
            true,
            &format!("adopted at version {river_version}"),
        );
    }
}

#[tokio::test]
async fn river_accepts_what_millrace_migrated() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    db.river(&["validate"]);
    // River's CLI knows line main only, and will not revert its version 5 while
    // river_migration holds another line; Millrace takes line millrace away first.
    let down = migrator
        .migrate_down(MigrateOpts::new().line(LINE_MILLRACE).target_version(0))
        .await
        .unwrap();
    assert_eq!(
        step_versions(&down),
        [(LINE_MILLRACE, 3), (LINE_MILLRACE, 2), (LINE_MILLRACE, 1)]
    );
    assert!(db.applied(LINE_MILLRACE).await.is_empty());
    // River's CLI takes the schema all the way down, then up again.
    db.river(&["migrate-down", "--target-version", "-1"]);
    assert!(db.applied(LINE_MAIN).await.is_empty());
    db.river(&["migrate-up"]);
    assert_eq!(db.applied(LINE_MAIN).await, (1..=8).collect::<Vec<_>>());
    // River's CLI leaves line millrace to Millrace, which takes it up again.
    assert_eq!(
        migrator.validate(None).await.unwrap().to_string(),
        "pending migrations: millrace 001 (fleet), millrace 002 (sequences), millrace 003 (limits)"
    );
    let up = migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    assert_eq!(
        step_versions(&up),
        [(LINE_MILLRACE, 1), (LINE_MILLRACE, 2), (LINE_MILLRACE, 3)]
    );
    assert!(migrator.validate(None).await.unwrap().is_valid());
    db.river(&["validate"]);
}

#[tokio::test]
async fn river_refuses_to_revert_version_5_while_line_millrace_has_rows() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();

    let printed = db.river_fails(&["migrate-down", "--target-version", "-1"]);
    assert!(printed.contains("non-main migration lines"), "{printed}");
    // River runs each version in a transaction of its own: 8 to 6 went, 5 rolled back whole,
    // and line millrace is untouched.
    assert_eq!(db.applied(LINE_MAIN).await, [1, 2, 3, 4, 5]);
    assert_eq!(db.applied(LINE_MILLRACE).await, MILLRACE_VERSIONS);
    assert!(
        db.driver()
            .executor()
            .table_exists("millrace_client")
            .await
            .unwrap()
    );

    // Millrace's migrator finishes the job, line millrace first.
    let down = migrator
        .migrate_down(MigrateOpts::new().target_version(0))
        .await
        .unwrap();
    assert_eq!(
        step_versions(&down),
        [(LINE_MILLRACE, 3), (LINE_MILLRACE, 2), (LINE_MILLRACE, 1)]
            .into_iter()
            .chain((1..=5).rev().map(|v| (LINE_MAIN, v)))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_foreign_line_stops_reverting_version_5_and_the_step_rolls_back() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    // A line neither River nor Millrace knows, such as another tool's.
    db.exec("INSERT INTO /*schema*/river_migration (line, version) VALUES ('other', 1)")
        .await;

    let err = migrator
        .migrate_down(MigrateOpts::new().target_version(0))
        .await
        .unwrap_err();
    let Error::MigrationStep {
        line,
        version,
        direction,
        ..
    } = &err
    else {
        panic!("expected a MigrationStep error, got {err:?}");
    };
    assert_eq!(
        (line.as_str(), *version, *direction),
        ("main", 5, MigrationDirection::Down)
    );
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    assert!(chain.contains("lines other than main"), "{chain}");
    // Line millrace went first, then versions 8 to 6; version 5 rolled back whole.
    assert!(db.applied(LINE_MILLRACE).await.is_empty());
    assert_eq!(db.applied(LINE_MAIN).await, [1, 2, 3, 4, 5]);
    assert!(
        db.driver()
            .executor()
            .table_exists("river_client")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn millrace_versions_unknown_to_this_release_are_not_reverted() {
    let db = TestSchema::new().await;
    let migrator = db.migrator();
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    // As a newer Millrace would record a version after this release's newest.
    db.exec("INSERT INTO /*schema*/river_migration (line, version) VALUES ('millrace', 4)")
        .await;

    let list = migrator.list().await.unwrap();
    let millrace: Vec<_> = list
        .iter()
        .filter(|m| m.line == LINE_MILLRACE)
        .map(|m| (m.version, m.name, m.is_applied()))
        .collect();
    assert_eq!(
        millrace,
        [
            (1, Some("fleet"), true),
            (2, Some("sequences"), true),
            (3, Some("limits"), true),
            (4, None, true)
        ]
    );

    let err = migrator
        .migrate_down(MigrateOpts::new().target_version(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Migration(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("line millrace has version 4 applied"),
        "{err}"
    );
    assert_eq!(
        db.applied(LINE_MAIN).await,
        (1..=8).collect::<Vec<_>>(),
        "nothing was reverted"
    );
    assert_eq!(
        db.applied(LINE_MILLRACE).await,
        [1, 2, 3, 4],
        "nothing was reverted"
    );
    // Line millrace alone will not go down either, even one version.
    let err = migrator
        .migrate_down(MigrateOpts::new().line(LINE_MILLRACE))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("line millrace has version 4 applied"),
        "{err}"
    );
    // Above version 5, line main goes down regardless.
    migrator
        .migrate_down(MigrateOpts::new().target_version(5))
        .await
        .unwrap();
    assert_eq!(db.applied(LINE_MILLRACE).await, [1, 2, 3, 4]);
}

/// PgDriver whose line `millrace` has two test versions after the real version 1, standing in
/// for the line's future tables.
#[derive(Debug, Clone)]
struct WithMillraceLine(PgDriver);

static TEST_MILLRACE_NEXT: &[Migration] = &[
    Migration {
        version: 2,
        name: "probe",
        up: "CREATE TABLE /*schema*/millrace_probe (id bigint PRIMARY KEY);",
        down: "DROP TABLE /*schema*/millrace_probe;",
    },
    Migration {
        version: 3,
        name: "probe_note",
        up: "ALTER TABLE /*schema*/millrace_probe ADD COLUMN note text;",
        down: "ALTER TABLE /*schema*/millrace_probe DROP COLUMN note;",
    },
];

impl Driver for WithMillraceLine {
    type Conn = <PgDriver as Driver>::Conn;
    type Tx = <PgDriver as Driver>::Tx;
    type Executor<'a> = <PgDriver as Driver>::Executor<'a>;
    type Listener = <PgDriver as Driver>::Listener;

    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn schema(&self) -> &Schema {
        self.0.schema()
    }
    fn executor(&self) -> Self::Executor<'_> {
        self.0.executor()
    }
    fn conn_executor<'a>(&'a self, conn: &'a mut Self::Conn) -> Self::Executor<'a> {
        self.0.conn_executor(conn)
    }
    async fn begin(&self) -> millrace_driver::Result<Self::Tx> {
        self.0.begin().await
    }
    fn tx_conn(tx: &mut Self::Tx) -> &mut Self::Conn {
        PgDriver::tx_conn(tx)
    }
    async fn commit(tx: Self::Tx) -> millrace_driver::Result<()> {
        PgDriver::commit(tx).await
    }
    async fn listener(&self) -> millrace_driver::Result<Self::Listener> {
        self.0.listener().await
    }
    fn supports_listen_notify(&self) -> bool {
        self.0.supports_listen_notify()
    }
    fn migrations(&self, line: &str) -> Option<&'static [Migration]> {
        static TEST_MILLRACE: OnceLock<Vec<Migration>> = OnceLock::new();
        match line {
            LINE_MILLRACE => Some(TEST_MILLRACE.get_or_init(|| {
                let real = self.0.migrations(LINE_MILLRACE).unwrap();
                assert_eq!(real[0].version, 1);
                real[..1]
                    .iter()
                    .chain(TEST_MILLRACE_NEXT)
                    .copied()
                    .collect()
            })),
            _ => self.0.migrations(line),
        }
    }
}

#[tokio::test]
async fn line_millrace_follows_main_and_goes_first_below_version_5() {
    let db = TestSchema::new().await;
    let migrator = Migrator::new(WithMillraceLine(db.driver()));

    // Before main version 5, river_migration cannot record line millrace: left out, or an
    // error when asked for alone.
    let four = migrator
        .migrate_up(MigrateOpts::new().target_version(4))
        .await
        .unwrap();
    assert_eq!(
        step_versions(&four),
        (1..=4).map(|v| (LINE_MAIN, v)).collect::<Vec<_>>()
    );
    assert!(migrator.validate(Some(4)).await.unwrap().is_valid());
    let err = migrator
        .migrate_up(MigrateOpts::new().line("millrace"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs line main at version 5"),
        "{err}"
    );

    let up = migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    let expected: Vec<_> = (5..=8)
        .map(|v| (LINE_MAIN, v))
        .chain([(LINE_MILLRACE, 1), (LINE_MILLRACE, 2), (LINE_MILLRACE, 3)])
        .collect();
    assert_eq!(step_versions(&up), expected);
    assert_eq!(db.applied(LINE_MILLRACE).await, [1, 2, 3]);

    // Line millrace alone, one step down.
    let down = migrator
        .migrate_down(MigrateOpts::new().line("millrace"))
        .await
        .unwrap();
    assert_eq!(step_versions(&down), [(LINE_MILLRACE, 3)]);
    migrator
        .migrate_up(MigrateOpts::new().line("millrace"))
        .await
        .unwrap();

    // Down to main 6 leaves line millrace alone; below 5 it goes first, whole.
    migrator
        .migrate_down(MigrateOpts::new().target_version(6))
        .await
        .unwrap();
    assert_eq!(db.applied(LINE_MILLRACE).await, [1, 2, 3]);
    let down = migrator
        .migrate_down(MigrateOpts::new().target_version(4))
        .await
        .unwrap();
    assert_eq!(
        step_versions(&down),
        [
            (LINE_MILLRACE, 3),
            (LINE_MILLRACE, 2),
            (LINE_MILLRACE, 1),
            (LINE_MAIN, 6),
            (LINE_MAIN, 5)
        ]
    );
    for table in ["millrace_probe", "millrace_client"] {
        assert!(
            !db.driver().executor().table_exists(table).await.unwrap(),
            "{table}"
        );
    }
    assert_eq!(db.applied(LINE_MAIN).await, [1, 2, 3, 4]);

    // And the whole way, from the top.
    migrator.migrate_up(MigrateOpts::new()).await.unwrap();
    migrator
        .migrate_down(MigrateOpts::new().target_version(0))
        .await
        .unwrap();
    assert!(
        !db.driver()
            .executor()
            .table_exists("river_migration")
            .await
            .unwrap()
    );
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
