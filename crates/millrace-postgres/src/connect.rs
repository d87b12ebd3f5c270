//! Connection settings as psql takes them: a URL or the `PG*` variables, TLS, pool size,
//! timeouts and `application_name`, resolved into a sqlx pool.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection as _, PgConnection, PgPool};

/// The `sslmode`s Millrace accepts, as libpq spells them.
const SSL_MODES: &str = "disable, prefer, require, verify-ca or verify-full";

/// How hard a connection insists on TLS, as libpq's `sslmode`.
///
/// Parsed from the names libpq uses (`"verify-full".parse()`). libpq's `allow` is refused
/// rather than accepted: sqlx would treat it as `disable`, which is not what `allow` means.
///
/// ```
/// use millrace_postgres::SslMode;
///
/// assert_eq!("verify-full".parse::<SslMode>()?, SslMode::VerifyFull);
/// assert!("requre".parse::<SslMode>().is_err());
/// # Ok::<(), millrace_postgres::ConnectError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, without verifying the server: protects against
    /// eavesdropping only. The default when TLS is compiled in.
    Prefer,
    /// TLS or fail, without verifying the server, unless a root certificate is given: then
    /// the server's certificate is verified as with [`SslMode::VerifyCa`], as libpq does.
    Require,
    /// TLS or fail, and the server's certificate must chain to a trusted root.
    VerifyCa,
    /// As [`SslMode::VerifyCa`], and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq name of the mode.
    ///
    /// ```
    /// assert_eq!(millrace_postgres::SslMode::VerifyCa.as_str(), "verify-ca");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn to_sqlx(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

impl FromStr for SslMode {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<Self, ConnectError> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(ConnectError::Setting {
                name: "sslmode",
                message: format!("unknown sslmode {s:?}: expected {SSL_MODES}"),
            }),
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why connection settings were refused or a connection could not be made.
///
/// Messages never repeat the URL or a password; they name the setting at fault, or the host
/// and port tried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The database URL does not parse; the source says why.
    #[error("invalid database URL")]
    Url(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A setting has a value that cannot be used; the message names the setting.
    #[error("{message}")]
    Setting {
        /// The setting, as libpq names it (`sslmode`, `sslrootcert`, `port`, …).
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A certificate or key file named by a setting cannot be read.
    #[error("cannot read the {name} file {}", path.display())]
    CertificateFile {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        name: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The sslmode asks for TLS but this build has none.
    #[error(
        "sslmode {0} needs TLS, but this build has none: enable millrace-postgres's \
         tls-rustls or tls-native-tls feature, or set sslmode=disable"
    )]
    TlsUnavailable(SslMode),
    /// The first connection failed; the source says why.
    #[error("could not connect to PostgreSQL at {at}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Connect {
        /// `host:port`, or the socket's path.
        at: String,
        /// A hint at the cause, for failures whose sqlx message does not say it plainly.
        hint: Option<&'static str>,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The first connection did not complete within the connect timeout.
    #[error("could not connect to PostgreSQL at {at}: no answer within {} s", after.as_secs_f64())]
    Timeout {
        /// `host:port`, or the socket's path.
        at: String,
        /// The connect timeout.
        after: Duration,
    },
}

/// Where a root certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootCert {
    /// A PEM file, or PEM text given inline.
    File(String),
    /// `sslrootcert=system`: the roots the TLS library trusts (Mozilla's with rustls, the
    /// system's with native-tls).
    System,
}

