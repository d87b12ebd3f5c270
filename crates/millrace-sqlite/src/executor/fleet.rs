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

use super::{SqliteExecutor, modifier, query, strings};
use crate::error::db_error;
use crate::row::{job_row, leader_row, time};
use crate::time::encode;

impl SqliteExecutor<'_> {
    pub(super) async fn fleet_leader_attempt_elect(
        &mut self,
        params: &LeaderParams,
    ) -> Result<Option<LeaderRow>> {
        let queries = self.driver.queries().leader(params.table);
        let mut scope = self.scope().await?;
        scope.execute(query(&queries.delete_expired)).await?;
        let q = query(&queries.elect)
            .bind(params.leader_id.clone())
            .bind(modifier(params.ttl));
        let leader = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()?;
        scope.finish().await?;
        Ok(leader)
    }

    pub(super) async fn fleet_leader_attempt_reelect(
        &mut self,
        params: &LeaderParams,
        elected_at: Timestamp,
    ) -> Result<Option<LeaderRow>> {
        let q = query(&self.driver.queries().leader(params.table).reelect)
            .bind(params.leader_id.clone())
            .bind(modifier(params.ttl))
            .bind(encode(elected_at));
        let mut scope = self.scope().await?;
        let leader = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(leader_row)
            .transpose()?;
        scope.finish().await?;
        Ok(leader)
    }

    pub(super) async fn fleet_leader_resign(
        &mut self,
        table: LeaderTable,
        leader_id: &str,
    ) -> Result<bool> {
        let driver = self.driver;
        let own = self.conn.is_none();
        let q = query(&driver.queries().leader(table).resign).bind(leader_id.to_owned());
        let mut scope = self.scope().await?;
        let resigned = scope.fetch_optional(q).await?.is_some();
        if resigned && table == LeaderTable::River {
            // River's clients elect again within moments of this, not at their next attempt.
            let payload =
                serde_json::json!({ "action": "resigned", "leader_id": leader_id }).to_string();
            Self::notify_in_scope(driver, &mut scope, &[(Topic::Leadership, payload)], own).await?;
        }
        scope.finish().await?;
        Ok(resigned)
    }

    pub(super) async fn fleet_leader_get(
        &mut self,
        table: LeaderTable,
    ) -> Result<Option<LeaderRow>> {
        let q = query(&self.driver.queries().leader(table).get);
        self.read_optional(q)
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
            .bind(modifier(lease));
        let mut scope = self.scope().await?;
        scope.execute(q).await?;
        scope.finish().await
    }

    pub(super) async fn fleet_client_declare_queues(
        &mut self,
        client_id: &str,
        queues: &str,
    ) -> Result<bool> {
        let q = query(&self.driver.queries().client.declare_queues)
            .bind(client_id.to_owned())
            .bind(queues.to_owned());
        Ok(self.write(q).await? == 1)
    }

    pub(super) async fn fleet_client_get_expired(&mut self, max: i32) -> Result<Vec<String>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().client.get_expired).bind(max);
        self.read_all(q)
            .await?
            .iter()
            .map(|r| r.try_get("id").map_err(db_error))
            .collect()
    }

    pub(super) async fn fleet_client_delete(&mut self, client_ids: &[String]) -> Result<u64> {
        if client_ids.is_empty() {
            return Ok(0);
        }
        let q = query(&self.driver.queries().client.delete).bind(strings(client_ids));
        let deleted = self.write(q).await?;
        Ok(deleted)
    }

    pub(super) async fn fleet_client_delete_expired(
        &mut self,
        client_ids: &[String],
    ) -> Result<u64> {
        if client_ids.is_empty() {
            return Ok(0);
        }
        let q = query(&self.driver.queries().client.delete_expired)
            .bind(strings(client_ids))
            .bind(PERSISTENT_KIND_PREFIX);
        self.write(q).await
    }

    pub(super) async fn fleet_periodic_job_get(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<(String, Timestamp)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let q = query(&self.driver.queries().periodic.get).bind(strings(ids));
        self.read_all(q)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id").map_err(db_error)?, time(r, "next_run_at")?)))
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
                .bind(encode(next_run_at)),
            Some(expected) => query(&queries.periodic.update)
                .bind(id.to_owned())
                .bind(encode(expected))
                .bind(encode(next_run_at)),
        };
        let stored = self.write(q).await? == 1;
        Ok(stored)
    }

    pub(super) async fn fleet_persistent_claim(
        &mut self,
        params: &PersistentClaimParams,
    ) -> Result<Option<JobRow>> {
        let q = query(&self.driver.queries().persistent.claim)
            .bind(params.kind.clone())
            .bind(params.queue.clone())
            .bind(params.client_id.clone())
            .bind(format!("-{:.3} seconds", params.lease.as_secs_f64()));
        let mut scope = self.scope().await?;
        let job = scope
            .fetch_optional(q)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()?;
        scope.finish().await?;
        Ok(job)
    }

    pub(super) async fn fleet_persistent_renew(&mut self, id: JobId, fence: i64) -> Result<bool> {
        let q = query(&self.driver.queries().persistent.renew)
            .bind(id.0)
            .bind(fence);
        let renewed = self.write(q).await? == 1;
        Ok(renewed)
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
        let merged = self.write(q).await? == 1;
        Ok(merged)
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
            .bind(encode(params.available_at))
            .bind(error)
            .bind(i64::from(params.keep_errors.max(1)));
        let released = self.write(q).await? == 1;
        Ok(released)
    }
}
