//! Applies and reverts River's migrations and Millrace's own, keeping River's bookkeeping.
//!
//! Two migration lines share River's `river_migration` table: `main`, River's schema (versions
//! 1 to 8), and `millrace`, Millrace's own `millrace_*` tables. Each version runs in its own
//! transaction together with its `river_migration` row, so a database is never left between
//! two versions, and River's tools and Millrace read the same history: a database River
//! migrated is adopted as it is.

use std::fmt;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use millrace_driver::{Driver, DriverError, Executor, Migration};

use crate::error::{Error, Result};
use crate::migration_direction::MigrationDirection;

/// River's migration line, which holds River's schema.
pub const LINE_MAIN: &str = "main";

/// Millrace's migration line, which holds Millrace's own `millrace_*` tables.
pub const LINE_MILLRACE: &str = "millrace";

/// Every line, in the order they are migrated up.
const LINES: [&str; 2] = [LINE_MAIN, LINE_MILLRACE];

/// The version of line `main` that adds `river_migration.line`. Before it, `river_migration`
/// can record line `main` only, so other lines need it; reverting it needs the other lines
/// gone.
const MAIN_LINE_COLUMN_VERSION: i64 = 5;

/// What [`Migrator::migrate_up`] and [`Migrator::migrate_down`] do.
///
/// The default migrates every line all the way up, or line `main` one version down.
///
/// ```
/// use millrace::MigrateOpts;
///
/// // Stop at River's version 7, for a fleet that still runs Go clients older than version 8.
/// let opts = MigrateOpts::new().target_version(7);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct MigrateOpts {
    line: Option<String>,
    target_version: Option<i64>,
    max_steps: Option<usize>,
    dry_run: bool,
}

impl MigrateOpts {
    /// The default options: every line up to its newest version, or line `main` one version
    /// down.
    ///
    /// ```
    /// let opts = millrace::MigrateOpts::new();
    /// # let _ = opts;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Migrates one line only, `main` or `millrace`.
    ///
    /// By default `migrate_up` migrates line `main`, then line `millrace`, and `migrate_down`
    /// migrates line `main`. An unknown line is an [`Error::Migration`] when the options are
    /// used.
    ///
    /// ```
    /// let opts = millrace::MigrateOpts::new().line("main");
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.line = Some(line.into());
        self
    }

    /// The version to migrate to, of line `main` unless [`MigrateOpts::line`] names another.
    ///
    /// Up, versions after the target stay pending; a target already applied changes nothing,
    /// as in River. Down, the target is the version left applied, and must be applied; `0`
    /// (or River's `-1`) reverts every version. Without a target, up goes to the newest
    /// version and down goes one version down.
    ///
    /// A target of line `main` below 5 leaves line `millrace` out when migrating up, since
    /// `river_migration` cannot record it before `main` version 5, and migrating down past
    /// `main` version 5 first reverts line `millrace` entirely.
    ///
    /// ```
    /// // Remove River's schema and Millrace's tables altogether.
    /// let opts = millrace::MigrateOpts::new().target_version(0);
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn target_version(mut self, version: i64) -> Self {
        self.target_version = Some(version);
        self
    }

    /// Runs at most this many versions of the line asked for (when migrating line `main` down,
    /// the versions of line `millrace` it must revert first are not counted).
    ///
    /// Defaults to no limit, except that down without a target runs one version.
    ///
    /// ```
    /// // Two versions down.
    /// let opts = millrace::MigrateOpts::new().max_steps(2);
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = Some(steps);
        self
    }

    /// Reports the versions and their SQL without running them.
    ///
    /// Defaults to `false`.
    ///
    /// ```
    /// let opts = millrace::MigrateOpts::new().dry_run(true);
    /// # let _ = opts;
    /// ```
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// One version that a migration ran, or would run in a dry run.
///
/// ```
/// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// let report = migrator.migrate_up(millrace::MigrateOpts::new()).await?;
/// for step in &report.steps {
///     println!("{} {:03} {} in {:?}", step.line, step.version, step.name, step.duration);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MigratedVersion {
    /// The line.
    pub line: &'static str,
    /// The version.
    pub version: i64,
    /// The migration's name, such as `bulk_unique`.
    pub name: &'static str,
    /// The SQL, with the schema filled in.
    pub sql: String,
    /// How long the version took to run, zero in a dry run.
    pub duration: Duration,
}

