//! The `millrace` command: migrations, validation, benchmarks, a live demo, health and the
//! operator commands (jobs, queues, periodic, persistent, leader, clients), on PostgreSQL
//! or a SQLite file.

mod admin;
mod bench;
mod completions;
mod database;
mod demo;
mod fleet;
mod health;
mod jobs;
#[cfg(feature = "metrics")]
mod metrics;
mod migrate;
mod output;
mod pooler;
mod queues;
mod sequences;
mod signals;
mod table;
mod ui;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use millrace::logging::{self, LogFormat};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::prelude::*;

use crate::output::errln;

/// Millrace: a fast, River-compatible job queue for PostgreSQL and SQLite.
#[derive(Debug, Parser)]
#[command(name = "millrace", version, about, long_about = None)]
struct Cli {
    /// How log lines on standard error are written: `text` (coloured only on a terminal and
    /// without NO_COLOR) or `json` (one object a line, the job's id, kind, queue and attempt
    /// under "span"). RUST_LOG chooses what is logged.
    #[arg(long, global = true, env = "MILLRACE_LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Migrate(migrate::MigrateCommand),
    /// Measure insert and work rates, or latencies at a steady rate, on PostgreSQL or SQLite.
    #[command(
        after_help = "The last line is machine-readable: jobs_per_sec=… work_jobs_per_sec=… \
insert_jobs_per_sec=… pickup_p95_ms=… p50_ms=… p95_ms=… p99_ms=… cpu_us_per_job=… peak_rss_mb=… \
(fields a mode does not measure are left out). Exit status: 0 on success (and when stdout is \
closed early, as by `| head`), 2 on error or a flag out of range, 130 after SIGINT and 143 after \
SIGTERM; the benchmark's own schema or file is deleted on every one of these. \
`millrace bench persistent` measures persistent-worker failover instead (PostgreSQL only); see \
its --help."
    )]
    Bench(bench::BenchCommand),
    /// Insert and work a stream of example jobs, printing what happens: on a SQLite file in
    /// the current folder unless given a database URL.
    #[command(
        after_help = "Exit status: 0 after a clean stop (Ctrl-C or SIGTERM, or stdout closed early, \
as by `| head`), 2 on error or a flag out of range."
    )]
    Demo(demo::DemoArgs),
    /// Check that the database is reachable and migrated (and, with --require-leader, that a
    /// River leader runs its maintenance): for a readiness probe or a deploy script.
    #[command(
        after_help = "Exit status: 0 when healthy, 1 when not (an unreachable database \
included), 2 on bad input. --json prints one object: healthy, database_reachable, \
database_round_trip_ms, database_error, pending_migrations, river_leader."
    )]
    Health(health::HealthArgs),
    /// Inspect and act on jobs: list, get, retry, cancel, delete, insert.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Inspect queues (counts by state, lag, paused) and pause or resume them.
    #[command(subcommand)]
    Queues(queues::QueuesCommand),
    /// Inspect sequences: their head jobs, backlogs, and which a failed job blocks.
    #[command(subcommand)]
    Sequences(sequences::SequencesCommand),
    /// Inspect the durable schedules of periodic jobs.
    #[command(subcommand)]
    Periodic(fleet::PeriodicCommand),
    /// Inspect persistent worker instances.
    #[command(subcommand)]
    Persistent(fleet::PersistentCommand),
    /// Show River's leader and Millrace's lease holder.
    #[command(
        after_help = "Exit status: 0 when a River leader holds an unexpired lease, 1 when none does, 2 on bad input or a connection error. --json prints one object: now, river, millrace (each null or leader_id, elected_at, expires_at, expired)."
    )]
    Leader(fleet::ReadArgs),
    /// List the fleet's clients (Millrace heartbeats, and any client holding running jobs)
    /// and what they run.
    #[command(
        after_help = "Exit status: 0 when listed, 1 when there are none, 2 on bad input or a connection error. --json prints one object a line (see docs/cli.md)."
    )]
    Clients(fleet::ReadArgs),
    /// Serve the web dashboard (jobs, queues, periodic and persistent workers, the fleet) on
    /// 127.0.0.1:9090, or --listen ADDR.
    #[command(
        after_help = "Listens on loopback unless given --token or --basic-auth. Stops cleanly on \
SIGINT or SIGTERM (exit status 0); exit status 2 on bad flags, an address in use or a database \
that cannot be reached. docs/dashboard.md describes the pages and the security model."
    )]
    Ui(ui::UiArgs),
    /// Print a shell completion script: millrace completions bash > /etc/bash_completion.d/millrace
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into --dir.
    Man(completions::ManArgs),
}