/// Settings for reaching PostgreSQL, read the way psql reads them, that build a [`PgPool`].
///
/// Start from a URL ([`ConnectOptions::from_url`]) or from the `PG*` variables alone
/// ([`ConnectOptions::from_env`]), then override what you need. The precedence is: a setter,
/// then the URL, then the `PG*` variable, then the default.
///
/// | setting | URL parameter | variable | default |
/// | --- | --- | --- | --- |
/// | host, port, user, password, database | URL parts, `host`, `port`, `user`, `password`, `dbname` | `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE` | local socket, 5432, OS user, `~/.pgpass`, user name |
/// | [`ssl_mode`](Self::ssl_mode) | `sslmode` | `PGSSLMODE` | `prefer` (`disable` in a build without TLS) |
/// | [`ssl_root_cert`](Self::ssl_root_cert) | `sslrootcert` (a file, or `system`) | `PGSSLROOTCERT` | `~/.postgresql/root.crt` when it exists, else the TLS library's roots |
/// | [`ssl_client_cert`](Self::ssl_client_cert) | `sslcert`, `sslkey` | `PGSSLCERT`, `PGSSLKEY` | none |
/// | [`application_name`](Self::application_name) | `application_name`, `fallback_application_name` | `PGAPPNAME` | `millrace` |
/// | [`connect_timeout`](Self::connect_timeout) | `connect_timeout` (seconds) | `PGCONNECT_TIMEOUT` | 10 s |
/// | [`statement_timeout`](Self::statement_timeout) | `options=-c statement_timeout=…` | `PGOPTIONS` | the server's |
/// | [`max_connections`](Self::max_connections) | | | 10 |
///
/// Three of sqlx's own behaviours are closed here, so a setting never weakens silently:
/// - `sslmode=require` with a root certificate verifies the server's certificate against it
///   (libpq's rule: such a `require` behaves as `verify-ca`); sqlx alone would accept any
///   certificate.
/// - `sslmode=prefer` in a build without TLS is an error ([`ConnectError::TlsUnavailable`]),
///   where sqlx would connect in plaintext without a word.
/// - An unknown `PGSSLMODE` or an unparsable `PGPORT` is an error, where sqlx would fall back
///   to `prefer` and 5432.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use millrace_postgres::{ConnectOptions, PgDriver};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// // postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem,
/// // or nothing at all and PGHOST, PGUSER, PGSSLMODE… in the environment.
/// let options = match std::env::var("DATABASE_URL") {
///     Ok(url) => ConnectOptions::from_url(&url)?,
///     Err(_) => ConnectOptions::from_env()?,
/// };
/// let pool = options
///     .application_name("billing-worker")
///     .max_connections(20)
///     .statement_timeout(Duration::from_secs(30))
///     .connect()
///     .await?;
/// let driver = PgDriver::new(pool);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectOptions {
    /// What sqlx read from the URL and the environment, less the settings kept below.
    base: PgConnectOptions,
    ssl_mode: Option<SslMode>,
    /// Where `ssl_mode` came from, for messages.
    ssl_mode_from: &'static str,
    ssl_root_cert: Option<RootCert>,
    ssl_cert: Option<String>,
    ssl_key: Option<String>,
    application_name: Option<String>,
    fallback_application_name: String,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
    max_connections: u32,
}

impl ConnectOptions {
    /// The default [`connect_timeout`](Self::connect_timeout).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default [`max_connections`](Self::max_connections).
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// The default `application_name`.
    pub const DEFAULT_APPLICATION_NAME: &'static str = "millrace";

