//! `millrace health`: whether the database a fleet runs on is usable, for a readiness probe or
//! a check in a deploy script: reachable, migrated, and whether a River leader runs its
//! maintenance.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use millrace::{Client, Driver, HealthReport, Migrator, Schema};
use millrace_postgres::{ConnectError, PgDriver};
use serde::Serialize;

use crate::database::{ConnectionArgs, Database, sqlite_schema};
use crate::output::{chain, outln};

/// Options of health.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    #[command(flatten)]
    connection: Box<ConnectionArgs>,
    /// The schema that holds River's tables. Defaults to public; on SQLite only main.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Also require a River leader (some client running River's maintenance), as a check
    /// that a fleet is up rather than only its database.
    #[arg(long)]
    require_leader: bool,
    /// Print one JSON object instead of lines of text.
    #[arg(long)]
    json: bool,
}

/// What `millrace health` found.
#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    database_reachable: bool,
    database_round_trip_ms: Option<u64>,
    database_error: Option<String>,
    /// Migration versions not yet applied, as `line/version`; absent when it could not be
    /// read.
    pending_migrations: Option<Vec<String>>,
    river_leader: Option<String>,
}

impl HealthArgs {
    /// Runs health: exit status 0 when healthy, 1 when not (the database unreachable
    /// included), 2 for bad input.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let report = match self.connection.database("health", None)? {
            Database::Postgres(options) => {
                let schema = match self.schema.as_deref() {
                    None => Schema::default(),
                    Some(name) => Schema::new(name).context("--schema")?,
                };
                // The library's first-connection check: a pool reports a refused connection
                // only as "pool timed out". Bad settings stay errors (status 2); a server that
                // does not answer is a finding.
                let timeout = options.get_connect_timeout().min(CONNECT_TIMEOUT);
                let options = options.connect_timeout(timeout);
                match options.check().await {
                    Ok(opts) => {
                        let pool = options
                            .pool_options()
                            .max_connections(1)
                            .connect_lazy_with(opts);
                        check(PgDriver::new(pool).with_schema(schema), self.require_leader).await
                    }
                    Err(err @ (ConnectError::Connect { .. } | ConnectError::Timeout { .. })) => {
                        unreachable(chain(&err))
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Database::Sqlite(url) => {
                let schema = sqlite_schema(self.schema.as_deref())?;
                let driver = url.open(false).await?.with_schema(schema);
                check(driver, self.require_leader).await
            }
        };
        if self.json {
            outln!("{}", serde_json::to_string(&report)?)?;
        } else {
            print_text(&report)?;
        }
        Ok(if report.healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// How long the check waits for the database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn unreachable(error: String) -> Report {
    Report {
        healthy: false,
        database_reachable: false,
        database_round_trip_ms: None,
        database_error: Some(error),
        pending_migrations: None,
        river_leader: None,
    }
}

async fn check<D: Driver>(driver: D, require_leader: bool) -> Report {
    let unhealthy = |reachable: bool, error: String| Report {
        healthy: false,
        database_reachable: reachable,
        database_round_trip_ms: None,
        database_error: Some(error),
        pending_migrations: None,
        river_leader: None,
    };
    // The migration table first: it answers whether the server is there at all and whether
    // River's tables are, which the leader query below needs.
    let pending_migrations = match Migrator::new(driver.clone()).validate(None).await {
        Ok(report) => report
            .pending
            .iter()
            .map(|m| format!("{}/{}", m.line, m.version))
            .collect::<Vec<_>>(),
        Err(err) => {
            let reachable = !matches!(&err, millrace::Error::Driver(e) if e.is_connection());
            return unhealthy(reachable, chain(&err));
        }
    };
    if !pending_migrations.is_empty() {
        return Report {
            pending_migrations: Some(pending_migrations),
            ..unhealthy(true, "River's schema is not migrated".to_owned())
        };
    }
    let client = match Client::builder(driver).build() {
        Ok(client) => client,
        Err(err) => return unhealthy(false, chain(&err)),
    };
    let HealthReport {
        database_reachable,
        database_round_trip_ms,
        database_error,
        river_leader_id,
        ..
    } = client.health().await;
    Report {
        healthy: database_reachable && (!require_leader || river_leader_id.is_some()),
        database_reachable,
        database_round_trip_ms,
        database_error,
        pending_migrations: Some(pending_migrations),
        river_leader: river_leader_id,
    }
}

fn print_text(report: &Report) -> anyhow::Result<()> {
    match (report.database_reachable, &report.database_error) {
        (false, Some(err)) => outln!("database:   unreachable: {err}")?,
        (false, None) => outln!("database:   unreachable")?,
        (true, Some(err)) => outln!("database:   reachable, but {err}")?,
        (true, None) => match report.database_round_trip_ms {
            Some(ms) => outln!("database:   reachable ({ms} ms)")?,
            None => outln!("database:   reachable")?,
        },
    }
    match &report.pending_migrations {
        Some(pending) if pending.is_empty() => outln!("migrations: up to date")?,
        Some(pending) => outln!(
            "migrations: pending {} (run `millrace migrate-up`)",
            pending.join(", ")
        )?,
        None => outln!("migrations: unknown")?,
    }
    match &report.river_leader {
        Some(leader) => outln!("leader:     {leader}")?,
        None => outln!("leader:     none")?,
    }
    outln!(
        "{}",
        if report.healthy {
            "healthy"
        } else {
            "unhealthy"
        }
    )?;
    Ok(())
}
