//! The driver conformance suite: every driver-level behaviour the client relies on, run
//! against each driver (River's `riverdrivertest`).
//!
//! A driver's tests call [`driver_conformance!`](crate::driver_conformance) with a
//! [`DriverFixture`], which expands to one `#[tokio::test]` per check, so a failure names the
//! behaviour that broke. Any change to a driver verb extends this suite.
//!
//! ```ignore
//! // crates/millrace-postgres/tests/conformance.rs
//! millrace_test::driver_conformance!(millrace_test::TestDb);
//! ```
//!
//! The checks live in the file of their noun, as the drivers' executors do (`insert`; `work`:
//! fetch, start and complete; `admin`; `queue`; `maintenance`; `sequence`; `notification`;
//! `inspect`); this file holds the fixture, the helpers they share and the macro.

use std::future::Future;

use jiff::{SignedDuration, Timestamp};
use millrace_driver::{
    Driver, Executor, JobCompleteParams, JobGetAvailableParams, JobInsertParams, JobOutcome,
};
use millrace_types::{AttemptError, JobId, JobRow, JobState};

mod admin;
mod insert;
mod inspect;
mod maintenance;
mod notification;
mod queue;
mod sequence;
mod work;

pub use admin::*;
pub use insert::*;
pub use inspect::*;
pub use maintenance::*;
pub use notification::*;
pub use queue::*;
pub use sequence::*;
pub use work::*;

/// A fresh, migrated database for one check, and the driver on it.
pub trait DriverFixture: Send + Sized + 'static {
    /// The driver under test.
    type Driver: Driver;

    /// A fresh database (or schema) migrated to the newest version, with empty tables.
    fn create() -> impl Future<Output = Self> + Send;

    /// The driver on it.
    fn driver(&self) -> Self::Driver;
}

impl DriverFixture for crate::TestDb {
    type Driver = millrace_postgres::PgDriver;

    async fn create() -> Self {
        crate::TestDb::new().await
    }

    fn driver(&self) -> Self::Driver {
        crate::TestDb::driver(self)
    }
}

const CLIENT: &str = "conformance-client";

/// Params for one plain available job.
pub fn job(kind: &str, queue: &str) -> JobInsertParams {
    JobInsertParams {
        args: r#"{"n":1}"#.to_owned(),
        created_at: None,
        kind: kind.to_owned(),
        max_attempts: 25,
        metadata: "{}".to_owned(),
        priority: 1,
        queue: queue.to_owned(),
        scheduled_at: None,
        state: JobState::Available,
        tags: Vec::new(),
        unique_key: None,
        unique_states: None,
    }
}

async fn insert<D: Driver>(driver: &D, jobs: &[JobInsertParams]) -> Vec<JobRow> {
    driver
        .executor()
        .job_insert_many(jobs)
        .await
        .expect("insert")
        .into_iter()
        .map(|r| r.job)
        .collect()
}

async fn fetch<D: Driver>(driver: &D, queue: &str, max: i32) -> Vec<JobRow> {
    driver
        .executor()
        .job_get_available(&JobGetAvailableParams {
            queue: queue.to_owned(),
            max,
            client_id: CLIENT.to_owned(),
            now: None,
            limit: None,
            rate: None,
        })
        .await
        .expect("fetch")
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
}

async fn get<D: Driver>(driver: &D, id: JobId) -> JobRow {
    driver
        .executor()
        .job_get_by_id(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("job {id} exists"))
}

/// Inserts one job and fetches it, so it is running at attempt 1.
async fn running<D: Driver>(driver: &D, queue: &str) -> JobRow {
    insert(driver, &[job("conformance", queue)]).await;
    let mut rows = fetch(driver, queue, 1).await;
    assert_eq!(rows.len(), 1, "one job fetched");
    rows.remove(0)
}

async fn complete<D: Driver>(driver: &D, row: &JobRow, outcome: JobOutcome) -> Vec<JobId> {
    driver
        .executor()
        .job_complete_many(&[JobCompleteParams {
            id: row.id,
            attempt: row.attempt,
            outcome,
            metadata_merge: None,
        }])
        .await
        .expect("complete")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn attempt_error(row: &JobRow, message: &str) -> AttemptError {
    AttemptError {
        at: row.attempted_at.expect("a running job has attempted_at"),
        attempt: i32::from(row.attempt),
        error: message.to_owned(),
        trace: String::new(),
    }
}

fn in_secs(secs: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_secs(secs)
}

/// Expands to one `#[tokio::test]` per conformance check for a [`DriverFixture`].
///
/// ```ignore
/// millrace_test::driver_conformance!(millrace_test::TestDb);
/// ```
#[macro_export]
macro_rules! driver_conformance {
    ($fixture:ty) => {
        $crate::driver_conformance!(@tests $fixture;
            insert_many_returns_rows_in_order,
            unique_insert_reports_duplicates,
            insert_fast_counts_rows,
            fetch_takes_due_jobs_in_order,
            concurrent_fetches_take_disjoint_jobs,
            attempted_by_keeps_the_last_hundred,
            completion_records_each_outcome,
            completion_is_fenced,
            completion_batch_fences_each_attempt,
            cancel_requested_turns_retry_into_cancel,
            admin_verbs_follow_river,
            list_filters_and_pages,
            list_filters_by_ids_priorities_tags_and_metadata,
            delete_many_spares_running_jobs_in_list_order,
            update_metadata_merges_top_level_keys,
            queue_list_pages_by_name,
            queue_update_metadata_notifies_control,
            queue_set_metadata_key_keeps_the_other_keys,
            schedule_moves_due_jobs,
            schedule_discards_unique_conflicts,
            return_orphans_spares_held_jobs,
            queues_pause_and_resume,
            start_by_id_runs_one_job,
            notifications_reach_listeners,
            counts_and_lag_follow_the_jobs,
            finalized_histogram_buckets_by_state,
            act_many_follows_the_single_job_verbs,
            list_filters_by_id_range_times_and_args,
            fleet_tables_read_back,
            sequences_keep_one_job_live_per_key,
            own_connection_reaches_the_pools_database,
            dead_clients_rows_go_only_once_their_jobs_are_rescued,
        );
    };
    (@tests $fixture:ty; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::driver::$check::<$fixture>().await;
            }
        )*
    };
}