    /// Settings from the `PG*` variables alone, as psql reads them with no arguments.
    ///
    /// # Errors
    ///
    /// When a variable holds a value that cannot be used ([`ConnectError::Setting`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), millrace_postgres::ConnectError> {
    /// // PGHOST=db.internal PGUSER=app PGDATABASE=app PGSSLMODE=verify-full
    /// let pool = millrace_postgres::ConnectOptions::from_env()?.connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self, ConnectError> {
        Self::from_parts(PgConnectOptions::new(), Vec::new())
    }

    /// Settings from a `postgres://` or `postgresql://` URL, the `PG*` variables filling in
    /// what it leaves out, as libpq does.
    ///
    /// # Errors
    ///
    /// When the URL does not parse ([`ConnectError::Url`]) or a parameter or variable holds a
    /// value that cannot be used ([`ConnectError::Setting`]). Messages never repeat the URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use millrace_postgres::{ConnectOptions, SslMode};
    ///
    /// let options = ConnectOptions::from_url(
    ///     "postgres://app@db.example.com/app?sslmode=verify-full&application_name=billing",
    /// )?;
    /// assert_eq!(options.get_ssl_mode(), SslMode::VerifyFull);
    /// assert!(ConnectOptions::from_url("postgres://db/app?sslmode=on").is_err());
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConnectError> {
        let mut parsed = url::Url::parse(url).map_err(|err| ConnectError::Url(err.into()))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(ConnectError::Url(
                format!(
                    "unsupported scheme {:?}: expected postgres:// or postgresql://",
                    parsed.scheme()
                )
                .into(),
            ));
        }
        // The settings this type resolves itself come out of the URL; sqlx reads the rest.
        let mut own = Vec::new();
        let mut rest = Vec::new();
        for (key, value) in parsed.query_pairs() {
            let key = match &*key {
                "sslmode" | "ssl-mode" => "sslmode",
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => "sslrootcert",
                "sslcert" | "ssl-cert" => "sslcert",
                "sslkey" | "ssl-key" => "sslkey",
                "connect_timeout" => "connect_timeout",
                "fallback_application_name" => "fallback_application_name",
                _ => {
                    rest.push((key.into_owned(), value.into_owned()));
                    continue;
                }
            };
            own.push((key, value.into_owned()));
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        let base = parsed
            .as_str()
            .parse::<PgConnectOptions>()
            .map_err(|err| ConnectError::Url(err.into()))?;
        Self::from_parts(base, own)
    }

    fn from_parts(
        base: PgConnectOptions,
        url: Vec<(&'static str, String)>,
    ) -> Result<Self, ConnectError> {
        let from_url = |name: &str| {
            url.iter()
                .rev()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        // sqlx reads PGPORT and PGSSLMODE too, but falls back to the default on a bad value.
        if let Some(port) = env("PGPORT") {
            if port.parse::<u16>().is_err() {
                return Err(ConnectError::Setting {
                    name: "port",
                    message: format!("invalid port {port:?} (from PGPORT)"),
                });
            }
        }
        let (ssl_mode, ssl_mode_from) = match (from_url("sslmode"), env("PGSSLMODE")) {
            (Some(mode), _) => (Some(mode), "sslmode"),
            (None, Some(mode)) => (Some(mode), "PGSSLMODE"),
            (None, None) => (None, "sslmode"),
        };
        let ssl_mode = ssl_mode
            .map(|mode| {
                mode.parse::<SslMode>().map_err(|_| ConnectError::Setting {
                    name: "sslmode",
                    message: format!(
                        "unknown sslmode {mode:?}{}: expected {SSL_MODES}",
                        if ssl_mode_from == "PGSSLMODE" {
                            " (from PGSSLMODE)"
                        } else {
                            ""
                        }
                    ),
                })
            })
            .transpose()?;
        let ssl_root_cert = from_url("sslrootcert")
            .or_else(|| env("PGSSLROOTCERT"))
            .map(|value| root_cert(&value));
        let connect_timeout = match from_url("connect_timeout").or_else(|| env("PGCONNECT_TIMEOUT"))
        {
            None => Self::DEFAULT_CONNECT_TIMEOUT,
            Some(secs) => match secs.trim().parse::<u64>() {
                // libpq: zero, or no value, means wait indefinitely; a day stands in for it.
                Ok(0) => Duration::from_secs(86_400),
                // libpq: values below 2 s are taken as 2 s.
                Ok(secs) => Duration::from_secs(secs.max(2)),
                Err(_) => {
                    return Err(ConnectError::Setting {
                        name: "connect_timeout",
                        message: format!(
                            "invalid connect_timeout {secs:?}: expected whole seconds"
                        ),
                    });
                }
            },
        };
        Ok(ConnectOptions {
            application_name: base.get_application_name().map(str::to_owned),
            base,
            ssl_mode,
            ssl_mode_from,
            ssl_root_cert,
            ssl_cert: from_url("sslcert").or_else(|| env("PGSSLCERT")),
            ssl_key: from_url("sslkey").or_else(|| env("PGSSLKEY")),
            fallback_application_name: from_url("fallback_application_name")
                .unwrap_or_else(|| Self::DEFAULT_APPLICATION_NAME.to_owned()),
            connect_timeout,
            statement_timeout: None,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Sets the TLS mode. Defaults to `prefer`, or `disable` in a build without TLS.
    ///
    /// ```
    /// # use millrace_postgres::{ConnectOptions, SslMode};
    /// let options = ConnectOptions::from_url("postgres://db/app")?.ssl_mode(SslMode::VerifyFull);
    /// assert_eq!(options.get_ssl_mode(), SslMode::VerifyFull);
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self.ssl_mode_from = "sslmode";
        self
    }

    /// Sets the root certificate the server's must chain to: a PEM file, or `system` for the
    /// TLS library's own roots (Mozilla's with rustls, the system's with native-tls).
    ///
    /// Defaults to `~/.postgresql/root.crt` when that file exists, as with libpq, else to the
    /// TLS library's roots. With `require`, a root certificate makes the connection verify the
    /// server's certificate, as libpq does; `system` asks for `verify-full`.
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app?sslmode=verify-full")?
    ///     .ssl_root_cert("/etc/ssl/certs/rds-global-bundle.pem");
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn ssl_root_cert(mut self, cert: impl AsRef<str>) -> Self {
        self.ssl_root_cert = Some(root_cert(cert.as_ref()));
        self
    }

    /// Sets the client certificate and its private key (PEM files), for servers that
    /// authenticate clients by certificate (`hostssl … cert` in `pg_hba.conf`).
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://app@db/app?sslmode=verify-full")?
    ///     .ssl_client_cert("/etc/app/client.crt", "/etc/app/client.key");
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn ssl_client_cert(mut self, cert: impl Into<String>, key: impl Into<String>) -> Self {
        self.ssl_cert = Some(cert.into());
        self.ssl_key = Some(key.into());
        self
    }

    /// Sets the `application_name` every connection reports, which `pg_stat_activity` shows.
    ///
    /// Defaults to the URL's `application_name`, then `PGAPPNAME`, then the URL's
    /// `fallback_application_name`, then `millrace`.
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app")?.application_name("mailer");
    /// assert_eq!(options.get_application_name(), "mailer");
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets the `application_name` used when neither a setter, the URL nor `PGAPPNAME` gives
    /// one (libpq's `fallback_application_name`).
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app")?
    ///     .fallback_application_name("millrace worker");
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn fallback_application_name(mut self, name: impl Into<String>) -> Self {
        self.fallback_application_name = name.into();
        self
    }

    /// Sets how long opening a connection, or waiting for one from the pool, may take.
    /// Defaults to 10 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app")?
    ///     .connect_timeout(Duration::from_secs(3));
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the server's `statement_timeout` on every connection, so a statement that runs
    /// longer is cancelled by the server. Defaults to the server's setting (usually none).
    ///
    /// It is sent with the connection's startup packet, so it also holds through PgBouncer in
    /// session mode; a `statement_timeout` in the URL's `options` is overridden by this one.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app")?
    ///     .statement_timeout(Duration::from_secs(30));
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets the pool's size. Defaults to 10.
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app")?.max_connections(25);
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// The TLS mode connections will use, after libpq's rules (`require` with a root
    /// certificate is `verify-ca`) and the defaults are applied.
    ///
    /// ```
    /// # use millrace_postgres::{ConnectOptions, SslMode};
    /// let options = ConnectOptions::from_url("postgres://db/app?sslmode=require")?;
    /// assert_eq!(options.get_ssl_mode(), SslMode::Require);
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn get_ssl_mode(&self) -> SslMode {
        let root = self.effective_root_cert();
        match (self.ssl_mode, root) {
            (Some(SslMode::Require), Some(RootCert::File(_))) => SslMode::VerifyCa,
            (Some(mode), _) => mode,
            // libpq: sslrootcert=system makes verify-full the default.
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) if tls_available() => SslMode::Prefer,
            (None, _) => SslMode::Disable,
        }
    }

    /// The `application_name` connections will report.
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app?application_name=mailer")?;
    /// assert_eq!(options.get_application_name(), "mailer");
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn get_application_name(&self) -> &str {
        self.application_name
            .as_deref()
            .unwrap_or(&self.fallback_application_name)
    }

    /// The pool's size.
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// assert_eq!(ConnectOptions::from_url("postgres://db/app")?.get_max_connections(), 10);
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn get_max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The connect timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://db/app?connect_timeout=5")?;
    /// assert_eq!(options.get_connect_timeout(), Duration::from_secs(5));
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Where connections go, as messages show it: `host:port`, `[v6]:port` or the socket.
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let options = ConnectOptions::from_url("postgres://u:secret@db.example.com:6432/app")?;
    /// assert_eq!(options.target(), "db.example.com:6432");
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn target(&self) -> String {
        let opts = &self.base;
        match opts.get_socket() {
            Some(socket) => format!("socket {}", socket.display()),
            None if opts.get_host().contains(':') => {
                format!("[{}]:{}", opts.get_host(), opts.get_port())
            }
            None => format!("{}:{}", opts.get_host(), opts.get_port()),
        }
    }

    fn effective_root_cert(&self) -> Option<RootCert> {
        self.ssl_root_cert.clone().or_else(|| {
            // libpq reads ~/.postgresql/root.crt when no sslrootcert is given.
            let home = std::env::var_os("HOME")?;
            let path = Path::new(&home).join(".postgresql/root.crt");
            path.is_file()
                .then(|| RootCert::File(path.to_string_lossy().into_owned()))
        })
    }

    /// The sqlx options these settings resolve to, with every check made that can be made
    /// without connecting.
    ///
    /// # Errors
    ///
    /// [`ConnectError::TlsUnavailable`] when the mode asks for TLS in a build without it,
    /// [`ConnectError::CertificateFile`] when a certificate or key file cannot be read, and
    /// [`ConnectError::Setting`] for a client certificate without its key (or the reverse) or
    /// `sslrootcert=system` with a mode weaker than `verify-full`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millrace_postgres::ConnectOptions;
    /// let pg = ConnectOptions::from_url("postgres://db/app?sslmode=disable")?.to_pg_options()?;
    /// assert_eq!(pg.get_application_name(), Some("millrace"));
    /// # Ok::<(), millrace_postgres::ConnectError>(())
    /// ```
    pub fn to_pg_options(&self) -> Result<PgConnectOptions, ConnectError> {
        let mode = self.get_ssl_mode();
        // Without TLS the default is `disable` (see get_ssl_mode), so this is only an
        // explicit mode that cannot be honoured; sqlx would run `prefer` in plaintext.
        if mode != SslMode::Disable && !tls_available() {
            return Err(ConnectError::TlsUnavailable(mode));
        }
        let root = self.effective_root_cert();
        if root == Some(RootCert::System) && mode != SslMode::VerifyFull {
            // libpq refuses this too: the system's roots vouch for anyone's name, so only a
            // check of the host name makes them mean something.
            return Err(ConnectError::Setting {
                name: "sslrootcert",
                message: format!(
                    "sslmode {mode} may not be used with sslrootcert=system: use verify-full"
                ),
            });
        }
        let mut opts = self
            .base
            .clone()
            .ssl_mode(mode.to_sqlx())
            .application_name(self.get_application_name());
        // PGSSLROOTCERT, PGSSLCERT and PGSSLKEY as sqlx read them are replaced by the
        // settings resolved here.
        opts = match root {
            Some(RootCert::File(file)) => {
                check_file("sslrootcert", &file)?;
                opts.ssl_root_cert(&*file)
            }
            Some(RootCert::System) | None => without_root_cert(opts)?,
        };
        match (&self.ssl_cert, &self.ssl_key) {
            (Some(cert), Some(key)) => {
                check_file("sslcert", cert)?;
                check_file("sslkey", key)?;
                opts = opts.ssl_client_cert(&**cert).ssl_client_key(&**key);
            }
            (None, None) => {}
            (Some(_), None) => return Err(missing_pair("sslcert", "sslkey")),
            (None, Some(_)) => return Err(missing_pair("sslkey", "sslcert")),
        }
        if let Some(timeout) = self.statement_timeout {
            opts = opts.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        Ok(opts)
    }

    /// The pool options these settings give (size and acquire timeout), to adjust further
    /// before connecting with [`ConnectOptions::to_pg_options`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use millrace_postgres::ConnectOptions;
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = ConnectOptions::from_env()?;
    /// let pool = options
    ///     .pool_options()
    ///     .idle_timeout(Duration::from_secs(60))
    ///     .connect_lazy_with(options.to_pg_options()?);
    /// # Ok(()) }
    /// ```
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.connect_timeout)
    }

    /// Opens one connection to check the settings, then returns a pool built on them.
    ///
    /// The check connection says at once why a connection fails (refused, TLS, password),
    /// where a pool would retry until its timeout and report only that it timed out. Nothing
    /// is sent to the database but the connection's startup.
    ///
    /// # Errors
    ///
    /// Those of [`ConnectOptions::to_pg_options`], [`ConnectError::Connect`] when the
    /// connection fails, and [`ConnectError::Timeout`] when it takes longer than the connect
    /// timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), millrace_postgres::ConnectError> {
    /// let pool = millrace_postgres::ConnectOptions::from_url("postgres://localhost/app")?
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self) -> Result<PgPool, ConnectError> {
        let opts = self.check().await?;
        Ok(self.pool_options().connect_lazy_with(opts))
    }

    /// Resolves the settings and opens and closes one connection with them, for callers that
    /// build their own pool: the check [`ConnectOptions::connect`] makes.
    ///
    /// # Errors
    ///
    /// As [`ConnectOptions::connect`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), millrace_postgres::ConnectError> {
    /// let options = millrace_postgres::ConnectOptions::from_env()?;
    /// let pool = options
    ///     .pool_options()
    ///     .min_connections(2)
    ///     .connect_lazy_with(options.check().await?);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self) -> Result<PgConnectOptions, ConnectError> {
        let opts = self.to_pg_options()?;
        self.check_with(&opts).await?;
        Ok(opts)
    }

    /// A pool built on these settings that connects only when first used.
    ///
    /// # Errors
    ///
    /// Those of [`ConnectOptions::to_pg_options`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), millrace_postgres::ConnectError> {
    /// let pool = millrace_postgres::ConnectOptions::from_url("postgres://localhost/app")?
    ///     .connect_lazy()?;
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy(&self) -> Result<PgPool, ConnectError> {
        Ok(self.pool_options().connect_lazy_with(self.to_pg_options()?))
    }

    /// Opens and closes one connection with `opts`.
    async fn check_with(&self, opts: &PgConnectOptions) -> Result<(), ConnectError> {
        let at = self.target();
        let conn = tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(opts))
            .await
            .map_err(|_| ConnectError::Timeout {
                at: at.clone(),
                after: self.connect_timeout,
            })?
            .map_err(|source| ConnectError::Connect {
                hint: hint(&source),
                at,
                source,
            })?;
        // A failed goodbye does not make the settings wrong.
        let _ = conn.close().await;
        Ok(())
    }
}

