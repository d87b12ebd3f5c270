//! The `millrace` command: migrations, validation, benchmarks and a live demo, on PostgreSQL
//! or a SQLite file.

mod bench;
mod bench_persistent;
mod database;
mod demo;
mod migrate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Millrace: a fast, River-compatible job queue for PostgreSQL and SQLite.
#[derive(Debug, Parser)]
#[command(name = "millrace", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Migrate(migrate::MigrateCommand),
    /// Measure insert and work rates, or latencies at a steady rate, on PostgreSQL or SQLite.
    #[command(
        after_help = "The last line is machine-readable: jobs_per_sec=… work_jobs_per_sec=… \
insert_jobs_per_sec=… pickup_p95_ms=… p50_ms=… p95_ms=… p99_ms=… cpu_us_per_job=… peak_rss_mb=… \
(fields a mode does not measure are left out). Exit status: 0 on success, 2 on error. \
`millrace bench persistent` measures persistent-worker failover instead (PostgreSQL only); see \
its --help."
    )]
    Bench(bench::BenchCommand),
    /// Insert and work a stream of example jobs, printing what happens: on a SQLite file in
    /// the current folder unless given a database URL.
    #[command(after_help = "Exit status: 0 after a clean stop, 2 on error.")]
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,millrace=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate(command) => migrate::run(command).await,
            Command::Bench(command) => command.run().await,
            Command::Demo(args) => args.run().await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
