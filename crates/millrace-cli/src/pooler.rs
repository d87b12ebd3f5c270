//! `--transaction-pooled` and `--direct-url`: reaching PostgreSQL through PgBouncer (or another
//! pooler) in transaction mode, shared by the commands that run a client.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use millrace_postgres::PgDriver;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Connections of the direct pool: one LISTEN connection and the leader's elections.
const DIRECT_POOL_SIZE: u32 = 2;

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PoolerArgs {
    /// PostgreSQL: --database-url goes through PgBouncer (or another pooler) in transaction
    /// mode. Statements are unnamed and each runs in a transaction of its own; without
    /// --direct-url the client polls instead of listening.
    #[arg(long)]
    transaction_pooled: bool,
    /// PostgreSQL: a URL straight to the server, not through the pooler, for LISTEN and
    /// leader election (two connections).
    #[arg(long, value_name = "URL", requires = "transaction_pooled")]
    direct_url: Option<String>,
}

impl PoolerArgs {
    /// `driver` in the mode the flags ask for, with its direct pool connected.
    ///
    /// # Errors
    ///
    /// When --direct-url does not parse or its first connection fails.
    pub(crate) async fn apply(&self, driver: PgDriver) -> anyhow::Result<PgDriver> {
        if !self.transaction_pooled {
            return Ok(driver);
        }
        let driver = driver.transaction_pooled();
        let Some(url) = &self.direct_url else {
            return Ok(driver);
        };
        let opts: PgConnectOptions = url.parse().context("invalid --direct-url")?;
        let direct = PgPoolOptions::new()
            .max_connections(DIRECT_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .context("could not connect to the database given by --direct-url")?;
        Ok(driver.direct(direct))
    }
}