/// `sqlx::Error`'s TLS messages name the rustls or OpenSSL condition; this says what it
/// means for a PostgreSQL connection.
fn hint(err: &sqlx::Error) -> Option<&'static str> {
    let text = err.to_string();
    // rustls's and OpenSSL's wordings.
    if text.contains("UnknownIssuer")
        || text.contains("unknown issuer")
        || text.contains("unable to get local issuer")
        || text.contains("self-signed certificate in certificate chain")
    {
        Some("the server's certificate is not signed by a trusted root: check sslrootcert")
    } else if text.contains("NotValidForName")
        || text.contains("not valid for name")
        || text.contains("hostname mismatch")
        || text.contains("IP address mismatch")
    {
        Some(
            "the server's certificate does not name this host: connect by the name it was issued for, or use sslmode=verify-ca",
        )
    } else if text.contains("server does not support TLS") {
        Some(
            "the server does not offer TLS (ssl = off): use sslmode=prefer or disable, or turn TLS on in the server",
        )
    } else {
        None
    }
}

/// `sqlx::PgConnectOptions` read `PGSSLROOTCERT` itself and has no way to unset it; when
/// the resolved setting is no file (`system`, or a URL's `sslrootcert=system` over the
/// variable), an empty inline certificate stands in, which adds no root to the TLS library's
/// own. OpenSSL refuses an empty certificate, so native-tls builds must give `system` where
/// no `PGSSLROOTCERT` shadows it.
fn without_root_cert(opts: PgConnectOptions) -> Result<PgConnectOptions, ConnectError> {
    if std::env::var_os("PGSSLROOTCERT").is_none() {
        return Ok(opts);
    }
    if cfg!(feature = "tls-native-tls") {
        return Err(ConnectError::Setting {
            name: "sslrootcert",
            message: "PGSSLROOTCERT=system is not supported with native-tls: unset \
                      PGSSLROOTCERT (native-tls trusts the system's roots by default)"
                .to_owned(),
        });
    }
    Ok(opts.ssl_root_cert_from_pem(Vec::new()))
}

