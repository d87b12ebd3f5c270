//! The migration commands: `migrate-up`, `migrate-down`, `migrate-list`, `migrate-get` and
//! `validate`. They take the same options as River's CLI where River has them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use millrace::{
    Driver, MigrateOpts, MigrateReport, MigrationDirection, MigrationStatus, Migrator, Schema,
    ValidateReport,
};
use millrace_postgres::{ConnectOptions, PgDriver};
use millrace_sqlite::SqliteDriver;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::database::{
    ConnectionArgs, Database, DatabaseUrl, Engine, postgres_options, sqlite_schema,
};

const EXIT_STATUS: &str = "Exit status: 0 on success, 2 on error.";
const VALIDATE_EXIT_STATUS: &str =
    "Exit status: 0 when every migration is applied, 1 when some are pending, 2 on error.";

/// The migration commands, flattened into the `millrace` command's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Apply pending migrations: River's line `main`, then Millrace's line `millrace`.
    ///
    /// A database migrated by River's own tools is taken as it is; only the versions it lacks
    /// are applied, each in its own transaction.
    #[command(after_help = EXIT_STATUS)]
    MigrateUp(MigrateUpArgs),
    /// Revert migrations: one version of line `main` unless told otherwise.
    ///
    /// Reverting line `main` below version 5 first reverts line `millrace` entirely.
    #[command(after_help = EXIT_STATUS)]
    MigrateDown(MigrateDownArgs),
    /// List every migration of every line and whether it is applied.
    #[command(after_help = EXIT_STATUS)]
    MigrateList(MigrateListArgs),
    /// Print the SQL of migrations with the schema filled in, for another migration tool.
    ///
    /// Nothing is read from the database; a database URL is not needed, and when one is given
    /// it only chooses between PostgreSQL's and SQLite's SQL.
    #[command(after_help = EXIT_STATUS)]
    MigrateGet(MigrateGetArgs),
    /// Check that every migration is applied.
    #[command(after_help = VALIDATE_EXIT_STATUS)]
    Validate(ValidateArgs),
}

/// Runs a migration command and returns the process's exit status.
///
/// Errors are returned, with their causes, for the caller to print; they should exit with
/// status 2, as each command's help says.
pub(crate) async fn run(command: MigrateCommand) -> anyhow::Result<ExitCode> {
    match command {
        MigrateCommand::MigrateUp(args) => args.run().await.map(|()| ExitCode::SUCCESS),
        MigrateCommand::MigrateDown(args) => args.run().await.map(|()| ExitCode::SUCCESS),
        MigrateCommand::MigrateList(args) => args.run().await.map(|()| ExitCode::SUCCESS),
        MigrateCommand::MigrateGet(args) => args.run().map(|()| ExitCode::SUCCESS),
        MigrateCommand::Validate(args) => args.run().await,
    }
}

/// Where the database is.
#[derive(Debug, Args)]
pub(crate) struct DatabaseArgs {
    #[command(flatten)]
    connection: Box<ConnectionArgs>,
    /// The schema that holds River's tables. Defaults to public. On SQLite only main, the
    /// file itself, is accepted.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
}

impl DatabaseArgs {
    /// The migrator for the database; `missing` says what a SQLite file that does not exist
    /// yet means.
    async fn migrator(&self, command: &str, missing: Missing) -> anyhow::Result<AnyMigrator> {
        match self.connection.database(command, None)? {
            Database::Postgres(options) => self.postgres(&options).await.map(AnyMigrator::Postgres),
            Database::Sqlite(url) => {
                let schema = sqlite_schema(self.schema.as_deref())?;
                let absent = url.path().is_some_and(|path| !path.exists());
                let driver = match missing {
                    // Nothing is written, so an empty database in memory stands in for the
                    // file, with every migration pending.
                    Missing::Empty if absent => SqliteDriver::open("sqlite::memory:")
                        .await
                        .context("could not open an in-memory SQLite database")?,
                    Missing::Empty | Missing::Fail => url.open(false).await?,
                    Missing::Create => url.open(true).await?,
                };
                Ok(AnyMigrator::Sqlite(Migrator::new(
                    driver.with_schema(schema),
                )))
            }
        }
    }