/// What a migration ran, in the order it ran.
///
/// ```
/// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// let report = migrator.migrate_up(millrace::MigrateOpts::new()).await?;
/// if report.steps.is_empty() {
///     println!("already up to date");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MigrateReport {
    /// Up or down.
    pub direction: MigrationDirection,
    /// Whether this was a dry run, which changed nothing.
    pub dry_run: bool,
    /// The versions run, oldest first up, newest first down.
    pub steps: Vec<MigratedVersion>,
}

/// A known or recorded migration and whether it is applied.
///
/// ```
/// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// for m in migrator.list().await? {
///     let state = m.applied_at.map_or("pending".to_owned(), |at| at.to_string());
///     println!("{} {:03} {} {state}", m.line, m.version, m.name.unwrap_or("(unknown)"));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The line.
    pub line: &'static str,
    /// The version.
    pub version: i64,
    /// The migration's name; `None` for a version that a newer release of River or Millrace
    /// recorded and this one does not know.
    pub name: Option<&'static str>,
    /// When it was applied; `None` when it is pending.
    pub applied_at: Option<Timestamp>,
}

impl MigrationStatus {
    /// Whether the version is applied.
    ///
    /// ```
    /// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let pending = migrator.list().await?.iter().filter(|m| !m.is_applied()).count();
    /// # Ok(()) }
    /// ```
    pub fn is_applied(&self) -> bool {
        self.applied_at.is_some()
    }
}

/// The result of [`Migrator::validate`]: the versions still to apply.
///
/// ```
/// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
/// let report = migrator.validate(None).await?;
/// if !report.is_valid() {
///     eprintln!("{report}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidateReport {
    /// The versions not yet applied, by line then version.
    pub pending: Vec<MigrationStatus>,
}

impl ValidateReport {
    /// Whether every version asked for is applied.
    ///
    /// ```
    /// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// assert!(migrator.validate(None).await?.is_valid());
    /// # Ok(()) }
    /// ```
    pub fn is_valid(&self) -> bool {
        self.pending.is_empty()
    }
}

impl fmt::Display for ValidateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pending.is_empty() {
            return f.write_str("all migrations are applied");
        }
        f.write_str("pending migrations:")?;
        for (i, m) in self.pending.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {:03}", m.line, m.version)?;
            if let Some(name) = m.name {
                write!(f, " ({name})")?;
            }
        }
        Ok(())
    }
}

/// Applies and reverts migrations, and reports which are applied.
///
/// Mirrors River's `rivermigrate`: each version runs in its own transaction, which also inserts
/// or deletes its `river_migration` row, so a failure leaves the versions before it applied
/// and nothing of the failed one. Versions already applied, by River's tools or by Millrace,
/// are skipped. River's tables and `river_migration` come out identical to what River's own
/// CLI produces.
///
/// Two migrators must not run on one schema at the same time: like River's, this one takes no
/// lock.
///
/// ```no_run
/// use millrace::{MigrateOpts, Migrator};
/// use millrace_postgres::PgDriver;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
/// let migrator = Migrator::new(PgDriver::new(pool));
/// let report = migrator.migrate_up(MigrateOpts::new()).await?;
/// println!("applied {} versions", report.steps.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Migrator<D: Driver> {
    driver: D,
}

impl<D: Driver> Migrator<D> {
    /// A migrator for the driver's database and schema.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
    /// let driver = millrace_postgres::PgDriver::new(pool).with_schema(millrace::Schema::new("jobs")?);
    /// let migrator = millrace::Migrator::new(driver);
    /// # Ok(()) }
    /// ```
    pub fn new(driver: D) -> Self {
        Migrator { driver }
    }

