//! Writing to stdout and stderr without panicking.
//!
//! `println!` panics when its reader went away (`millrace … | head`), because Rust ignores
//! SIGPIPE and the write fails with `EPIPE`. Lines go through [`line()`] instead, which turns a
//! closed stdout into [`StdoutClosed`]: an error that unwinds the command through its cleanup
//! (the benchmark drops its schema) and that `main` turns into a quiet exit with status 0.

use std::fmt;
use std::io::Write as _;

/// Stdout was closed by its reader: the command stops, quietly and successfully.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `err` is, or was caused by, a closed stdout.
pub(crate) fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// Writes one line to stdout, flushed, so a reader sees each line as it happens.
///
/// # Errors
///
/// [`StdoutClosed`] when the reader went away; any other write error with context.
pub(crate) fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("could not write to stdout")),
    }
}

/// The error and its causes, as anyhow's `{err:#}` prints them, less the causes that only
/// repeat the end of the message before them: sqlx's "error returned from database: X" has X
/// itself as its source, which `{err:#}` would print twice.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string();
        if !message.ends_with(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        cause = err.source();
    }
    message
}

/// Writes one line to stderr; a closed stderr loses the line rather than stopping the command.
pub(crate) fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// `println!` that returns [`StdoutClosed`] instead of panicking: `outln!("{x}")?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::note(format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_repeats_its_wrapper_is_printed_once() {
        let db = std::io::Error::other("role \"x\" does not exist");
        let err = anyhow::Error::new(db)
            .context("error returned from database: role \"x\" does not exist")
            .context("could not connect");
        assert_eq!(
            chain(err.as_ref()),
            "could not connect: error returned from database: role \"x\" does not exist"
        );
    }

    #[test]
    fn a_closed_stdout_is_found_under_context() {
        let err = anyhow::Error::new(StdoutClosed).context("printing the summary");
        assert!(is_stdout_closed(&err));
        assert!(!is_stdout_closed(&anyhow::anyhow!("other")));
    }
}
