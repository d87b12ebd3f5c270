//! What the operator commands (`jobs`, `queues`, `periodic`, `persistent`, `leader`,
//! `clients`) share: the connection and schema flags, an insert-only client on either engine,
//! the schema check, exit statuses, confirmation, and parsing of times and JSON.
//!
//! Every command goes through the library's `Client` (no SQL here), so PostgreSQL and SQLite
//! behave the same.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use jiff::{Timestamp, ToSpan as _};
use millrace::{Client, Driver, Schema};
use millrace_driver::Executor as _;
use millrace_postgres::PgDriver;
use millrace_sqlite::SqliteDriver;

use crate::database::{ConnectionArgs, Database, sqlite_schema};
use crate::output::errln;

/// Exit status 1: nothing was found, matched or changed.
pub(crate) const NOT_FOUND: u8 = 1;

/// The connection flags and `--schema`, taken by every operator command.
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    pub(crate) connection: Box<ConnectionArgs>,
    /// The schema that holds River's tables. Defaults to public; on SQLite only main.
    #[arg(long, value_name = "NAME", help_heading = "Connection")]
    pub(crate) schema: Option<String>,
}

/// An insert-only client on the database the flags name.
pub(crate) enum AdminClient {
    /// On PostgreSQL.
    Postgres(Client<PgDriver>),
    /// On a SQLite file.
    Sqlite(Client<SqliteDriver>),
}

/// Runs `$body` with `$client` bound to the [`AdminClient`]'s `Client<D>`, whichever the
/// engine: the commands are written once, generic over the driver.
macro_rules! with_client {
    ($admin:expr, |$client:ident| $body:expr) => {
        match $admin {
            $crate::admin::AdminClient::Postgres($client) => $body,
            $crate::admin::AdminClient::Sqlite($client) => $body,
        }
    };
}
pub(crate) use with_client;

/// Which tables a command reads beyond River's `river_job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// River's tables only.
    River,
    /// Millrace's own tables too (the `millrace` migration line).
    Millrace,
}

impl AdminArgs {
    /// Connects and checks that the schema holds the tables the command reads, so a database
    /// that was never migrated is one clear line (status 2) rather than a SQL error.
    /// `command` names the connections in pg_stat_activity (`millrace jobs`).
    ///
    /// # Errors
    ///
    /// Bad settings, a connection that fails, or a schema without the tables.
    pub(crate) async fn connect(&self, command: &str, needs: Needs) -> anyhow::Result<AdminClient> {
        match self.connection.database(command, None)? {
            Database::Postgres(options) => {
                let schema = match self.schema.as_deref() {
                    None => Schema::default(),
                    Some(name) => Schema::new(name).context("--schema")?,
                };
                // One plain connection first says at once why it failed, and where.
                let opts = options.check().await?;
                let pool = options
                    .pool_options()
                    .max_connections(2)
                    .connect_lazy_with(opts);
                let driver = PgDriver::new(pool).with_schema(schema);
                check_tables(&driver, needs).await?;
                Ok(AdminClient::Postgres(Client::builder(driver).build()?))
            }
            Database::Sqlite(url) => {
                let schema = sqlite_schema(self.schema.as_deref())?;
                let driver = url.open(false).await?.with_schema(schema);
                check_tables(&driver, needs).await?;
                Ok(AdminClient::Sqlite(Client::builder(driver).build()?))
            }
        }
    }
}

async fn check_tables<D: Driver>(driver: &D, needs: Needs) -> anyhow::Result<()> {
    let schema = driver.schema().name().to_owned();
    let mut exec = driver.executor();
    if !exec.table_exists("river_job").await? {
        bail!(
            "no River tables in schema {schema:?} (river_job is missing): check --schema, or run \
             `millrace migrate-up`"
        );
    }
    if needs == Needs::Millrace && !exec.table_exists("millrace_client").await? {
        bail!(
            "no Millrace tables in schema {schema:?} (millrace_client is missing): run \
             `millrace migrate-up --line millrace`"
        );
    }
    Ok(())
}

