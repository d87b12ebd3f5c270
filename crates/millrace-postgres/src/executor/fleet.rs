//! The executor's fleet verbs: River's and Millrace's leader tables, client heartbeat rows,
//! durable periodic schedules and persistent instances. The `Executor` impl in
//! `executor.rs` delegates to these.

use std::time::Duration;

use jiff::Timestamp;
use millrace_driver::{
    LeaderParams, LeaderRow, LeaderTable, PERSISTENT_KIND_PREFIX, PersistentClaimParams,
    PersistentReleaseParams, Result, Topic,
};
use millrace_types::{JobId, JobRow};
use sqlx::Row;

use super::{PgExecutor, query};
use crate::db_error;
use crate::row::{job_row, leader_row};

impl PgExecutor<'_> {
    pub(super) async fn fleet_leader_attempt_elect(
        &mut self,
        params: &LeaderParams,
    ) -> Result<Option<LeaderRow>> {
        let queries = self.driver.queries().leader(params.table);
        let mut exec = self.on_direct();
        exec.execute(query(&queries.delete_expired)).await?;
        let q = query(&queries.elect)
            .bind(params.leader_id.as_str())
            .bind(params.ttl.as_secs_f64());
        exec.fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    pub(super) async fn fleet_leader_attempt_reelect(
        &mut self,
        params: &LeaderParams,
        elected_at: Timestamp,
    ) -> Result<Option<LeaderRow>> {
        let queries = self.driver.queries().leader(params.table);
        let q = query(&queries.reelect)
            .bind(params.leader_id.as_str())
            .bind(params.ttl.as_secs_f64())
            .bind(jiff_sqlx::Timestamp::from(elected_at));
        self.on_direct()
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    pub(super) async fn fleet_leader_resign(
        &mut self,
        table: LeaderTable,
        leader_id: &str,
    ) -> Result<bool> {
        let queries = self.driver.queries();
        let mut q = query(&queries.leader(table).resign).bind(leader_id.to_owned());
        if table == LeaderTable::River {
            q = q.bind(queries.schema.channel(Topic::Leadership.as_str()));
        }
        let row = self.on_direct().fetch_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>("n") > 0))
    }

    pub(super) async fn fleet_leader_get(
        &mut self,
        table: LeaderTable,
    ) -> Result<Option<LeaderRow>> {
        let q = query(&self.driver.queries().leader(table).get);
        self.on_direct()
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()
    }

    pub(super) async fn fleet_client_heartbeat(
        &mut self,
        client_id: &str,
        lease: Duration,
    ) -> Result<()> {
        let q = query(&self.driver.queries().client.heartbeat)
            .bind(client_id.to_owned())
            .bind(lease.as_secs_f64());
        self.execute(q).await.map(|_| ())
    }

    pub(super) async fn fleet_client_declare_queues(
        &mut self,
        client_id: &str,
        queues: &str,
    ) -> Result<bool> {
        let q = query(&self.driver.queries().client.declare_queues)
            .bind(client_id.to_owned())
            .bind(queues.to_owned());
        Ok(self.execute(q).await? == 1)
    }

    pub(super) async fn fleet_client_get_expired(&mut self, max: i32) -> Result<Vec<String>> {
        let q = query(&self.driver.queries().client.get_expired).bind(max);
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("id").map_err(db_error))
            .collect()
    }

    pub(super) async fn fleet_client_delete(&mut self, client_ids: &[String]) -> Result<u64> {
        let q = query(&self.driver.queries().client.delete).bind(client_ids.to_vec());
        self.execute(q).await
    }

    pub(super) async fn fleet_client_delete_expired(
        &mut self,
        client_ids: &[String],
    ) -> Result<u64> {
        let q = query(&self.driver.queries().client.delete_expired)
            .bind(client_ids.to_vec())
            .bind(PERSISTENT_KIND_PREFIX);
        self.execute(q).await
    }

    pub(super) async fn fleet_periodic_job_get(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<(String, Timestamp)>> {
        let q = query(&self.driver.queries().periodic.get).bind(ids.to_vec());
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(db_error)?,
                    r.try_get::<jiff_sqlx::Timestamp, _>("next_run_at")
                        .map_err(db_error)?
                        .to_jiff(),
                ))
            })
            .collect()
    }

    pub(super) async fn fleet_periodic_job_set_next(
        &mut self,
        id: &str,
        expected: Option<Timestamp>,
        next_run_at: Timestamp,
    ) -> Result<bool> {
        let queries = self.driver.queries();
        let q = match expected {
            None => query(&queries.periodic.insert)
                .bind(id.to_owned())
                .bind(jiff_sqlx::Timestamp::from(next_run_at)),
            Some(expected) => query(&queries.periodic.update)
                .bind(id.to_owned())
                .bind(jiff_sqlx::Timestamp::from(expected))
                .bind(jiff_sqlx::Timestamp::from(next_run_at)),
        };
        Ok(self.execute(q).await? == 1)
    }

    pub(super) async fn fleet_persistent_claim(
        &mut self,
        params: &PersistentClaimParams,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().persistent.claim)
            .bind(params.kind.as_str())
            .bind(params.queue.as_str())
            .bind(params.client_id.as_str())
            .bind(params.lease.as_secs_f64());
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    pub(super) async fn fleet_persistent_renew(&mut self, id: JobId, fence: i64) -> Result<bool> {
        let q = query(&self.driver.queries().persistent.renew)
            .bind(id.0)
            .bind(fence);
        Ok(self.execute(q).await? == 1)
    }

    pub(super) async fn fleet_persistent_merge_metadata(
        &mut self,
        id: JobId,
        fence: i64,
        metadata: &str,
    ) -> Result<bool> {
        let q = query(&self.driver.queries().persistent.merge_metadata)
            .bind(id.0)
            .bind(fence)
            .bind(metadata.to_owned());
        Ok(self.execute(q).await? == 1)
    }

    pub(super) async fn fleet_persistent_release(
        &mut self,
        params: &PersistentReleaseParams,
    ) -> Result<bool> {
        let error = params
            .error
            .as_ref()
            .map(|e| serde_json::to_string(e).expect("an AttemptError always encodes"));
        let q = query(&self.driver.queries().persistent.release)
            .bind(params.id.0)
            .bind(params.fence)
            .bind(jiff_sqlx::Timestamp::from(params.available_at))
            .bind(error)
            .bind(i64::from(params.keep_errors.max(1)));
        Ok(self.execute(q).await? == 1)
    }
}