fn missing_pair(given: &'static str, missing: &'static str) -> ConnectError {
    ConnectError::Setting {
        name: given,
        message: format!("{given} is given without {missing}: give both, or neither"),
    }
}

fn root_cert(value: &str) -> RootCert {
    if value == "system" {
        RootCert::System
    } else {
        RootCert::File(value.to_owned())
    }
}

/// Reads a certificate setting's file now, so a typo is reported before connecting rather
/// than as an I/O error from inside the handshake. Inline PEM text passes as it is.
fn check_file(name: &'static str, value: &str) -> Result<(), ConnectError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(());
    }
    std::fs::File::open(value)
        .map(drop)
        .map_err(|source| ConnectError::CertificateFile {
            name,
            path: PathBuf::from(value),
            source,
        })
}

/// Whether sqlx was built with a TLS library: by this crate's features or by the
/// application's own sqlx features, which Cargo unifies with ours.
pub(crate) fn tls_available() -> bool {
    sqlx_core::net::tls::available()
}

#[cfg(test)]
mod tests {
    use super::*;

    // These read no PG* variable the test environment sets; the shared server's URL is given
    // in full.

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        let options =
            ConnectOptions::from_url("postgres://db/app?sslmode=require&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(options.get_ssl_mode(), SslMode::VerifyCa);
        let options = ConnectOptions::from_url("postgres://db/app?sslmode=require")
            .unwrap()
            .ssl_root_cert("/ca.pem");
        assert_eq!(options.get_ssl_mode(), SslMode::VerifyCa);
    }