/// Prints why nothing was found (one line on stderr) and gives exit status 1.
pub(crate) fn not_found(message: impl std::fmt::Display) -> ExitCode {
    errln!("{message}");
    ExitCode::from(NOT_FOUND)
}

/// Asks on the terminal before a bulk action; without a terminal, refuses unless `yes`.
///
/// # Errors
///
/// When the operator says no, or there is no terminal to ask on and `yes` is not given.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question}: refusing without confirmation; pass --yes (stdin is not a terminal)");
    }
    eprint!("{question}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("could not read the answer")?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

/// Parses a JSON object given on the command line (`--args`, `--metadata`).
pub(crate) fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(other) => Err(format!(
            "must be a JSON object such as '{{\"key\": 1}}', not {}",
            json_kind(&other)
        )),
        Err(err) => Err(format!("not JSON: {err}")),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A moment in the past: an RFC 3339 time (`2026-01-02T03:04:05Z`), a date (`2026-01-02`,
/// midnight UTC), or a duration ago (`90s`, `15m`, `2h`, `3d`, `1h30m`).
pub(crate) fn parse_since(s: &str) -> Result<Timestamp, String> {
    parse_time(s, -1)
}

/// A moment: an RFC 3339 time, a date, or a duration from now (`30s`, `5m`, `2h`).
pub(crate) fn parse_at(s: &str) -> Result<Timestamp, String> {
    parse_time(s, 1)
}

fn parse_time(s: &str, sign: i64) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(date) = s.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|err| err.to_string());
    }
    match parse_duration(s) {
        Ok(d) => {
            let span = (d.as_millis() as i64).milliseconds();
            let span = if sign < 0 { span.negate() } else { span };
            Timestamp::now()
                .checked_add(span)
                .map_err(|err| err.to_string())
        }
        Err(_) => Err(format!(
            "expected an RFC 3339 time (2026-01-02T03:04:05Z), a date (2026-01-02) or a \
             duration (90s, 15m, 2h, 3d), not {s:?}"
        )),
    }
}

/// A duration such as `90s`, `15m`, `2h`, `3d` or `1h30m` (jiff's friendly format, days
/// counted as 24 hours).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|_| format!("expected a duration such as 90s, 15m, 2h or 3d, not {s:?}"))?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|err| err.to_string())?;
    Duration::try_from(signed).map_err(|_| format!("the duration {s:?} is negative"))
}

/// A duration as a person reads it: `42s`, `5m12s`, `3h4m`, `2d3h`.
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 if d.as_millis() < 1000 => format!("{}ms", d.as_millis()),
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// How long ago `t` was, by this machine's clock (zero for a time in the future).
pub(crate) fn ago(t: Timestamp) -> Duration {
    Duration::try_from(Timestamp::now().duration_since(t)).unwrap_or(Duration::ZERO)
}

/// Milliseconds, for JSON (`…_ms` fields).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_instants_dates_or_durations() {
        let t = parse_since("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(t.to_string(), "2026-01-02T03:04:05Z");
        let d = parse_since("2026-01-02").unwrap();
        assert_eq!(d.to_string(), "2026-01-02T00:00:00Z");
        let hour_ago = parse_since("1h").unwrap();
        let off = Timestamp::now().duration_since(hour_ago).as_secs();
        assert!((3595..=3605).contains(&off), "{off}");
        let later = parse_at("5m").unwrap();
        assert!(later > Timestamp::now());
        assert!(parse_since("yesterday-ish").is_err());
        assert_eq!(
            parse_duration("3d").unwrap(),
            Duration::from_secs(3 * 86_400)
        );
    }

    #[test]
    fn json_flags_must_be_objects() {
        assert!(parse_json_object(r#"{"a":1}"#).is_ok());
        assert!(parse_json_object("[1]").unwrap_err().contains("an array"));
        assert!(
            parse_json_object("{oops")
                .unwrap_err()
                .starts_with("not JSON")
        );
    }

    #[test]
    fn durations_read_compactly() {
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(312)), "5m12s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 240)), "3h4m");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 3600)),
            "2d1h"
        );
    }
}
