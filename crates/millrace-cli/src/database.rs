//! What a `--database-url` (or the PG* variables) names: a PostgreSQL server or a SQLite
//! file, how to reach the server, and the SQLite side of opening it. Each command builds its
//! own PostgreSQL pool from [`postgres_options`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use millrace::Schema;
use millrace_postgres::ConnectOptions;
use millrace_sqlite::SqliteDriver;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// What every message about an unusable URL ends with.
const URL_FORMS: &str = "use postgres://… for PostgreSQL, or sqlite://PATH (sqlite:///PATH when absolute) for a SQLite file";

/// The database engines the command speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Engine {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A database URL, sorted by engine.
#[derive(Debug, Clone)]
pub(crate) enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`, as given.
    Postgres(String),
    /// `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:`; boxed, as its connect options
    /// are large.
    Sqlite(Box<SqliteUrl>),
}

impl DatabaseUrl {
    /// Sorts a URL by its scheme.
    ///
    /// # Errors
    ///
    /// When the scheme is neither PostgreSQL's nor SQLite's, or a SQLite URL names no file.
    /// Messages never repeat the URL, which may hold a password.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Self> {
        let Some((scheme, rest)) = url.split_once(':').filter(|(scheme, _)| is_scheme(scheme))
        else {
            bail!("the database URL has no scheme: {URL_FORMS}");
        };
        if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else if scheme.eq_ignore_ascii_case("sqlite") {
            SqliteUrl::parse(&format!("sqlite:{rest}"))
                .map(|url| DatabaseUrl::Sqlite(Box::new(url)))
        } else {
            bail!("unsupported database URL scheme {scheme:?}: {URL_FORMS}");
        }
    }

    /// The engine the URL names.
    pub(crate) fn engine(&self) -> Engine {
        match self {
            DatabaseUrl::Postgres(_) => Engine::Postgres,
            DatabaseUrl::Sqlite(_) => Engine::Sqlite,
        }
    }
}

/// Where the database is and how to reach it: the connection flags every command that
/// connects takes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct ConnectionArgs {
    /// PostgreSQL URL, such as postgres://user@localhost:5432/app?sslmode=verify-full, or SQLite
    /// file, such as sqlite://jobs.db (sqlite:///var/lib/app/jobs.db when absolute). Without
    /// one, PostgreSQL is reached through PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and
    /// the other PG* variables, as psql does, when PGHOST or PGDATABASE is set.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// TLS: disable, prefer, require, verify-ca or verify-full (default: the URL's sslmode,
    /// then PGSSLMODE, then prefer). `require` with a root certificate verifies it, as libpq.
    #[arg(long, value_name = "MODE")]
    sslmode: Option<String>,
    /// The root certificate (PEM file) the server's must chain to, or `system` for the
    /// built-in roots (default: the URL's sslrootcert, then PGSSLROOTCERT, then
    /// ~/.postgresql/root.crt when it exists).
    #[arg(long, value_name = "FILE")]
    sslrootcert: Option<String>,
    /// A client certificate (PEM file), for certificate authentication; needs --sslkey.
    #[arg(long, value_name = "FILE", requires = "sslkey")]
    sslcert: Option<String>,
    /// The client certificate's private key (PEM file); needs --sslcert.
    #[arg(long, value_name = "FILE", requires = "sslcert")]
    sslkey: Option<String>,
    /// The application_name pg_stat_activity shows for the command's connections (default:
    /// the URL's, then PGAPPNAME, then `millrace <command>`).
    #[arg(long, value_name = "NAME")]
    application_name: Option<String>,
    /// Seconds a connection may take to open, 1 to 3,600 (default: the URL's connect_timeout,
    /// then PGCONNECT_TIMEOUT, then 10).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3_600))]
    connect_timeout: Option<u64>,
    /// Seconds after which the server cancels any one statement, 1 to 86,400 (default: the
    /// server's statement_timeout).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    statement_timeout: Option<u64>,
}

/// The database a command uses.
#[derive(Debug)]
pub(crate) enum Database {
    /// PostgreSQL, with the resolved settings (not yet connected).
    Postgres(Box<ConnectOptions>),
    /// A SQLite file.
    Sqlite(Box<SqliteUrl>),
}

impl ConnectionArgs {
    /// The database the flags, `DATABASE_URL` or the PG* variables name, or `default` when
    /// none does. `command` names the connections in pg_stat_activity (`millrace demo`).
    ///
    /// # Errors
    ///
    /// When nothing names a database and there is no default, or a setting is invalid.
    /// Nothing connects yet.
    pub(crate) fn database(
        &self,
        command: &str,
        default: Option<&str>,
    ) -> anyhow::Result<Database> {
        let pg_env = ["PGHOST", "PGHOSTADDR", "PGDATABASE"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        let options = match (&self.database_url, pg_env, default) {
            (Some(url), _, _) => match DatabaseUrl::parse(url)? {
                DatabaseUrl::Postgres(url) => {
                    ConnectOptions::from_url(&url).context("invalid --database-url")?
                }
                DatabaseUrl::Sqlite(url) => return self.sqlite(url),
            },
            (None, true, _) => {
                ConnectOptions::from_env().context("invalid PG* connection settings")?
            }
            (None, false, Some(default)) => match DatabaseUrl::parse(default)? {
                DatabaseUrl::Postgres(url) => ConnectOptions::from_url(&url)?,
                DatabaseUrl::Sqlite(url) => return self.sqlite(url),
            },
            (None, false, None) => bail!(
                "no database given: pass --database-url, set DATABASE_URL, or set PGHOST or \
                 PGDATABASE (with the other PG* variables) as for psql"
            ),
        };
        let mut options = options.fallback_application_name(format!("millrace {command}"));
        if let Some(mode) = &self.sslmode {
            options = options.ssl_mode(mode.parse().context("invalid --sslmode")?);
        }
        if let Some(cert) = &self.sslrootcert {
            options = options.ssl_root_cert(cert);
        }
        if let (Some(cert), Some(key)) = (&self.sslcert, &self.sslkey) {
            options = options.ssl_client_cert(cert, key);
        }
        if let Some(name) = &self.application_name {
            options = options.application_name(name);
        }
        if let Some(secs) = self.connect_timeout {
            options = options.connect_timeout(Duration::from_secs(secs));
        }
        if let Some(secs) = self.statement_timeout {
            options = options.statement_timeout(Duration::from_secs(secs));
        }
        // Resolving now reports a bad sslmode, a missing certificate file or a missing key
        // before anything else happens.
        options.to_pg_options()?;
        Ok(Database::Postgres(Box::new(options)))
    }

    fn sqlite(&self, url: Box<SqliteUrl>) -> anyhow::Result<Database> {
        let pg_only = [
            ("--sslmode", self.sslmode.is_some()),
            ("--sslrootcert", self.sslrootcert.is_some()),
            ("--sslcert", self.sslcert.is_some()),
            ("--application-name", self.application_name.is_some()),
            ("--connect-timeout", self.connect_timeout.is_some()),
            ("--statement-timeout", self.statement_timeout.is_some()),
        ];
        if let Some((flag, _)) = pg_only.iter().find(|(_, given)| *given) {
            bail!("{flag} applies to PostgreSQL only, and the database is a SQLite file");
        }
        Ok(Database::Sqlite(url))
    }

    /// The flags other than the URL, for a child `millrace` process to connect the same way.
    /// The URL goes through the environment instead, where `ps` does not show it.
    pub(crate) fn child_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(flag.to_owned());
                args.push(value);
            }
        };
        push("--sslmode", self.sslmode.clone());
        push("--sslrootcert", self.sslrootcert.clone());
        push("--sslcert", self.sslcert.clone());
        push("--sslkey", self.sslkey.clone());
        push("--application-name", self.application_name.clone());
        push(
            "--connect-timeout",
            self.connect_timeout.map(|s| s.to_string()),
        );
        push(
            "--statement-timeout",
            self.statement_timeout.map(|s| s.to_string()),
        );
        args
    }
}

/// Resolves PostgreSQL settings and opens one connection with them, to fail fast with the
/// reason; the command then builds its own pool on the options returned.
///
/// A pool reports a refused connection only as "pool timed out", after its acquire timeout
/// (it retries refused connections, taking them for a server that is starting); one plain
/// connection first says at once why it failed, and where it tried.
///
/// # Errors
///
/// When a setting is invalid, or the connection fails or takes longer than the connect
/// timeout. Messages name the host and port, never the URL, which may hold a password.
pub(crate) async fn postgres_options(options: &ConnectOptions) -> anyhow::Result<PgConnectOptions> {
    Ok(options.check().await?)
}

/// `[A-Za-z][A-Za-z0-9+.-]*`, as RFC 3986 spells a scheme.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

/// A SQLite URL: the file it names and the options the driver opens it with.
#[derive(Debug, Clone)]
pub(crate) struct SqliteUrl {
    /// The driver's options for the URL, before `create`.
    options: SqliteConnectOptions,
    /// The file, or `None` for an in-memory database.
    path: Option<PathBuf>,
    /// The URL says how to open the file (`mode=ro`, `rw`, `rwc` or `memory`).
    has_mode: bool,
}

impl SqliteUrl {
    fn parse(url: &str) -> anyhow::Result<Self> {
        // The driver reads the same URL; parsing it here reports a bad option before anything
        // else happens.
        let options = SqliteDriver::connect_options(url).context("invalid --database-url")?;
        let database = url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or_default();
        let query = url.split_once('?').map_or("", |(_, query)| query);
        let has_mode = query.split('&').any(|pair| pair.starts_with("mode="));
        let in_memory = database == ":memory:" || query.split('&').any(|p| p == "mode=memory");
        if database.is_empty() && !in_memory {
            bail!("the SQLite URL names no file: {URL_FORMS}");
        }
        Ok(SqliteUrl {
            path: (!in_memory).then(|| options.get_filename().to_path_buf()),
            options,
            has_mode,
        })
    }

    /// The file, or `None` for an in-memory database.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file as messages show it.
    pub(crate) fn display(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string())
    }

    /// The options [`SqliteDriver::open`] would use. `create` says whether a missing file is
    /// created, unless the URL's `mode` says it itself.
    fn options(&self, create: bool) -> SqliteConnectOptions {
        if self.has_mode {
            self.options.clone()
        } else {
            self.options.clone().create_if_missing(create)
        }
    }

    /// Opens the database with the driver's settings (WAL, busy timeout). When `create` is
    /// false a missing file is an error that says so, rather than a new empty database.
    pub(crate) async fn open(&self, create: bool) -> anyhow::Result<SqliteDriver> {
        if let Some(path) = &self.path {
            if !create && !self.has_mode && !path.exists() {
                bail!(
                    "the SQLite database {} does not exist; `millrace migrate-up` creates it",
                    path.display()
                );
            }
        }
        SqliteDriver::open_with(self.options(create))
            .await
            .with_context(|| format!("could not open the SQLite database {}", self.display()))
    }

    /// Opens the database as [`SqliteUrl::open`] does, with a pool of `connections`.
    pub(crate) async fn open_pool(&self, connections: u32) -> anyhow::Result<SqliteDriver> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(self.options(true))
            .await
            .with_context(|| format!("could not open the SQLite database {}", self.display()))?;
        Ok(SqliteDriver::new(pool))
    }

    /// Another file, with the driver's settings and created when missing: for a database of
    /// the command's own.
    pub(crate) fn file(path: PathBuf) -> anyhow::Result<SqliteUrl> {
        let options = SqliteDriver::connect_options(&path.to_string_lossy())
            .context("invalid SQLite file name")?
            .filename(&path);
        Ok(SqliteUrl {
            options,
            path: Some(path),
            has_mode: false,
        })
    }
}

/// Checks a `--schema` given with a SQLite URL. A SQLite schema is an attached database, which
/// the command has no file for: the file in the URL is the database, as schema `main`.
///
/// # Errors
///
/// For any name but `main`.
pub(crate) fn sqlite_schema(name: Option<&str>) -> anyhow::Result<Schema> {
    match name {
        None | Some("main") => Ok(Schema::default()),
        Some(name) => bail!(
            "--schema {name:?} cannot be used with SQLite: a SQLite schema is an attached \
             database, and the file in --database-url is the database (schema main); give the \
             file that should hold the tables instead"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_sorted_by_scheme() {
        let url = DatabaseUrl::parse("postgres://u:secret@localhost/app").unwrap();
        assert_eq!(url.engine(), Engine::Postgres);
        assert_eq!(
            DatabaseUrl::parse("postgresql://localhost/app")
                .unwrap()
                .engine(),
            Engine::Postgres
        );
        for (url, path) in [
            ("sqlite://jobs.db", Some("jobs.db")),
            ("sqlite:jobs.db", Some("jobs.db")),
            ("sqlite:///tmp/jobs.db?mode=rwc", Some("/tmp/jobs.db")),
            ("sqlite://data/my%20jobs.db", Some("data/my jobs.db")),
            ("SQLite://jobs.db", Some("jobs.db")),
            ("sqlite::memory:", None),
        ] {
            let DatabaseUrl::Sqlite(sqlite) = DatabaseUrl::parse(url).unwrap() else {
                panic!("{url} is not SQLite");
            };
            assert_eq!(sqlite.path(), path.map(Path::new), "{url}");
        }
    }

    #[test]
    fn bad_urls_are_clear_errors_without_the_url() {
        for (url, expected) in [
            (
                "mysql://root:secret@localhost/app",
                "unsupported database URL scheme \"mysql\"",
            ),
            ("jobs.db", "the database URL has no scheme"),
            ("sqlite://", "the SQLite URL names no file"),
            ("sqlite://jobs.db?color=red", "invalid --database-url"),
        ] {
            let err = format!("{:#}", DatabaseUrl::parse(url).unwrap_err());
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn only_main_is_a_sqlite_schema() {
        assert_eq!(sqlite_schema(None).unwrap(), Schema::default());
        assert_eq!(sqlite_schema(Some("main")).unwrap(), Schema::default());
        let err = sqlite_schema(Some("jobs")).unwrap_err().to_string();
        assert!(err.contains("attached database"), "{err}");
    }
}