    #[test]
    fn sslrootcert_system_defaults_to_verify_full_and_refuses_weaker_modes() {
        let options = ConnectOptions::from_url("postgres://db/app?sslrootcert=system").unwrap();
        assert_eq!(options.get_ssl_mode(), SslMode::VerifyFull);
        let err =
            ConnectOptions::from_url("postgres://db/app?sslrootcert=system&sslmode=verify-ca")
                .unwrap()
                .to_pg_options()
                .unwrap_err();
        assert!(err.to_string().contains("use verify-full"), "{err}");
    }

    #[test]
    fn settings_sqlx_does_not_know_are_taken_out_of_the_url() {
        let options = ConnectOptions::from_url(
            "postgres://u:secret@db:6432/app?connect_timeout=1&fallback_application_name=etl&sslmode=disable",
        )
        .unwrap();
        // libpq takes anything under 2 s as 2 s.
        assert_eq!(options.get_connect_timeout(), Duration::from_secs(2));
        assert_eq!(options.get_application_name(), "etl");
        assert_eq!(options.target(), "db:6432");
        let pg = options.application_name("api").to_pg_options().unwrap();
        assert_eq!(pg.get_application_name(), Some("api"));
    }

    #[test]
    fn url_errors_never_repeat_the_url() {
        for url in [
            "mysql://u:secret@db/app",
            "postgres://u:secret@db:99999/app",
        ] {
            let err = ConnectOptions::from_url(url).unwrap_err();
            let mut text = err.to_string();
            if let Some(source) = std::error::Error::source(&err) {
                text.push_str(&source.to_string());
            }
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