    async fn postgres(&self, options: &ConnectOptions) -> anyhow::Result<Migrator<PgDriver>> {
        let schema = schema(self.schema.as_deref())?;
        let opts = postgres_options(options).await?;
        let pool = options
            .pool_options()
            .max_connections(2)
            .connect_lazy_with(opts);
        Ok(Migrator::new(PgDriver::new(pool).with_schema(schema)))
    }
}

/// What a SQLite file that does not exist yet means to a command.
#[derive(Debug, Clone, Copy)]
enum Missing {
    /// Create it: migrate-up.
    Create,
    /// An empty database: migrate-up's dry run, which writes nothing.
    Empty,
    /// An error that says so: the commands that only read or revert.
    Fail,
}

/// A migrator on whichever database the URL names.
enum AnyMigrator {
    Postgres(Migrator<PgDriver>),
    Sqlite(Migrator<SqliteDriver>),
}

impl AnyMigrator {
    async fn migrate_up(&self, opts: MigrateOpts) -> millrace::Result<MigrateReport> {
        match self {
            AnyMigrator::Postgres(m) => m.migrate_up(opts).await,
            AnyMigrator::Sqlite(m) => m.migrate_up(opts).await,
        }
    }

    async fn migrate_down(&self, opts: MigrateOpts) -> millrace::Result<MigrateReport> {
        match self {
            AnyMigrator::Postgres(m) => m.migrate_down(opts).await,
            AnyMigrator::Sqlite(m) => m.migrate_down(opts).await,
        }
    }

    async fn list(&self) -> millrace::Result<Vec<MigrationStatus>> {
        match self {
            AnyMigrator::Postgres(m) => m.list().await,
            AnyMigrator::Sqlite(m) => m.list().await,
        }
    }

    async fn validate(&self, main_target: Option<i64>) -> millrace::Result<ValidateReport> {
        match self {
            AnyMigrator::Postgres(m) => m.validate(main_target).await,
            AnyMigrator::Sqlite(m) => m.validate(main_target).await,
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print(out: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("could not write to stdout")
        }
        _ => Ok(()),
    }
}

fn schema(name: Option<&str>) -> anyhow::Result<Schema> {
    match name {
        None => Ok(Schema::default()),
        Some(name) => Schema::new(name).context("--schema"),
    }
}

/// The highest migration version a flag accepts. Versions are numbered with three digits, as
/// River's migration files are (`NNN_name`); the migrator then refuses a version the line
/// does not have, naming the line's range.
const MAX_VERSION: i64 = 999;

/// Options shared by migrate-up and migrate-down.
#[derive(Debug, Args)]
pub(crate) struct StepArgs {
    /// Run at most this many versions (1 to 999).
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=999))]
    max_steps: Option<usize>,
    /// Print the SQL that would run, and run nothing.
    #[arg(long)]
    dry_run: bool,
}

impl StepArgs {
    fn opts(&self, line: Option<&str>, target_version: Option<i64>) -> MigrateOpts {
        let mut opts = MigrateOpts::new().dry_run(self.dry_run);
        if let Some(line) = line {
            opts = opts.line(line);
        }
        if let Some(version) = target_version {
            opts = opts.target_version(version);
        }
        if let Some(steps) = self.max_steps {
            opts = opts.max_steps(steps);
        }
        opts
    }
}

/// Options of migrate-up.
#[derive(Debug, Args)]
pub(crate) struct MigrateUpArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    steps: StepArgs,
    /// Migrate to this version of the line (1 to 999); later versions stay pending (7 keeps
    /// River's schema usable by Go clients older than version 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=MAX_VERSION))]
    target_version: Option<i64>,
    /// Migrate one line only: main (River's schema) or millrace. --target-version then
    /// applies to it.
    #[arg(long, value_name = "LINE")]
    line: Option<String>,
}

