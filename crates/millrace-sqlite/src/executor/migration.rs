//! The executor's migration verbs: River's `river_migration` table in its current and
//! legacy shapes, the migration lock and raw scripts. The `Executor` impl in
//! `executor.rs` delegates to these.

use millrace_driver::{Executor, MigrationRow, Result};
use sqlx::{AssertSqlSafe, Row};

use super::{SqliteExecutor, query};
use crate::error::db_error;
use crate::row::time;

impl SqliteExecutor<'_> {
    pub(super) async fn migrations_exec_script(&mut self, sql: &str) -> Result<()> {
        // A raw query runs every statement of the script.
        let sql = AssertSqlSafe(sql.to_owned());
        match &mut self.conn {
            Some(conn) => sqlx::raw_sql(sql).execute(&mut **conn).await,
            None => sqlx::raw_sql(sql).execute(self.driver.pool()).await,
        }
        .map(|_| ())
        .map_err(db_error)
    }

    pub(super) async fn migrations_table_exists(&mut self, table: &str) -> Result<bool> {
        let q = query(&self.driver.queries().table_exists).bind(table.to_owned());
        self.read_bool(q).await
    }

    pub(super) async fn migrations_migration_get_all(
        &mut self,
        line: &str,
    ) -> Result<Vec<MigrationRow>> {
        if !self.table_exists("river_migration").await? {
            return Ok(Vec::new());
        }
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.get_all).bind(line.to_owned())
        } else if line == "main" {
            query(&self.driver.queries().migration.get_all_legacy)
        } else {
            return Ok(Vec::new());
        };
        self.read_all(q)
            .await?
            .iter()
            .map(|r| {
                Ok(MigrationRow {
                    line: r.try_get("line").map_err(db_error)?,
                    version: r.try_get("version").map_err(db_error)?,
                    created_at: time(r, "created_at")?,
                })
            })
            .collect()
    }

    pub(super) async fn migrations_migration_lock(&mut self) -> Result<()> {
        // Migrations run in `BEGIN IMMEDIATE` transactions, which already hold SQLite's one
        // write lock: migrators take turns without anything more.
        Ok(())
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
        let mut scope = self.scope().await?;
        scope.execute(q).await?;
        scope.finish().await
    }

    pub(super) async fn migrations_migration_delete(
        &mut self,
        line: &str,
        version: i64,
    ) -> Result<()> {
        if !self.table_exists("river_migration").await? {
            return Ok(());
        }
        let q = if self.migration_has_line().await? {
            query(&self.driver.queries().migration.delete)
                .bind(line.to_owned())
                .bind(version)
        } else {
            query(&self.driver.queries().migration.delete_legacy).bind(version)
        };
        let mut scope = self.scope().await?;
        scope.execute(q).await?;
        scope.finish().await
    }
}
