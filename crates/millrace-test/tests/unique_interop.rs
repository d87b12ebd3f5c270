//! Unique jobs across clients: a unique job inserted by River's Rust crate (`riverqueue`)
//! blocks the same job inserted by Millrace, and the reverse, in one database, for every kind
//! of unique option. The key bytes are also checked against vectors in millrace-types; this
//! proves them end to end.

use std::time::Duration;

use millrace::{Client, InsertOpts, JobArgs, JobState, UniqueOpts};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use riverqueue::database::{PostgresDatabase, SchemaName};
use serde::{Deserialize, Serialize};

/// The args as River's Rust client declares them.
#[derive(Debug, Clone, Serialize, Deserialize, riverqueue::JobArgs)]
#[river(kind = "interop_unique")]
struct RiverArgs {
    customer: i64,
    note: String,
}

/// The same args as Millrace declares them: same kind, same JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MillraceArgs {
    customer: i64,
    note: String,
}

impl JobArgs for MillraceArgs {
    const KIND: &'static str = "interop_unique";
}

/// Another kind with the same JSON, for ExcludeKind.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OtherKindArgs {
    customer: i64,
    note: String,
}

impl JobArgs for OtherKindArgs {
    const KIND: &'static str = "interop_unique_other";
}

/// One combination of unique options, as each client spells it.
struct Case {
    name: &'static str,
    river: riverqueue::InsertOpts,
    millrace: InsertOpts,
}

/// The cases, with scheduled times `hours` later than tomorrow (by-period keys differ then).
fn cases(hours: i64) -> Vec<Case> {
    let tomorrow = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 + hours);
    let river_tomorrow: riverqueue::jiff::Timestamp = tomorrow.to_string().parse().unwrap();
    let states = [
        JobState::Available,
        JobState::Pending,
        JobState::Running,
        JobState::Retryable,
        JobState::Scheduled,
    ];
    let river_states = [
        riverqueue::JobState::Available,
        riverqueue::JobState::Pending,
        riverqueue::JobState::Running,
        riverqueue::JobState::Retryable,
        riverqueue::JobState::Scheduled,
    ];
    vec![
        Case {
            name: "by args",
            river: riverqueue::InsertOpts::default()
                .with_unique(riverqueue::UniqueOpts::default().with_by_args(true)),
            millrace: InsertOpts::new().unique(UniqueOpts::new().by_args()),
        },
        Case {
            name: "by args and queue",
            river: riverqueue::InsertOpts::default()
                .with_queue("interop_q")
                .with_unique(
                    riverqueue::UniqueOpts::default()
                        .with_by_args(true)
                        .with_by_queue(true),
                ),
            millrace: InsertOpts::new()
                .queue("interop_q")
                .unique(UniqueOpts::new().by_args().by_queue()),
        },
        Case {
            name: "by period of a scheduled job",
            river: riverqueue::InsertOpts::default()
                .with_scheduled_at(river_tomorrow)
                .with_unique(
                    riverqueue::UniqueOpts::default().with_by_period(Duration::from_secs(3600)),
                ),
            millrace: InsertOpts::new()
                .scheduled_at(tomorrow)
                .unique(UniqueOpts::new().by_period(Duration::from_secs(3600))),
        },
        Case {
            name: "by state without completed",
            river: riverqueue::InsertOpts::default().with_unique(
                riverqueue::UniqueOpts::default()
                    .with_by_args(true)
                    .with_by_state(river_states),
            ),
            millrace: InsertOpts::new().unique(UniqueOpts::new().by_args().by_state(states)),
        },
    ]
}

async fn clients(db: &TestDb) -> (riverqueue::Client, Client<PgDriver>) {
    let schema = SchemaName::new(db.schema().name()).expect("valid schema");
    let river =
        riverqueue::Client::builder(PostgresDatabase::new(db.pool().clone()).with_schema(schema))
            .build()
            .expect("build River's client");
    let millrace = Client::builder(db.driver())
        .build()
        .expect("build Millrace's client");
    (river, millrace)
}

#[tokio::test]
async fn riverqueue_unique_jobs_block_millraces_and_the_reverse() {
    let db = TestDb::new().await;
    let (river, millrace) = clients(&db).await;
    for (n, (case, reverse)) in cases(0).into_iter().zip(cases(2)).enumerate() {
        // River first.
        let args = (n as i64 * 2, format!("{} <&> ü", case.name));
        let first = river
            .insert(RiverArgs {
                customer: args.0,
                note: args.1.clone(),
            })
            .opts(case.river.clone())
            .await
            .unwrap_or_else(|err| panic!("{}: River insert: {err}", case.name));
        assert!(!first.unique_skipped_as_duplicate, "{}", case.name);
        let second = millrace
            .insert(
                MillraceArgs {
                    customer: args.0,
                    note: args.1,
                },
                Some(case.millrace.clone()),
            )
            .await
            .unwrap_or_else(|err| panic!("{}: Millrace insert: {err}", case.name));
        assert!(
            second.unique_skipped_as_duplicate,
            "{}: Millrace saw River's job",
            case.name
        );
        assert_eq!(second.job.id.0, first.id(), "{}", case.name);

        // Millrace first.
        let args = (n as i64 * 2 + 1, format!("{} reverse", case.name));
        let case = reverse;
        let first = millrace
            .insert(
                MillraceArgs {
                    customer: args.0,
                    note: args.1.clone(),
                },
                Some(case.millrace.clone()),
            )
            .await
            .unwrap();
        assert!(!first.unique_skipped_as_duplicate, "{}", case.name);
        let second = river
            .insert(RiverArgs {
                customer: args.0,
                note: args.1,
            })
            .opts(case.river)
            .await
            .unwrap();
        assert!(
            second.unique_skipped_as_duplicate,
            "{}: River saw Millrace's job",
            case.name
        );
        assert_eq!(second.id(), first.job.id.0, "{}", case.name);
    }
}

#[tokio::test]
async fn exclude_kind_blocks_across_kinds_and_clients() {
    let db = TestDb::new().await;
    let (river, millrace) = clients(&db).await;
    let river_opts = riverqueue::InsertOpts::default().with_unique(
        riverqueue::UniqueOpts::default()
            .with_by_args(true)
            .with_exclude_kind(true),
    );
    let first = river
        .insert(RiverArgs {
            customer: 99,
            note: "shared".into(),
        })
        .opts(river_opts)
        .await
        .unwrap();
    let opts = InsertOpts::new().unique(UniqueOpts::new().by_args().exclude_kind());
    let second = millrace
        .insert(
            OtherKindArgs {
                customer: 99,
                note: "shared".into(),
            },
            Some(opts),
        )
        .await
        .unwrap();
    assert!(second.unique_skipped_as_duplicate);
    assert_eq!(second.job.id.0, first.id());
    // The live row is returned unchanged: still River's kind.
    assert_eq!(second.job.kind, "interop_unique");
}