    /// The driver.
    ///
    /// ```no_run
    /// # fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) {
    /// use millrace::Driver as _;
    ///
    /// println!("migrating schema {}", migrator.driver().schema().name());
    /// # }
    /// ```
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// Applies pending versions: line `main` (River's schema), then line `millrace`.
    ///
    /// A version recorded by a newer release, which this one does not know, is left alone.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] for an unknown line or target version, or when line `millrace` is
    /// asked for alone before line `main` reaches version 5; [`Error::MigrationStep`] when a
    /// version fails, in which case the versions before it stay applied; [`Error::Driver`] when
    /// the applied versions cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future rolls back the version in progress; the versions before it stay
    /// applied, and migrating again continues from there.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::MigrateOpts;
    ///
    /// // Everything, for a fleet of Millrace clients and current River clients.
    /// migrator.migrate_up(MigrateOpts::new()).await?;
    /// // Or stop River's schema at version 7, where Go clients before version 8 still run.
    /// migrator.migrate_up(MigrateOpts::new().target_version(7)).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(skip_all, fields(schema = %self.driver.schema().name()), err)]
    pub async fn migrate_up(&self, opts: MigrateOpts) -> Result<MigrateReport> {
        let explicit = opts.line.as_deref().map(known_line).transpose()?;
        let lines: &[&'static str] = match &explicit {
            Some(line) => std::slice::from_ref(line),
            None => &LINES,
        };
        let mut report = MigrateReport {
            direction: MigrationDirection::Up,
            dry_run: opts.dry_run,
            steps: Vec::new(),
        };
        for &line in lines {
            let migrations = self.migrations(line)?;
            // The target belongs to line main unless a line was named.
            let target = if explicit.is_some() || line == LINE_MAIN {
                opts.target_version
            } else {
                None
            };
            if let Some(target) = target {
                find(line, migrations, target)?;
            }
            let applied = self.applied(line).await?;
            let mut pending: Vec<&Migration> = migrations
                .iter()
                .filter(|m| !applied.contains(&m.version))
                .collect();
            if let Some(target) = target {
                if applied.contains(&target) {
                    // As in River: a target already applied is a no-op, even with gaps below.
                    pending.clear();
                } else {
                    pending.retain(|m| m.version <= target);
                }
            }
            if let Some(max) = opts.max_steps {
                pending.truncate(max.saturating_sub(report.steps.len()));
            }
            if line != LINE_MAIN && !pending.is_empty() {
                let mut main = self.applied(LINE_MAIN).await?;
                // A dry run has applied nothing, but would have.
                main.extend(
                    report
                        .steps
                        .iter()
                        .filter(|s| s.line == LINE_MAIN)
                        .map(|s| s.version),
                );
                if !main.contains(&MAIN_LINE_COLUMN_VERSION) {
                    if explicit.is_some() {
                        return Err(Error::Migration(format!(
                            "line {line} needs line {LINE_MAIN} at version {MAIN_LINE_COLUMN_VERSION} or later: \
                             river_migration records other lines only from then on"
                        )));
                    }
                    tracing::info!(line, "left out: line main is below version 5");
                    continue;
                }
            }
            for m in pending {
                report.steps.extend(
                    self.run(line, m, MigrationDirection::Up, opts.dry_run)
                        .await?,
                );
            }
        }
        Ok(report)
    }

    /// Reverts applied versions of line `main`, or of the line [`MigrateOpts::line`] names:
    /// one version by default, down to and excluding [`MigrateOpts::target_version`] when it is
    /// set (`0` reverts every version).
    ///
    /// Without a target it reverts one version, as River's CLI does. Reverting line `main`
    /// below version 5 first reverts line `millrace` entirely: River's version 5 cannot record
    /// other lines, and refuses to run while `river_migration` holds any. PostgreSQL cannot
    /// drop an enum value, so reverting version 4 leaves `pending` in `river_job_state`, as
    /// River does.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] for an unknown line or target, a target that is not applied, or a
    /// line whose newest applied version this release does not know (a newer release applied
    /// it, and only that release can revert it); [`Error::MigrationStep`] when a version fails,
    /// in which case the versions reverted before it stay reverted; [`Error::Driver`] when the
    /// applied versions cannot be read.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future rolls back the version in progress; the versions before it stay
    /// reverted.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::MigrateOpts;
    ///
    /// // Back to River's version 7.
    /// migrator.migrate_down(MigrateOpts::new().target_version(7)).await?;
    /// // Remove everything: line millrace, then River's schema.
    /// migrator.migrate_down(MigrateOpts::new().target_version(0)).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(skip_all, fields(schema = %self.driver.schema().name()), err)]
    pub async fn migrate_down(&self, opts: MigrateOpts) -> Result<MigrateReport> {
        let line = known_line(opts.line.as_deref().unwrap_or(LINE_MAIN))?;
        let migrations = self.migrations(line)?;
        let applied = self.applied(line).await?;
        let plan = down_plan(
            line,
            migrations,
            &applied,
            opts.target_version,
            opts.max_steps,
        )?;

        let mut report = MigrateReport {
            direction: MigrationDirection::Down,
            dry_run: opts.dry_run,
            steps: Vec::new(),
        };
        if line == LINE_MAIN && plan.iter().any(|m| m.version == MAIN_LINE_COLUMN_VERSION) {
            for other in LINES.into_iter().filter(|&l| l != LINE_MAIN) {
                let other_migrations = self.migrations(other)?;
                let other_applied = self.applied(other).await?;
                for m in down_plan(other, other_migrations, &other_applied, Some(0), None)? {
                    report.steps.extend(
                        self.run(other, m, MigrationDirection::Down, opts.dry_run)
                            .await?,
                    );
                }
            }
        }
        for m in plan {
            report.steps.extend(
                self.run(line, m, MigrationDirection::Down, opts.dry_run)
                    .await?,
            );
        }
        Ok(report)
    }