impl MigrateUpArgs {
    /// Runs migrate-up.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let missing = if self.steps.dry_run {
            Missing::Empty
        } else {
            Missing::Create
        };
        let migrator = self.db.migrator("migrate-up", missing).await?;
        let report = migrator
            .migrate_up(self.steps.opts(self.line.as_deref(), self.target_version))
            .await?;
        print_report(&report)
    }
}

/// Options of migrate-down.
#[derive(Debug, Args)]
pub(crate) struct MigrateDownArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    steps: StepArgs,
    /// Revert down to this version of the line, which stays applied (1 to 999); 0 or -1
    /// reverts everything.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(-1..=MAX_VERSION)
    )]
    target_version: Option<i64>,
    /// The line to revert: main (River's schema) or millrace. Defaults to main.
    #[arg(long, value_name = "LINE")]
    line: Option<String>,
}

impl MigrateDownArgs {
    /// Runs migrate-down.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let migrator = self.db.migrator("migrate-down", Missing::Fail).await?;
        let report = migrator
            .migrate_down(self.steps.opts(self.line.as_deref(), self.target_version))
            .await?;
        print_report(&report)
    }
}

fn print_report(report: &MigrateReport) -> anyhow::Result<()> {
    let verb = match (report.dry_run, report.direction) {
        (true, MigrationDirection::Up) => "would apply",
        (true, MigrationDirection::Down) => "would revert",
        (false, MigrationDirection::Up) => "applied",
        (false, MigrationDirection::Down) => "reverted",
    };
    let mut out = String::new();
    if report.steps.is_empty() {
        let verb = match report.direction {
            MigrationDirection::Up => "apply",
            MigrationDirection::Down => "revert",
        };
        writeln!(out, "no migrations to {verb}")?;
    }
    for step in &report.steps {
        if report.dry_run {
            writeln!(
                out,
                "-- {verb} {} {:03} {}",
                step.line, step.version, step.name
            )?;
            writeln!(out, "{}\n", step.sql.trim_end())?;
        } else {
            let ms = step.duration.as_millis();
            writeln!(
                out,
                "{verb} {} {:03} {} ({ms} ms)",
                step.line, step.version, step.name
            )?;
        }
    }
    print(&out)
}

/// Options of migrate-list.
#[derive(Debug, Args)]
pub(crate) struct MigrateListArgs {
    #[command(flatten)]
    db: DatabaseArgs,
}

impl MigrateListArgs {
    /// Runs migrate-list.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let migrator = self.db.migrator("migrate-list", Missing::Fail).await?;
        let list = migrator.list().await?;
        let width = list
            .iter()
            .filter_map(|m| m.name)
            .map(str::len)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for m in list {
            let name = m.name.unwrap_or("(unknown to this release)");
            let state = m
                .applied_at
                .map_or_else(|| "pending".to_owned(), |at| format!("applied {at}"));
            writeln!(out, "{:<8} {:03} {name:<width$} {state}", m.line, m.version)?;
        }
        print(&out)
    }
}

