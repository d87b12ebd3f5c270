//! The `millrace` command: migrations, validation and a live demo.

mod demo;
mod migrate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Millrace: a fast, River-compatible job queue for PostgreSQL.
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
    /// Insert and work a stream of example jobs, printing what happens.
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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate(command) => migrate::run(command).await,
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