    /// Every known version of every line, then any recorded version this release does not
    /// know, each with when it was applied.
    ///
    /// # Errors
    ///
    /// [`Error::Driver`] when the applied versions cannot be read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let applied = migrator.list().await?.into_iter().filter(|m| m.is_applied()).count();
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<MigrationStatus>> {
        let mut list = Vec::new();
        for line in LINES {
            let migrations = self.migrations(line)?;
            let rows = self.driver.executor().migration_get_all(line).await?;
            let applied_at = |version: i64| {
                rows.iter()
                    .find(|r| r.version == version)
                    .map(|r| r.created_at)
            };
            list.extend(migrations.iter().map(|m| MigrationStatus {
                line,
                version: m.version,
                name: Some(m.name),
                applied_at: applied_at(m.version),
            }));
            list.extend(
                rows.iter()
                    .filter(|r| !migrations.iter().any(|m| m.version == r.version))
                    .map(|r| MigrationStatus {
                        line,
                        version: r.version,
                        name: None,
                        applied_at: Some(r.created_at),
                    }),
            );
        }
        Ok(list)
    }

    /// The versions still to apply: every version of every line, or of line `main` up to
    /// `main_target` only (and then of line `millrace` only when `main_target` is 5 or more,
    /// as [`Migrator::migrate_up`] would leave it out otherwise).
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] when `main_target` is not a version of line `main`;
    /// [`Error::Driver`] when the applied versions cannot be read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// // A fleet that stays on River's version 7.
    /// let report = migrator.validate(Some(7)).await?;
    /// assert!(report.is_valid(), "{report}");
    /// # Ok(()) }
    /// ```
    pub async fn validate(&self, main_target: Option<i64>) -> Result<ValidateReport> {
        if let Some(target) = main_target {
            find(LINE_MAIN, self.migrations(LINE_MAIN)?, target)?;
        }
        let mut pending = Vec::new();
        for line in LINES {
            let target = if line == LINE_MAIN { main_target } else { None };
            if line != LINE_MAIN && main_target.is_some_and(|t| t < MAIN_LINE_COLUMN_VERSION) {
                continue;
            }
            let applied = self.applied(line).await?;
            pending.extend(
                self.migrations(line)?
                    .iter()
                    .filter(|m| target.is_none_or(|t| m.version <= t))
                    .filter(|m| !applied.contains(&m.version))
                    .map(|m| MigrationStatus {
                        line,
                        version: m.version,
                        name: Some(m.name),
                        applied_at: None,
                    }),
            );
        }
        Ok(ValidateReport { pending })
    }

    /// The SQL of one version, with the driver's schema filled in, for running it with
    /// another migration tool. It does not touch the database.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] for an unknown line or version.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// use millrace::MigrationDirection;
    ///
    /// let sql = migrator.sql("main", 6, MigrationDirection::Up)?;
    /// assert!(sql.contains("river_job_state_in_bitmask"));
    /// # Ok(()) }
    /// ```
    pub fn sql(&self, line: &str, version: i64, direction: MigrationDirection) -> Result<String> {
        let line = known_line(line)?;
        let m = find(line, self.migrations(line)?, version)?;
        let schema = self.driver.schema();
        Ok(match direction {
            MigrationDirection::Up => m.up_sql(schema),
            MigrationDirection::Down => m.down_sql(schema),
        })
    }

    /// The known versions of a line, oldest first, with their names.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] for an unknown line.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(migrator: millrace::Migrator<millrace_postgres::PgDriver>) -> millrace::Result<()> {
    /// let latest = migrator.versions("main")?.last().map(|&(version, _)| version);
    /// assert_eq!(latest, Some(8));
    /// # Ok(()) }
    /// ```
    pub fn versions(&self, line: &str) -> Result<Vec<(i64, &'static str)>> {
        let line = known_line(line)?;
        Ok(self
            .migrations(line)?
            .iter()
            .map(|m| (m.version, m.name))
            .collect())
    }

    fn migrations(&self, line: &'static str) -> Result<&'static [Migration]> {
        self.driver.migrations(line).ok_or_else(|| {
            Error::Migration(format!(
                "the {} driver has no migration line {line}",
                self.driver.name()
            ))
        })
    }

    async fn applied(&self, line: &str) -> Result<Vec<i64>> {
        let rows = self.driver.executor().migration_get_all(line).await?;
        Ok(rows.into_iter().map(|r| r.version).collect())
    }

    /// Runs one version and records it, in one transaction.
    async fn run(
        &self,
        line: &'static str,
        m: &Migration,
        direction: MigrationDirection,
        dry_run: bool,
    ) -> Result<Option<MigratedVersion>> {
        let schema = self.driver.schema();
        let sql = match direction {
            MigrationDirection::Up => m.up_sql(schema),
            MigrationDirection::Down => m.down_sql(schema),
        };
        let started = Instant::now();
        if !dry_run {
            let step_error = |source: DriverError| Error::MigrationStep {
                line: line.to_owned(),
                version: m.version,
                direction,
                source,
            };
            let mut tx = self.driver.begin().await.map_err(step_error)?;
            {
                let mut exec = self.driver.conn_executor(D::tx_conn(&mut tx));
                // Migrators started at the same moment take turns, and each looks again under
                // the lock: a version another one applied (or reverted) meanwhile is skipped.
                exec.migration_lock().await.map_err(step_error)?;
                let done = exec
                    .migration_get_all(line)
                    .await
                    .map_err(step_error)?
                    .iter()
                    .any(|row| row.version == m.version);
                if done == (direction == MigrationDirection::Up) {
                    tracing::info!(line, version = m.version, %direction, "already migrated by another migrator");
                    return Ok(None);
                }
                exec.exec_script(&sql).await.map_err(step_error)?;
                // After the SQL, as in River: version 1 creates the table its row goes in, and
                // version 5 changes its shape (the driver writes whichever shape it finds).
                match direction {
                    MigrationDirection::Up => exec.migration_insert(line, m.version).await,
                    MigrationDirection::Down => exec.migration_delete(line, m.version).await,
                }
                .map_err(step_error)?;
            }
            D::commit(tx).await.map_err(step_error)?;
            tracing::info!(line, version = m.version, name = m.name, %direction, "migrated");
        }
        Ok(Some(MigratedVersion {
            line,
            version: m.version,
            name: m.name,
            sql,
            duration: if dry_run {
                Duration::ZERO
            } else {
                started.elapsed()
            },
        }))
    }
}

