//! Unique jobs: by args, by a subset of the args, and by period. Inserting a job whose unique
//! key matches a live job stores nothing and returns the live job, flagged
//! `unique_skipped_as_duplicate`.
//!
//! ```text
//! cargo run -p millrace --example unique
//! ```

use std::error::Error;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use millrace::{
    Client, InsertOpts, InsertResult, JobArgs, JobState, MigrateOpts, Migrator, Schema, UniqueOpts,
};
use millrace_postgres::PgDriver;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};

/// The database used when `DATABASE_URL` is unset.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Serialize, Deserialize)]
struct ReindexTable {
    table: String,
}

impl JobArgs for ReindexTable {
    const KIND: &'static str = "reindex_table";

    // Every insert of this kind is unique by its args, unless the insert says otherwise.
    fn insert_opts() -> InsertOpts {
        InsertOpts::new().unique(UniqueOpts::new().by_args())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct NotifyCustomer {
    customer_id: i64,
    message: String,
}

impl JobArgs for NotifyCustomer {
    const KIND: &'static str = "notify_customer";
    // Only the customer counts: a second message to the same customer is a duplicate.
    const UNIQUE_FIELDS: Option<&'static [&'static str]> = Some(&["customer_id"]);
}

#[derive(Debug, Serialize, Deserialize)]
struct DailyDigest {
    note: String,
}

impl JobArgs for DailyDigest {
    const KIND: &'static str = "daily_digest";
}

/// Runs the scenario on `schema`, which must be migrated; returns an error when an outcome is
/// not the expected one.
pub async fn run(pool: PgPool, schema: Schema) -> Result<(), Box<dyn Error>> {
    // Inserting needs no workers and no start.
    let client = Client::builder(PgDriver::new(pool).with_schema(schema)).build()?;

    // By args: the same args are a duplicate, other args are not.
    let first = client
        .insert(
            ReindexTable {
                table: "users".into(),
            },
            None,
        )
        .await?;
    let again = client
        .insert(
            ReindexTable {
                table: "users".into(),
            },
            None,
        )
        .await?;
    let other = client
        .insert(
            ReindexTable {
                table: "orders".into(),
            },
            None,
        )
        .await?;
    show("reindex users", &first);
    show("reindex users again", &again);
    show("reindex orders", &other);
    ensure(
        !first.unique_skipped_as_duplicate,
        "the first insert was skipped",
    )?;
    ensure(
        again.unique_skipped_as_duplicate && again.job.id == first.job.id,
        format!(
            "the repeat was not skipped as job {}: {again:?}",
            first.job.id
        ),
    )?;
    ensure(
        !other.unique_skipped_as_duplicate && other.job.id != first.job.id,
        "other args were taken for a duplicate",
    )?;

    // A cancelled (or discarded) job no longer blocks: by default every other state does.
    client.job_cancel(first.job.id).await?;
    let after_cancel = client
        .insert(
            ReindexTable {
                table: "users".into(),
            },
            None,
        )
        .await?;
    show("reindex users after cancelling the first", &after_cancel);
    ensure(
        !after_cancel.unique_skipped_as_duplicate && after_cancel.job.id != first.job.id,
        "a cancelled job still blocked its args",
    )?;

    // By some args: only the customer id is compared.
    let unique = Some(InsertOpts::new().unique(UniqueOpts::new().by_args()));
    let hello = NotifyCustomer {
        customer_id: 1,
        message: "hello".into(),
    };
    let hello = client.insert(hello, unique.clone()).await?;
    let bye = NotifyCustomer {
        customer_id: 1,
        message: "goodbye".into(),
    };
    let bye = client.insert(bye, unique).await?;
    show("notify customer 1 hello", &hello);
    show("notify customer 1 goodbye", &bye);
    ensure(
        !hello.unique_skipped_as_duplicate
            && bye.unique_skipped_as_duplicate
            && bye.job.id == hello.job.id,
        "another message to the same customer was not a duplicate",
    )?;

    // By period: one digest per day, whatever its args. The key hashes the start of the day
    // holding the job's scheduled time; both inserts name the same time, so the example
    // never straddles a day boundary.
    let tomorrow = Timestamp::now() + SignedDuration::from_hours(24);
    let daily = InsertOpts::new()
        .scheduled_at(tomorrow)
        .unique(UniqueOpts::new().by_period(Duration::from_secs(24 * 60 * 60)));
    let digest = DailyDigest {
        note: "first".into(),
    };
    let digest = client.insert(digest, Some(daily.clone())).await?;
    let second = DailyDigest {
        note: "second".into(),
    };
    let second = client.insert(second, Some(daily)).await?;
    show("daily digest", &digest);
    show("daily digest again", &second);
    ensure(
        digest.job.state == JobState::Scheduled
            && !digest.unique_skipped_as_duplicate
            && second.unique_skipped_as_duplicate
            && second.job.id == digest.job.id,
        "a second digest for the same day was not a duplicate",
    )?;
    Ok(())
}

fn show(what: &str, result: &InsertResult) {
    println!(
        "{what}: job {} ({}), unique_skipped_as_duplicate = {}",
        result.job.id, result.job.state, result.unique_skipped_as_duplicate
    );
}

/// Turns an unexpected outcome into an error.
fn ensure(ok: bool, what: impl Into<String>) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected outcome: {}", what.into()).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let pool = PgPool::connect(&url).await?;
    let schema = Schema::new("millrace_example_unique")?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{}\"",
        schema.name()
    )))
    .execute(&pool)
    .await?;
    Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
        .migrate_up(MigrateOpts::default())
        .await?;
    // Every run starts from an empty job table: the jobs of an earlier run would still block
    // this run's inserts.
    sqlx::query(AssertSqlSafe(format!(
        "TRUNCATE {}",
        schema.qualify("river_job")
    )))
    .execute(&pool)
    .await?;
    run(pool, schema).await?;
    println!("ok");
    Ok(())
}
