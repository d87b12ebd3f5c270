//! The executor's inserts: a batch through one statement of parallel arrays (with or without
//! unique keys), or through COPY. The `Executor` impl in `executor.rs` delegates to these.

use jiff::Timestamp;
use millrace_driver::{
    DriverError, Executor, JobInsertParams, JobInsertResult, JobListParams, Result,
};
use millrace_types::{JobId, JobRow, job_read_id};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgConnection, Row};

use super::{PgExecutor, query, sequence};
use crate::copy::CopyLayout;
use crate::db_error;
use crate::row::job_read;

impl PgExecutor<'_> {
    pub(super) async fn insert_job_insert_many(
        &mut self,
        jobs: &[JobInsertParams],
    ) -> Result<Vec<JobInsertResult>> {
        match sequence::batch_keys(jobs) {
            Some(keys) => self.sequence_insert(jobs, keys).await,
            None => self.insert_rows(jobs).await,
        }
    }

    pub(super) async fn insert_job_insert_fast(&mut self, jobs: &[JobInsertParams]) -> Result<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        // COPY cannot read which sequences are busy between its rows; a batch with sequence
        // jobs takes the insert statement's path instead.
        if let Some(keys) = sequence::batch_keys(jobs) {
            return Ok(self.sequence_insert(jobs, keys).await?.len() as u64);
        }
        let layout = CopyLayout::for_jobs(jobs);
        let statement = format!(
            "COPY {} ({}) FROM STDIN",
            self.driver.queries().job_table,
            layout.columns().join(", ")
        );
        let encode = |data: &mut String, job: &JobInsertParams| layout.encode(data, job);
        let result = match &mut self.conn {
            Some(conn) => {
                let mut copy = conn.copy_in_raw(&statement).await.map_err(db_error)?;
                copy_rows(&mut copy, jobs, encode).await?;
                copy.finish().await
            }
            None => {
                let mut copy = self
                    .driver
                    .pool()
                    .copy_in_raw(&statement)
                    .await
                    .map_err(db_error)?;
                copy_rows(&mut copy, jobs, encode).await?;
                copy.finish().await
            }
        };
        result.map_err(db_error)
    }

    /// Inserts the batch as given, states included: the body of `job_insert_many`.
    pub(super) async fn insert_rows(
        &mut self,
        jobs: &[JobInsertParams],
    ) -> Result<Vec<JobInsertResult>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let queries = self.driver.queries();
        let unique = jobs.iter().any(|j| j.unique_key.is_some());
        let sql = if unique {
            &queries.job_insert_many_unique
        } else {
            &queries.job_insert_many
        };
        let q = query(sql)
            .bind(jobs.iter().map(|j| j.args.as_str()).collect::<Vec<_>>())
            .bind(times(jobs.iter().map(|j| j.created_at)))
            .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.metadata.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
            .bind(times(jobs.iter().map(|j| j.scheduled_at)))
            .bind(jobs.iter().map(|j| j.state.as_str()).collect::<Vec<_>>())
            .bind(jobs.iter().map(|j| j.tags.join(",")).collect::<Vec<_>>())
            .bind(
                jobs.iter()
                    .map(|j| j.unique_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                jobs.iter()
                    .map(|j| j.unique_states.map(|s| i32::from(s.bits())))
                    .collect::<Vec<_>>(),
            );
        let rows = self.fetch_all(q).await?;
        if unique {
            // One row per job, in the order of the params.
            return rows
                .iter()
                .enumerate()
                .map(|(index, row)| {
                    let duplicate = row
                        .try_get("unique_skipped_as_duplicate")
                        .map_err(db_error)?;
                    let job = match (job_read(row)?, jobs.get(index)) {
                        (Ok(job), _) => job,
                        // The statement has committed: failing now would have a retry insert
                        // the batch's other jobs twice.
                        (Err(live), Some(params)) if duplicate && rows.len() == jobs.len() => {
                            tracing::warn!(job_id = %live.id, error = %live.error, "an insert's unique duplicate could not be decoded; reporting it from the insert's own options");
                            params.stand_in_for(&live)
                        }
                        (Err(live), _) => return Err(DriverError::UndecodableJob(Box::new(live))),
                    };
                    Ok(JobInsertResult {
                        job,
                        unique_skipped_as_duplicate: duplicate,
                    })
                })
                .collect();
        }
        // Rows come back in the order of the params (the conformance suite checks it).
        if rows.len() != jobs.len() {
            return Err(DriverError::Decode {
                column: "id",
                message: format!(
                    "inserted {} jobs but {} rows came back",
                    jobs.len(),
                    rows.len()
                ),
            });
        }
        let mut results = Vec::with_capacity(jobs.len());
        // Jobs whose JSON PostgreSQL writes back differently from how it was sent.
        let mut reread = Vec::new();
        for (index, (job, row)) in jobs.iter().zip(&rows).enumerate() {
            let id = JobId(row.try_get(0).map_err(db_error)?);
            let created_at = row
                .try_get::<jiff_sqlx::Timestamp, _>(1)
                .map_err(db_error)?;
            let scheduled_at = row
                .try_get::<jiff_sqlx::Timestamp, _>(2)
                .map_err(db_error)?;
            let built = inserted_row(job, id, created_at.to_jiff(), scheduled_at.to_jiff());
            if built.is_none() {
                reread.push((index, id));
            }
            results.push(built);
        }
        if !reread.is_empty() {
            let stored = self
                .job_list(&JobListParams {
                    ids: reread.iter().map(|(_, id)| *id).collect(),
                    limit: reread.len() as i64,
                    ..Default::default()
                })
                .await?;
            for (index, id) in reread {
                let job = match stored.iter().find(|j| job_read_id(j) == id).cloned() {
                    Some(Ok(job)) => job,
                    Some(Err(undecodable)) => {
                        return Err(DriverError::UndecodableJob(Box::new(undecodable)));
                    }
                    None => {
                        return Err(DriverError::Decode {
                            column: "id",
                            message: format!("inserted job {id} is gone"),
                        });
                    }
                };
                results[index] = Some(job);
            }
        }
        Ok(results
            .into_iter()
            .map(|job| JobInsertResult {
                job: job.expect("every row built or read back"),
                unique_skipped_as_duplicate: false,
            })
            .collect())
    }
}