/// The log filter when `RUST_LOG` is not set.
///
/// The benchmark measures the queue, not the logger: by default it leaves out the span each
/// job runs in (about a microsecond of formatting per job), keeping warnings and errors. The
/// span's target is a constant of the library's, so this filter cannot go stale when the
/// runtime's files move (it did once: the redesign moved the span's module, and the benchmark
/// measured the span until this was noticed).
fn default_filter(bench: bool) -> String {
    if bench {
        format!("warn,millrace=info,{}=warn", millrace::JOB_SPAN_TARGET)
    } else {
        "warn,millrace=info".to_owned()
    }
}

fn main() -> ExitCode {
    // Clap prints a flag out of range with the flag and the accepted range, and exits 2.
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter(matches!(cli.command, Command::Bench(_))).into());
    tracing_subscriber::registry()
        .with(
            logging::layer(cli.log_format)
                .with_filter(filter)
                .with_filter(filter_fn(|meta| !is_returned_error(meta))),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            errln!("error: could not start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate(command) => migrate::run(command).await,
            Command::Bench(command) => command.run().await,
            Command::Demo(args) => args.run().await.map(|()| ExitCode::SUCCESS),
            Command::Health(args) => args.run().await,
            Command::Jobs(command) => command.run().await,
            Command::Queues(command) => command.run().await,
            Command::Sequences(command) => command.run().await,
            Command::Periodic(command) => command.run().await,
            Command::Persistent(command) => command.run().await,
            Command::Leader(args) => args.run_leader().await,
            Command::Clients(args) => args.run_clients().await,
            Command::Ui(args) => args.run().await,
            Command::Completions(args) => args.run(Cli::command()),
            Command::Man(args) => args.run(Cli::command()),
        }
    });
    match result {
        Ok(code) => code,
        // The reader chose to stop reading (`| head`): not a failure of the command. Status 0,
        // as ripgrep does, rather than the 141 of a process SIGPIPE kills, which would fail
        // scripts under `set -o pipefail` for reading only what they needed.
        Err(err) if output::is_stdout_closed(&err) => ExitCode::SUCCESS,
        Err(err) => match signals::interrupted_by(&err) {
            Some(signal) => {
                errln!("{err:#}");
                ExitCode::from(signal.exit_code())
            }
            None => {
                errln!("error: {}", output::chain(err.as_ref()));
                ExitCode::from(2)
            }
        },
    }
}

/// Events logged by `#[tracing::instrument(err)]` on the library's entry points (the
/// migrator's): an ERROR event whose only field is `error`. The command prints the same
/// error, with its causes, as it exits, so the log line would say it twice.
fn is_returned_error(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event()
        && *meta.level() == tracing::Level::ERROR
        && meta.target().starts_with("millrace")
        && meta.fields().len() == 1
        && meta.fields().field("error").is_some()
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::default_filter;

    /// Whether the job span, and an info event of the runtime, are enabled under `filter`.
    fn enabled(filter: String) -> (bool, bool) {
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new(filter));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: millrace::JOB_SPAN_TARGET, "job");
            let event =
                tracing::enabled!(target: "millrace::runtime::producer", tracing::Level::INFO);
            (!span.is_disabled(), event)
        })
    }

    #[test]
    fn the_benchmark_leaves_out_the_job_span_and_keeps_the_rest() {
        assert_eq!(enabled(default_filter(true)), (false, true));
        assert_eq!(enabled(default_filter(false)), (true, true));
    }
}
