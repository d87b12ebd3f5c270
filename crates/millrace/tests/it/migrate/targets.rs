//! Moving between versions: a round trip to zero, one version down by default, and a target
//! that leaves later versions pending.

use millrace::{Error, LINE_MAIN, LINE_MILLRACE, MigrateOpts, MigrationDirection};

use super::{
    MILLRACE_VERSIONS, RIVER_SCHEMA_V8, TestSchema, assert_river_dump, assert_same_dump,
    step_versions,
};

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
