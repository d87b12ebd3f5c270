//! Millrace's migrations against River's own: the same schema dump at every version, up and
//! down, and River's CLI adopting what Millrace migrated and the other way round.

use millrace::{LINE_MAIN, LINE_MILLRACE, MigrateOpts, MigrationDirection};
use millrace_driver::{Driver, Executor};

use super::{
    MILLRACE_VERSIONS, RIVER_SCHEMA_V8, TestSchema, assert_river_dump, mask_notify_body,
    step_versions,
};

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