fn times(values: impl Iterator<Item = Option<Timestamp>>) -> Vec<Option<jiff_sqlx::Timestamp>> {
    values.map(|t| t.map(jiff_sqlx::Timestamp::from)).collect()
}

/// The row a fresh insert of `job` stored, given the values PostgreSQL chose; `None` when its
/// JSON may not read back as PostgreSQL writes it.
fn inserted_row(
    job: &JobInsertParams,
    id: JobId,
    created_at: Timestamp,
    scheduled_at: Timestamp,
) -> Option<JobRow> {
    if !json_reads_back_as_sent(&job.args) || !json_reads_back_as_sent(&job.metadata) {
        return None;
    }
    Some(JobRow {
        id,
        args: serde_json::from_str(&job.args).ok()?,
        attempt: 0,
        attempted_at: None,
        attempted_by: Vec::new(),
        created_at,
        errors: Vec::new(),
        finalized_at: None,
        kind: job.kind.clone(),
        max_attempts: job.max_attempts,
        metadata: serde_json::from_str(&job.metadata).ok()?,
        priority: job.priority,
        queue: job.queue.clone(),
        scheduled_at,
        state: job.state,
        tags: job.tags.clone(),
        unique_key: job.unique_key.clone(),
        unique_states: job.unique_states,
    })
}

/// Whether `json`, stored as jsonb and written back by PostgreSQL, reads as the same
/// `serde_json::Value` as `json` itself. jsonb rewrites two kinds of numbers: exponents are
/// expanded (`1e3` comes back `1000`, an integer where serde_json reads a float), and a
/// negative zero (`-0`, `-0.0`) comes back without its sign. Everything else (key order,
/// duplicate keys, whitespace, escapes) reads the same.
fn json_reads_back_as_sent(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = &bytes[start..i];
                let negative_zero = number.first() == Some(&b'-')
                    && number[1..].iter().all(|b| matches!(b, b'0' | b'.'));
                if negative_zero || number.iter().any(|b| matches!(b, b'e' | b'E')) {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// How many bytes of COPY data are encoded before they are sent.
const COPY_CHUNK: usize = 256 * 1024;

/// Encodes `jobs` with `encode` and sends them in chunks of about [`COPY_CHUNK`] bytes.
async fn copy_rows<C>(
    copy: &mut sqlx::postgres::PgCopyIn<C>,
    jobs: &[JobInsertParams],
    encode: impl Fn(&mut String, &JobInsertParams),
) -> Result<()>
where
    C: std::ops::DerefMut<Target = PgConnection>,
{
    let mut data = String::with_capacity(COPY_CHUNK + 4096);
    for job in jobs {
        encode(&mut data, job);
        if data.len() >= COPY_CHUNK {
            copy.send(data.as_bytes()).await.map_err(db_error)?;
            data.clear();
        }
    }
    if !data.is_empty() {
        copy.send(data.as_bytes()).await.map_err(db_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::json_reads_back_as_sent;

    #[test]
    fn numbers_that_jsonb_rewrites_are_found() {
        for rewritten in [
            r#"{"a":1e3}"#,
            r#"[2E-2]"#,
            r#"{"z":-0}"#,
            r#"{"s":"x","n":[1,-0]}"#,
        ] {
            assert!(!json_reads_back_as_sent(rewritten), "{rewritten}");
        }
        for same in [
            r#"{}"#,
            r#"{"n":-12,"x":0.25,"big":123456789012345678901234567890}"#,
            r#"{"date":"2024-01-05","hex":"3e4f","e":"1e3","esc":"\"1e3"}"#,
            r#"{"g":-0.5,"h":10,"i":-10,"j":0.0}"#,
        ] {
            assert!(json_reads_back_as_sent(same), "{same}");
        }
    }
}