/// The line named, as one of the known lines.
fn known_line(line: &str) -> Result<&'static str> {
    LINES.into_iter().find(|&l| l == line).ok_or_else(|| {
        Error::Migration(format!(
            "unknown migration line {line:?}; the lines are {}",
            LINES.join(" and ")
        ))
    })
}

fn find(line: &str, migrations: &'static [Migration], version: i64) -> Result<&'static Migration> {
    migrations
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| {
            let latest = migrations.last().map_or(0, |m| m.version);
            Error::Migration(format!(
                "line {line} has no version {version}; its versions are 1 to {latest}"
            ))
        })
}

/// The applied versions to revert, newest first.
fn down_plan(
    line: &str,
    migrations: &'static [Migration],
    applied: &[i64],
    target: Option<i64>,
    max_steps: Option<usize>,
) -> Result<Vec<&'static Migration>> {
    let floor = match target {
        // River's CLI spells "revert everything" -1.
        Some(0 | -1) => 0,
        Some(target) => {
            find(line, migrations, target)?;
            if !applied.contains(&target) {
                return Err(Error::Migration(format!(
                    "line {line} version {target} is not applied, so it cannot be the version left applied"
                )));
            }
            target
        }
        None => 0,
    };
    if let Some(&unknown) = applied
        .iter()
        .filter(|&&v| v > floor && !migrations.iter().any(|m| m.version == v))
        .max()
    {
        return Err(Error::Migration(format!(
            "line {line} has version {unknown} applied, which this release does not know; \
             revert it with the release that applied it"
        )));
    }
    let mut plan: Vec<&'static Migration> = migrations
        .iter()
        .rev()
        .filter(|m| m.version > floor && applied.contains(&m.version))
        .collect();
    let steps = max_steps.or(if target.is_none() { Some(1) } else { None });
    if let Some(steps) = steps {
        plan.truncate(steps);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    static FIVE: &[Migration] = &[
        Migration {
            version: 1,
            name: "a",
            up: "",
            down: "",
        },
        Migration {
            version: 2,
            name: "b",
            up: "",
            down: "",
        },
        Migration {
            version: 3,
            name: "c",
            up: "",
            down: "",
        },
        Migration {
            version: 4,
            name: "d",
            up: "",
            down: "",
        },
        Migration {
            version: 5,
            name: "e",
            up: "",
            down: "",
        },
    ];

    fn versions(plan: Result<Vec<&'static Migration>>) -> Vec<i64> {
        plan.unwrap().iter().map(|m| m.version).collect()
    }

    #[test]
    fn down_defaults_to_one_step() {
        assert_eq!(
            versions(down_plan("main", FIVE, &[1, 2, 3, 4, 5], None, None)),
            [5]
        );
        assert_eq!(
            versions(down_plan("main", FIVE, &[1, 2, 3, 4, 5], None, Some(2))),
            [5, 4]
        );
        assert!(versions(down_plan("main", FIVE, &[], None, None)).is_empty());
    }

    #[test]
    fn down_target_is_the_version_left_applied() {
        let all = [1, 2, 3, 4, 5];
        assert_eq!(
            versions(down_plan("main", FIVE, &all, Some(3), None)),
            [5, 4]
        );
        assert_eq!(
            versions(down_plan("main", FIVE, &all, Some(0), None)),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            versions(down_plan("main", FIVE, &all, Some(-1), None)),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            versions(down_plan("main", FIVE, &all, Some(0), Some(2))),
            [5, 4]
        );
        assert!(versions(down_plan("main", FIVE, &all, Some(5), None)).is_empty());
    }

    #[test]
    fn down_refuses_targets_not_applied_and_unknown_versions() {
        let err = down_plan("main", FIVE, &[1, 2], Some(4), None).unwrap_err();
        assert!(
            err.to_string().contains("version 4 is not applied"),
            "{err}"
        );
        let err = down_plan("main", FIVE, &[1, 2], Some(9), None).unwrap_err();
        assert!(err.to_string().contains("has no version 9"), "{err}");
        let err = down_plan("main", FIVE, &[1, 2, 3, 4, 5, 6], None, None).unwrap_err();
        assert!(err.to_string().contains("version 6 applied"), "{err}");
        // Below the target, unknown versions do not matter.
        assert!(down_plan("main", FIVE, &[1, 2, 3, 4, 5], Some(5), None).is_ok());
    }

    #[test]
    fn unknown_lines_are_errors() {
        let err = known_line("pro").unwrap_err();
        assert_eq!(
            err.to_string(),
            "migration failed: unknown migration line \"pro\"; the lines are main and millrace"
        );
        assert_eq!(known_line("millrace").unwrap(), LINE_MILLRACE);
    }

    #[test]
    fn validate_report_lists_pending_versions() {
        let report = ValidateReport {
            pending: vec![MigrationStatus {
                line: LINE_MAIN,
                version: 8,
                name: Some("job_id_autoincrement"),
                applied_at: None,
            }],
        };
        assert!(!report.is_valid());
        assert_eq!(
            report.to_string(),
            "pending migrations: main 008 (job_id_autoincrement)"
        );
        assert_eq!(
            ValidateReport { pending: vec![] }.to_string(),
            "all migrations are applied"
        );
    }
}
