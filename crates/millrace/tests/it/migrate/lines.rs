//! Migration lines beside River's `main`: a foreign line stops a revert, versions of line
//! `millrace` this release does not know are left alone, and `millrace` follows `main`.

use std::sync::OnceLock;

use millrace::{
    Error, LINE_MAIN, LINE_MILLRACE, MigrateOpts, MigrationDirection, Migrator, Schema,
};
use millrace_driver::{Driver, Executor, Migration};
use millrace_postgres::PgDriver;

use super::{TestSchema, step_versions};

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
