//! Rate-limited fetches on SQLite (issue 19): counted, fetched and logged in one write
//! transaction.

use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{FetchRate, JobGetAvailableParams, Result};
use millrace_types::{JobRead, job_read_id};
use sqlx::Row;

use super::{SqliteExecutor, fields_json, query, sort_fetched};
use crate::error::db_error;
use crate::row::job_read;
use crate::time::encode;

impl SqliteExecutor<'_> {
    /// The fetch of a queue with a rate limit (and maybe a concurrency limit too).
    pub(super) async fn job_get_available_rated(
        &mut self,
        params: &JobGetAvailableParams,
        rate: &FetchRate,
    ) -> Result<Vec<JobRead>> {
        let queries = &self.driver.queries().rate;
        let limit = params.limit.clone().unwrap_or_default();
        let period = rate.period_micros();
        let mut scope = self.scope().await?;
        // Read once the write transaction is held, so times in the log rise in the order
        // the fetches committed.
        let at = params.now.unwrap_or_else(Timestamp::now).as_microsecond();
        let start = at.saturating_sub(period);
        scope
            .execute(query(&queries.prune).bind(params.queue.clone()).bind(start))
            .await?;
        let q = query(&queries.fetch)
            .bind(params.queue.clone())
            .bind(params.now.map(encode))
            .bind(params.max)
            .bind(params.client_id.clone())
            .bind(limit.global)
            .bind(limit.local)
            .bind(limit.by_kind)
            .bind(fields_json(&limit.by_args))
            .bind(rate.limit)
            .bind(start)
            .bind(rate.by_kind)
            .bind(fields_json(&rate.by_args));
        let rows = scope.fetch_all(q).await?;
        let mut jobs = rows.iter().map(job_read).collect::<Result<Vec<_>>>()?;
        if !jobs.is_empty() {
            let ids: Vec<i64> = jobs.iter().map(|j| job_read_id(j).0).collect();
            let log = query(&queries.log)
                .bind(params.queue.clone())
                .bind(at)
                .bind(serde_json::to_string(&ids).expect("ids always encode"))
                .bind(rate.by_kind)
                .bind(fields_json(&rate.by_args));
            scope.execute(log).await?;
        }
        scope.finish().await?;
        sort_fetched(&mut jobs);
        Ok(jobs)
    }

    /// See [`Executor::job_rate_limit_wait`](millrace_driver::Executor::job_rate_limit_wait).
    pub(super) async fn rate_limit_wait(
        &mut self,
        queue: &str,
        rate: &FetchRate,
    ) -> Result<Option<Duration>> {
        let q = query(&self.driver.queries().rate.wait)
            .bind(queue.to_owned())
            .bind(rate.period_micros())
            .bind(i64::from(rate.limit))
            .bind(Timestamp::now().as_microsecond());
        let row = self.read_all(q).await?.into_iter().next();
        let micros: Option<i64> = match row {
            Some(row) => row.try_get(0).map_err(db_error)?,
            None => None,
        };
        Ok(micros.map(|m| Duration::from_micros(m.max(0).unsigned_abs())))
    }
}