/// Options of migrate-get.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["version", "all"])))]
pub(crate) struct MigrateGetArgs {
    /// The versions to print, 1 to 999 (repeat it, or separate them with commas).
    #[arg(
        long,
        value_name = "N",
        value_delimiter = ',',
        value_parser = clap::value_parser!(i64).range(1..=MAX_VERSION)
    )]
    version: Vec<i64>,
    /// Print every version of the line.
    #[arg(long)]
    all: bool,
    /// Print the down SQL (newest version first) instead of the up SQL.
    #[arg(long)]
    down: bool,
    /// The line: main (River's schema) or millrace.
    #[arg(long, value_name = "LINE", default_value = "main")]
    line: String,
    /// The schema to fill in. Defaults to public on PostgreSQL, main on SQLite (where a
    /// schema is the name of an attached database).
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Print the SQL of this database engine. Defaults to that of --database-url when one is
    /// given (or DATABASE_URL is set), else postgres.
    #[arg(long, value_enum, value_name = "ENGINE")]
    driver: Option<Engine>,
    /// A database URL, read only to choose the engine: nothing connects to it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl MigrateGetArgs {
    /// Runs migrate-get.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let engine = match (self.driver, &self.database_url) {
            (Some(engine), _) => engine,
            (None, Some(url)) => DatabaseUrl::parse(url)?.engine(),
            (None, None) => Engine::Postgres,
        };
        let schema = schema(self.schema.as_deref())?;
        // The migrator only renders SQL here, so its pool never connects.
        let out = match engine {
            Engine::Postgres => {
                let pool = PgPoolOptions::new().connect_lazy_with(PgConnectOptions::new());
                self.render(&Migrator::new(PgDriver::new(pool).with_schema(schema)))?
            }
            Engine::Sqlite => {
                let pool = SqlitePoolOptions::new().connect_lazy_with(SqliteConnectOptions::new());
                self.render(&Migrator::new(SqliteDriver::new(pool).with_schema(schema)))?
            }
        };
        print(&out)
    }

    fn render<D: Driver>(&self, migrator: &Migrator<D>) -> anyhow::Result<String> {
        let direction = if self.down {
            MigrationDirection::Down
        } else {
            MigrationDirection::Up
        };
        let mut versions = if self.all {
            migrator
                .versions(&self.line)?
                .into_iter()
                .map(|(version, _)| version)
                .collect()
        } else {
            self.version.clone()
        };
        if self.down {
            versions.sort_unstable_by(|a, b| b.cmp(a));
        } else {
            versions.sort_unstable();
        }
        versions.dedup();
        let names = migrator.versions(&self.line)?;
        let mut out = String::new();
        for version in versions {
            let sql = migrator.sql(&self.line, version, direction)?;
            let name = names
                .iter()
                .find(|(v, _)| *v == version)
                .map_or("", |(_, name)| name);
            writeln!(out, "-- {} {version:03} {name} ({direction})", self.line)?;
            writeln!(out, "{}\n", sql.trim_end())?;
        }
        Ok(out)
    }
}

/// Options of validate.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Require River's line main only up to this version, 1 to 999 (7 for fleets with Go
    /// clients older than version 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=MAX_VERSION))]
    target_version: Option<i64>,
}

impl ValidateArgs {
    /// Runs validate: exit status 1, with the pending versions on stderr, when any are.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let migrator = self.db.migrator("validate", Missing::Fail).await?;
        let report = migrator.validate(self.target_version).await?;
        if report.is_valid() {
            print(&format!("{report}\n"))?;
            Ok(ExitCode::SUCCESS)
        } else {
            // Best effort: the exit status says it too.
            let _ = writeln!(
                std::io::stderr(),
                "{report}; run `millrace migrate-up` to apply them"
            );
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: MigrateCommand,
    }

    fn parse(args: &[&str]) -> Result<MigrateCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("millrace").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn commands_are_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_river_style_options() {
        let MigrateCommand::MigrateDown(down) = parse(&[
            "migrate-down",
            "--database-url",
            "postgres://localhost/app",
            "--schema",
            "jobs",
            "--target-version",
            "-1",
        ])
        .unwrap() else {
            panic!("not migrate-down");
        };
        assert_eq!(down.target_version, Some(-1));
        assert_eq!(down.db.schema.as_deref(), Some("jobs"));

        let MigrateCommand::MigrateGet(get) = parse(&[
            "migrate-get",
            "--version",
            "1,2",
            "--version",
            "5",
            "--down",
        ])
        .unwrap() else {
            panic!("not migrate-get");
        };
        assert_eq!(get.version, [1, 2, 5]);
        assert!(get.down);
        assert!(
            parse(&["migrate-get"]).is_err(),
            "a version or --all is required"
        );
    }

    #[test]
    fn bad_schema_names_are_errors() {
        let err = schema(Some("bad-name")).unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid schema name \"bad-name\""),
            "{err:#}"
        );
    }
}
