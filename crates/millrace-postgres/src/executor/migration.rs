//! The executor's migration verbs: River's `river_migration` table in its current and
//! legacy shapes, the migration lock and raw scripts. The `Executor` impl in
//! `executor.rs` delegates to these.

use millrace_driver::{MigrationRow, Result};
use sqlx::{AssertSqlSafe, Row};

use super::{PgExecutor, query};
use crate::db_error;

impl PgExecutor<'_> {
    pub(super) async fn migrations_exec_script(&mut self, sql: &str) -> Result<()> {
        // A raw (simple-protocol) query runs several statements at once.
        let sql = AssertSqlSafe(sql.to_owned());
        match &mut self.conn {
            Some(conn) => sqlx::raw_sql(sql).execute(&mut **conn).await,
            None => sqlx::raw_sql(sql).execute(self.driver.pool()).await,
        }
        .map(|_| ())
        .map_err(db_error)
    }

    pub(super) async fn migrations_table_exists(&mut self, table: &str) -> Result<bool> {
        // pg_class is read with the statement's snapshot. `to_regclass` goes through the
        // backend's catalog cache, which can still hold "no such table" after another
        // migrator committed it while this one waited on the migration lock.
        let q = sqlx::query(AssertSqlSafe(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2)",
        ))
        .bind(self.driver.queries().schema.name().to_owned())
        .bind(table.to_owned());
        let row = self.fetch_optional(q).await?;
        Ok(row.is_some_and(|r| r.get::<bool, _>(0)))
    }

    pub(super) async fn migrations_migration_get_all(
        &mut self,
        line: &str,
    ) -> Result<Vec<MigrationRow>> {
        if !self.migrations_table_exists("river_migration").await? {
            return Ok(Vec::new());
        }
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.get_all).bind(line.to_owned())
        } else if line == "main" {
            query(&self.driver.queries().migration.get_all_legacy)
        } else {
            return Ok(Vec::new());
        };
        self.fetch_all(q)
            .await?
            .iter()
            .map(|r| {
                Ok(MigrationRow {
                    line: r.try_get("line").map_err(db_error)?,
                    version: r.try_get("version").map_err(db_error)?,
                    created_at: r
                        .try_get::<jiff_sqlx::Timestamp, _>("created_at")
                        .map_err(db_error)?
                        .to_jiff(),
                })
            })
            .collect()
    }

    pub(super) async fn migrations_migration_lock(&mut self) -> Result<()> {
        // One lock per schema: the key is derived from the schema's name.
        let key = format!(
            "{}river_migration",
            self.driver.queries().schema.fill("/*schema*/")
        );
        let q = sqlx::query(AssertSqlSafe("SELECT pg_advisory_xact_lock(hashtext($1))")).bind(key);
        self.execute(q).await.map(|_| ())
    }

    pub(super) async fn migrations_migration_insert(
        &mut self,
        line: &str,
        version: i64,
    ) -> Result<()> {
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.insert)
                .bind(line.to_owned())
                .bind(version)
        } else {
            query(&self.driver.queries().migration.insert_legacy).bind(version)
        };
        self.execute(q).await.map(|_| ())
    }

    pub(super) async fn migrations_migration_delete(
        &mut self,
        line: &str,
        version: i64,
    ) -> Result<()> {
        if !self.migrations_table_exists("river_migration").await? {
            return Ok(());
        }
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.delete)
                .bind(line.to_owned())
                .bind(version)
        } else {
            query(&self.driver.queries().migration.delete_legacy).bind(version)
        };
        self.execute(q).await.map(|_| ())
    }
}
