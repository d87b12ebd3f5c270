//! The executor's inserts: a batch as one JSON array unpacked by `json_each`, with or
//! without unique keys. The `Executor` impl in `executor.rs` delegates to these.

use std::collections::HashMap;

use millrace_driver::{DriverError, Executor, JobInsertParams, JobInsertResult, Result};
use millrace_types::JobRead;
use sqlx::Row;

use super::{SqliteExecutor, insert_payload, missing_row, query, sequence};
use crate::row::{job_read, job_row};

impl SqliteExecutor<'_> {
    pub(super) async fn insert_job_insert_many(
        &mut self,
        jobs: &[JobInsertParams],
    ) -> Result<Vec<JobInsertResult>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let driver = self.driver;
        let queries = driver.queries();
        let unique = jobs.iter().any(|j| j.unique_key.is_some());
        let sql = if unique {
            &queries.job_insert_many_unique
        } else {
            &queries.job_insert_many
        };
        let mut scope = self.scope().await?;
        // Sequence jobs behind unfinished work go in `pending`, decided in this write
        // transaction, which no other writer can interleave with.
        let sequenced;
        let jobs = match sequence::batch_keys(jobs) {
            Some(keys) => {
                let occupied = Self::sequence_occupied_in_scope(driver, &mut scope, &keys).await?;
                sequenced = millrace_driver::sequence_states(jobs, &occupied);
                &sequenced[..]
            }
            None => jobs,
        };
        let rows = scope
            .fetch_all(query(sql).bind(insert_payload(jobs)))
            .await?;
        let mut inserted = rows.iter().map(job_row).collect::<Result<Vec<_>>>()?;
        // Ids rise in input order within the statement; a skipped (duplicate) job has no row,
        // and only a job with a unique key can be skipped.
        inserted.sort_by_key(|r| r.id);
        let mut inserted = inserted.into_iter().peekable();
        let mut results: Vec<Option<JobInsertResult>> = Vec::with_capacity(jobs.len());
        let mut skipped_keys: Vec<String> = Vec::new();
        for job in jobs {
            let own_row = inserted
                .peek()
                .is_some_and(|row| job.unique_key.is_none() || row.unique_key == job.unique_key);
            if own_row {
                results.push(inserted.next().map(|job| JobInsertResult {
                    job,
                    unique_skipped_as_duplicate: false,
                }));
            } else if let Some(key) = &job.unique_key {
                skipped_keys.push(hex::encode(key));
                results.push(None);
            } else {
                return Err(missing_row("job insert"));
            }
        }
        if !skipped_keys.is_empty() {
            let keys = serde_json::to_string(&skipped_keys).expect("strings always encode");
            let live = scope
                .fetch_all(query(&queries.job_get_live_by_keys).bind(keys))
                .await?;
            // A live row that does not decode still names its key: the duplicate is reported
            // from the insert's own options rather than failing the batch.
            let mut by_key: HashMap<Vec<u8>, JobRead> = HashMap::new();
            for row in &live {
                let key: Option<Vec<u8>> =
                    row.try_get("unique_key")
                        .map_err(|err| DriverError::Decode {
                            column: "unique_key",
                            message: err.to_string(),
                        })?;
                if let Some(key) = key {
                    by_key.insert(key, job_read(row)?);
                }
            }
            for (result, job) in results.iter_mut().zip(jobs) {
                if result.is_none() {
                    let key = job
                        .unique_key
                        .as_ref()
                        .expect("only unique jobs are skipped");
                    let live = match by_key.get(key) {
                        Some(Ok(live)) => live.clone(),
                        Some(Err(live)) => {
                            tracing::warn!(job_id = %live.id, error = %live.error, "an insert's unique duplicate could not be decoded; reporting it from the insert's own options");
                            job.stand_in_for(live)
                        }
                        None => return Err(missing_row("live unique job lookup")),
                    };
                    *result = Some(JobInsertResult {
                        job: live,
                        unique_skipped_as_duplicate: true,
                    });
                }
            }
        }
        scope.finish().await?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("every input has a result"))
            .collect())
    }

    pub(super) async fn insert_job_insert_fast(&mut self, jobs: &[JobInsertParams]) -> Result<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        // The fast statement cannot read which sequences are busy; a batch with sequence jobs
        // takes the checked path.
        if sequence::batch_keys(jobs).is_some() {
            return Ok(self.job_insert_many(jobs).await?.len() as u64);
        }
        let q = query(&self.driver.queries().job_insert_fast).bind(insert_payload(jobs));
        let count = self.write(q).await?;
        Ok(count)
    }
}
