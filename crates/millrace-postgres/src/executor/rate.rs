//! Rate-limited fetches on PostgreSQL (issue 19): under the queue's limit lock, as the
//! concurrency limits' fetch, with the fetches let through logged for the window's count.

use std::time::Duration;

use millrace_driver::{FetchRate, JobGetAvailableParams, Result};
use millrace_types::JobRead;
use sqlx::Row;

use super::PgExecutor;
use super::query;
use super::work::Pass;
use crate::db_error;

impl PgExecutor<'_> {
    /// The fetch of a queue with a rate limit (and maybe a concurrency limit too), in a
    /// transaction of its own (or the caller's): the queue's limit lock, shared with
    /// concurrency-limited fetches, then one statement that counts, fetches and logs.
    pub(super) async fn job_get_available_rated(
        &mut self,
        params: &JobGetAvailableParams,
        rate: &FetchRate,
    ) -> Result<Vec<JobRead>> {
        let queries = self.driver.queries();
        let limit = params.limit.clone().unwrap_or_default();
        let partitioned = rate.is_partitioned() || limit.is_partitioned();
        let period = rate.period_micros();
        let fetch = |max: i32, pass: Pass| {
            let window = match pass {
                Pass::Window(window) => Some(window),
                Pass::Loose | Pass::All => None,
            };
            let sql = if partitioned {
                &queries.rate.fetch_partitioned
            } else {
                &queries.rate.fetch_capped
            };
            let fetch = query(sql)
                .bind(params.queue.as_str())
                .bind(params.now.map(jiff_sqlx::Timestamp::from))
                .bind(max)
                .bind(params.client_id.as_str())
                .bind(limit.global)
                .bind(limit.local)
                .bind(rate.limit)
                .bind(period);
            if partitioned {
                fetch
                    .bind(limit.by_kind)
                    .bind(limit.by_args.clone())
                    .bind(window)
                    .bind(rate.by_kind)
                    .bind(rate.by_args.clone())
            } else {
                fetch
            }
        };
        // As the concurrency limits' fetch: rank the head of the queue first, and the whole
        // backlog only when full partitions at the head leave the batch short.
        let passes: &[Pass] = if partitioned {
            &[Pass::Window(0), Pass::All]
        } else {
            &[Pass::Window(0)]
        };
        self.run_limited(params, passes, fetch).await
    }

    /// See [`Executor::job_rate_limit_wait`](millrace_driver::Executor::job_rate_limit_wait).
    pub(super) async fn rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &FetchRate,
    ) -> Result<Option<Duration>> {
        let q = query(&self.driver.queries().rate.wait)
            .bind(queue)
            .bind(rate.period_micros())
            .bind(i64::from(rate.limit));
        let row = self.fetch_optional(q).await?;
        let micros: Option<i64> = match row {
            Some(row) => row.try_get(0).map_err(db_error)?,
            None => None,
        };
        Ok(micros.map(|m| Duration::from_micros(m.max(0).unsigned_abs())))
    }
}
