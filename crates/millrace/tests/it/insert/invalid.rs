//! Invalid inserts: each is refused with a clear error and stores nothing.

use std::collections::HashMap;
use std::time::Duration;

use millrace::{Error, InsertManyParams, InsertOpts, JobArgs, JobState, UniqueOpts};
use millrace_test::TestDb;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::common::{Simple, client, count_jobs};

/// Args that serialize to a JSON array.
#[derive(Serialize)]
struct ListArgs(Vec<i32>);
impl JobArgs for ListArgs {
    const KIND: &'static str = "list_args";
}

/// Args that serialize to `null`.
#[derive(Serialize)]
struct UnitArgs;
impl JobArgs for UnitArgs {
    const KIND: &'static str = "unit_args";
}

/// Args that cannot be encoded at all: JSON keys must be strings.
#[derive(Serialize)]
struct UnencodableArgs {
    map: HashMap<(i32, i32), i32>,
}
impl JobArgs for UnencodableArgs {
    const KIND: &'static str = "unencodable";
}

#[derive(Serialize, Deserialize)]
struct SpacedKind {}
impl JobArgs for SpacedKind {
    const KIND: &'static str = "bad kind";
}

#[derive(Serialize, Deserialize)]
struct ShortKind {}
impl JobArgs for ShortKind {
    const KIND: &'static str = "k";
}

#[track_caller]
fn assert_invalid(result: millrace::Result<impl std::fmt::Debug>, needles: &[&str]) {
    let err = result.expect_err("the insert should be refused");
    assert!(matches!(err, Error::InvalidInsert(_)), "{err:?}");
    let message = err.to_string();
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[tokio::test]
async fn invalid_inserts_are_refused_with_clear_errors_and_store_nothing() {
    let db = TestDb::new().await;
    let client = client(&db);
    let with = |opts: InsertOpts| Some(opts);
    let s = || Simple::new("x");

    for n in [0, -1, 32_768] {
        assert_invalid(
            client
                .insert(s(), with(InsertOpts::new().max_attempts(n)))
                .await,
            &["max_attempts", "between 1 and 32767", &n.to_string()],
        );
    }
    assert_invalid(
        client
            .insert(s(), with(InsertOpts::new().max_attempts(1_000_000_000)))
            .await,
        &[
            "max_attempts",
            "1000000000",
            "smallint",
            "persistent worker",
        ],
    );
    for p in [0, 5, -1] {
        assert_invalid(
            client
                .insert(s(), with(InsertOpts::new().priority(p)))
                .await,
            &["priority", "between 1 and 4", &p.to_string()],
        );
    }
    for q in [
        "",
        "Upper",
        "a b",
        "a__b",
        "trailing_",
        "q".repeat(65).as_str(),
    ] {
        assert_invalid(
            client.insert(s(), with(InsertOpts::new().queue(q))).await,
            &["queue name"],
        );
    }
    assert_invalid(
        client.insert(SpacedKind {}, None).await,
        &["kind", "\"bad kind\""],
    );
    assert_invalid(client.insert(ShortKind {}, None).await, &["kind", "\"k\""]);
    for tag in ["a,b,c", "ab", "-abc", "with space", ""] {
        assert_invalid(
            client
                .insert(s(), with(InsertOpts::new().tags([tag])))
                .await,
            &["tag"],
        );
    }
    assert_invalid(
        client
            .insert(
                s(),
                with(
                    InsertOpts::new().unique(
                        UniqueOpts::new().by_state([JobState::Available, JobState::Running]),
                    ),
                ),
            )
            .await,
        &["by-state", "pending", "scheduled"],
    );
    assert_invalid(
        client
            .insert(
                s(),
                with(InsertOpts::new().unique(UniqueOpts::new().by_state([]).exclude_kind())),
            )
            .await,
        &["exclude the kind", "by-args"],
    );
    assert_invalid(
        client
            .insert(
                s(),
                with(
                    InsertOpts::new()
                        .unique(UniqueOpts::new().by_period(Duration::from_millis(500))),
                ),
            )
            .await,
        &["period", "second"],
    );
    assert_invalid(
        client.insert(ListArgs(vec![1, 2]), None).await,
        &["JSON object", "[1,2]"],
    );
    assert_invalid(
        client.insert(UnitArgs, None).await,
        &["JSON object", "null"],
    );
    assert_invalid(
        client
            .insert(s(), with(InsertOpts::new().metadata(json!([1, 2]))))
            .await,
        &["metadata", "JSON object"],
    );
    assert_invalid(
        client
            .insert(s(), with(InsertOpts::new().metadata(json!("text"))))
            .await,
        &["metadata", "JSON object"],
    );

    let err = client
        .insert(
            UnencodableArgs {
                map: HashMap::from([((1, 2), 3)]),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ArgsEncode { ref kind, .. } if kind == "unencodable"),
        "{err:?}"
    );

    // One bad job fails its whole batch, on every path.
    let batch = || {
        vec![
            InsertManyParams::new(s()),
            InsertManyParams::new(s()).opts(InsertOpts::new().priority(9)),
        ]
    };
    assert_invalid(client.insert_many(batch()).await, &["priority"]);
    assert_invalid(client.insert_many_fast(batch()).await, &["priority"]);
    let mut tx = db.tx().await;
    assert_invalid(
        client
            .insert_tx(&mut tx, s(), with(InsertOpts::new().priority(0)))
            .await,
        &["priority"],
    );
    assert_invalid(client.insert_many_tx(&mut tx, batch()).await, &["priority"]);
    assert_invalid(
        client.insert_many_fast_tx(&mut tx, batch()).await,
        &["priority"],
    );
    tx.commit().await.unwrap();

    assert_eq!(count_jobs(&db).await, 0);

    // The limits themselves are accepted.
    let edge = client
        .insert(
            s(),
            with(
                InsertOpts::new()
                    .max_attempts(32_767)
                    .priority(4)
                    .queue("q".repeat(64)),
            ),
        )
        .await
        .unwrap();
    assert_eq!(edge.job.max_attempts, 32_767);
    let edge = client
        .insert(
            s(),
            with(
                InsertOpts::new()
                    .max_attempts(1)
                    .priority(1)
                    .tags(["a-b", "t".repeat(255).as_str()]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(edge.job.max_attempts, 1);
    assert_eq!(count_jobs(&db).await, 2);
}

#[tokio::test]
async fn a_client_with_an_invalid_queue_is_refused_at_build() {
    let db = TestDb::new().await;
    let err = millrace::Client::builder(db.driver())
        .insert_opts(InsertOpts::new().queue("Not Valid"))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("queue"), "{err}");
}
