//! Log setup in one line, for applications without a `tracing` subscriber of their own: plain
//! text for people (coloured only when the stream is a terminal and `NO_COLOR` is unset), or
//! one JSON object a line for log collectors. Needs the `logging` feature.
//!
//! Every job runs inside a `job` span with its `job_id`, `kind`, `queue` and `attempt`, so a
//! worker's own log lines carry them: in text after the span's name, in JSON under `"span"`.
//!
//! ```no_run
//! use millrace::logging::{self, LogFormat};
//!
//! // RUST_LOG, when set, chooses what is logged; `info` otherwise.
//! logging::init(LogFormat::Json).expect("no other subscriber is set");
//! ```

use std::io::IsTerminal as _;
use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
///
/// ```
/// use millrace::logging::LogFormat;
///
/// assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
/// assert!("xml".parse::<LogFormat>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal without `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, the event's fields (`message`
    /// among them) and the current span's fields under `span`.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

/// Whether text written to standard error may carry colour codes: only on a terminal, and
/// never under `NO_COLOR` (<https://no-color.org>) set to anything but the empty string.
///
/// ```
/// // Under a test harness standard error is a pipe, so never coloured.
/// # if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
/// assert!(!millrace::logging::stderr_has_colour());
/// # }
/// ```
pub fn stderr_has_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// The layer that writes log lines to standard error in `format`, for applications that build
/// their own subscriber (add a filter, other layers).
///
/// ```
/// use millrace::logging::{LogFormat, layer};
/// use tracing_subscriber::prelude::*;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(layer(LogFormat::Text).with_filter(tracing_subscriber::EnvFilter::new("info")));
/// # drop(subscriber);
/// ```
pub fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(stderr_has_colour()).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// Installs a global subscriber writing `format` to standard error, filtered by `RUST_LOG`
/// (`info` when unset or invalid).
///
/// # Errors
///
/// When a global subscriber is already set.
///
/// ```no_run
/// millrace::logging::init(millrace::logging::LogFormat::Text).unwrap();
/// ```
pub fn init(format: LogFormat) -> Result<(), tracing_subscriber::util::TryInitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(layer(format).with_filter(filter))
        .try_init()
}
