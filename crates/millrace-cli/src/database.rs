//! What a `--database-url` names: a PostgreSQL server or a SQLite file, how to reach the
//! server, and the SQLite side of opening it. Each command builds its own PostgreSQL pool from
//! [`postgres_options`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::ValueEnum;
use millrace::Schema;
use millrace_sqlite::SqliteDriver;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// How long the first connection to PostgreSQL may take before the command gives up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Parses a PostgreSQL URL and opens one connection with it, to fail fast with the reason.
///
/// A pool reports a refused connection only as "pool timed out", after its acquire timeout
/// (it retries refused connections, taking them for a server that is starting); one plain
/// connection first says at once why it failed, and where it tried.
///
/// # Errors
///
/// When the URL does not parse, or the connection fails or takes longer than
/// [`CONNECT_TIMEOUT`]. Messages name the host and port, never the URL, which may hold a
/// password.
pub(crate) async fn postgres_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts: PgConnectOptions = url.parse().context("invalid --database-url")?;
    let at = match opts.get_socket() {
        Some(socket) => format!("socket {}", socket.display()),
        None if opts.get_host().contains(':') => {
            format!("[{}]:{}", opts.get_host(), opts.get_port())
        }
        None => format!("{}:{}", opts.get_host(), opts.get_port()),
    };
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts))
        .await
        .map_err(|_| anyhow!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
        .and_then(|conn| Ok(conn?))
        .with_context(|| format!("could not connect to PostgreSQL at {at} (--database-url)"))?
        .close()
        .await
        .ok();
    Ok(opts)
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
