//! The chaos soak's jobs and ledger: the kinds of job the soak runs, the tables its workers
//! record their work in, and the checker that reads those tables and `river_job` after the
//! soak (`tests/soak.rs`, `src/bin/millrace-soak-worker/`).
//!
//! Every worker records each attempt it starts in `soak_attempts`, and the work it commits in
//! `soak_effects`, in the same transaction as the job's completion
//! ([`Job::complete_tx`](millrace::Job::complete_tx)): that pairing is what "exactly once" means
//! for work a database can see, and the checker holds the queue to it.

use std::collections::BTreeMap;
use std::fmt;

use millrace::{JobArgs, Schema};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};

macro_rules! soak_kind {
    ($(#[$doc:meta])* $name:ident = $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct $name {
            /// Tells jobs apart.
            pub n: i64,
        }

        impl JobArgs for $name {
            const KIND: &'static str = $kind;
        }
    };
}

soak_kind!(
    /// Completes at its first attempt.
    Plain = "soak_plain"
);
soak_kind!(
    /// Inserted unique by args, again and again: one row per `n`, ever.
    Unique = "soak_unique"
);
soak_kind!(
    /// Snoozes for a second at its first run, then completes.
    Snooze = "soak_snooze"
);
soak_kind!(
    /// Fails its first attempt, then completes.
    Retry = "soak_retry"
);
soak_kind!(
    /// Waits for a remote cancel, which the inserter sends once it runs; ends `cancelled`.
    CancelMidRun = "soak_cancel"
);
soak_kind!(
    /// Inserted by the durable periodic job [`PERIODIC_ID`].
    Periodic = "soak_periodic"
);

/// The id of the soak's durable periodic job.
pub const PERIODIC_ID: &str = "soak_periodic";
/// The name of the soak's persistent worker.
pub const PERSISTENT_NAME: &str = "soak_keeper";

/// The kinds whose work commits with their completion, recorded in `soak_effects`.
pub const EFFECT_KINDS: [&str; 5] = [
    Plain::KIND,
    Unique::KIND,
    Snooze::KIND,
    Retry::KIND,
    Periodic::KIND,
];

/// The kind of the rows the soak writes by raw SQL that no client can decode.
pub const HOSTILE_KIND: &str = "soak_plain";

/// The ledger's tables on PostgreSQL, with the triggers that record each move of the durable
/// periodic schedule and each job it inserted, by transaction, so the checker can tell a
/// skipped or doubled slot.
///
/// # Examples
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let schema = millrace::Schema::new("soak").unwrap();
/// sqlx::raw_sql(sqlx::AssertSqlSafe(millrace_test::soak::ledger_sql_pg(&schema)))
///     .execute(&pool)
///     .await?;
/// # Ok(()) }
/// ```
pub fn ledger_sql_pg(schema: &Schema) -> String {
    let q = |name: &str| schema.qualify(name);
    format!(
        "CREATE TABLE IF NOT EXISTS {inserted} (\
             job_id bigint PRIMARY KEY, kind text NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp());\n\
         CREATE TABLE IF NOT EXISTS {attempts} (\
             run_id text PRIMARY KEY, job_id bigint NOT NULL, attempt int NOT NULL, \
             kind text NOT NULL, process text NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp());\n\
         CREATE TABLE IF NOT EXISTS {effects} (\
             job_id bigint NOT NULL, attempt int NOT NULL, process text NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp());\n\
         CREATE TABLE IF NOT EXISTS {persistent} (\
             process text NOT NULL, job_id bigint NOT NULL, attempt int NOT NULL, \
             started_at timestamptz NOT NULL, last_beat_at timestamptz NOT NULL, \
             PRIMARY KEY (process, job_id, attempt));\n\
         CREATE TABLE IF NOT EXISTS {zombies} (\
             process text NOT NULL, attempt int NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp());\n\
         CREATE TABLE IF NOT EXISTS {moves} (\
             id text NOT NULL, old_next timestamptz NOT NULL, new_next timestamptz NOT NULL, \
             xact xid8 NOT NULL DEFAULT pg_current_xact_id());\n\
         CREATE TABLE IF NOT EXISTS {periodic_jobs} (\
             job_id bigint PRIMARY KEY, xact xid8 NOT NULL DEFAULT pg_current_xact_id());\n\
         CREATE TABLE IF NOT EXISTS {drained} (job_id bigint NOT NULL);\n\
         CREATE OR REPLACE FUNCTION {move_fn}() RETURNS trigger LANGUAGE plpgsql AS $soak$ \
             BEGIN INSERT INTO {moves} (id, old_next, new_next) \
             VALUES (OLD.id, OLD.next_run_at, NEW.next_run_at); RETURN NULL; END $soak$;\n\
         CREATE OR REPLACE TRIGGER soak_periodic_move AFTER UPDATE ON {schedule} \
             FOR EACH ROW WHEN (OLD.next_run_at IS DISTINCT FROM NEW.next_run_at) \
             EXECUTE FUNCTION {move_fn}();\n\
         CREATE OR REPLACE FUNCTION {insert_fn}() RETURNS trigger LANGUAGE plpgsql AS $soak$ \
             BEGIN INSERT INTO {periodic_jobs} (job_id) VALUES (NEW.id); RETURN NULL; END $soak$;\n\
         CREATE OR REPLACE TRIGGER soak_periodic_insert AFTER INSERT ON {job} \
             FOR EACH ROW WHEN (NEW.kind = 'soak_periodic') EXECUTE FUNCTION {insert_fn}();\n",
        inserted = q("soak_inserted"),
        attempts = q("soak_attempts"),
        effects = q("soak_effects"),
        persistent = q("soak_persistent"),
        zombies = q("soak_zombie_beats"),
        moves = q("soak_periodic_moves"),
        periodic_jobs = q("soak_periodic_jobs"),
        drained = q("soak_drained"),
        move_fn = q("soak_periodic_move"),
        insert_fn = q("soak_periodic_insert"),
        schedule = q("millrace_periodic_job"),
        job = q("river_job"),
    )
}

/// The ledger's tables on SQLite (no periodic or persistent checks there).
///
/// # Examples
///
/// ```
/// assert!(millrace_test::soak::ledger_sql_sqlite().contains("soak_effects"));
/// ```
pub fn ledger_sql_sqlite() -> &'static str {
    "CREATE TABLE IF NOT EXISTS soak_inserted (\
         job_id integer PRIMARY KEY, kind text NOT NULL, \
         at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now')));\n\
     CREATE TABLE IF NOT EXISTS soak_attempts (\
         run_id text PRIMARY KEY, job_id integer NOT NULL, attempt integer NOT NULL, \
         kind text NOT NULL, process text NOT NULL, \
         at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now')));\n\
     CREATE TABLE IF NOT EXISTS soak_effects (\
         job_id integer NOT NULL, attempt integer NOT NULL, process text NOT NULL, \
         at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now')));\n\
     CREATE TABLE IF NOT EXISTS soak_filler (data blob NOT NULL);\n"
}

/// What the checker found.
#[derive(Debug, Default, Clone)]
pub struct LedgerReport {
    /// Jobs the inserter committed (including periodic jobs, and the hostile rows).
    pub jobs: i64,
    /// Attempts started, from `soak_attempts`.
    pub attempts: i64,
    /// Jobs not in their expected final state.
    pub lost: Vec<String>,
    /// Jobs whose work committed more than once.
    pub duplicated: Vec<String>,
    /// Completed jobs whose work did not commit with their completion.
    pub unrecorded: Vec<String>,
    /// Persistent-worker intervals of two holders that overlap.
    pub overlaps: Vec<String>,
    /// Periodic slots run twice, skipped, or moved without their job.
    pub periodic: Vec<String>,
    /// Unique args with more than one row.
    pub unique: Vec<String>,
    /// Persistent-instance beats refused by the fence (an instance that ran on unaware of its
    /// lost lease, as after SIGCONT, and whose writes the fence kept out).
    pub zombie_beats: i64,
    /// Persistent-worker holders, over the soak.
    pub persistent_holders: i64,
    /// Periodic jobs inserted.
    pub periodic_jobs: i64,
    /// Periodic jobs the leader inserted after the drain (see [`mark_drained_pg`]), while the
    /// workers were being stopped: not judged, since no one was left to work them.
    pub after_drain: i64,
    /// Jobs per final state.
    pub states: BTreeMap<String, i64>,
}

impl LedgerReport {
    /// Whether every property held.
    pub fn is_clean(&self) -> bool {
        self.violations().is_empty()
    }

    /// Every violation, one a line.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, list) in [
            ("lost (not in its final state)", &self.lost),
            ("work committed twice", &self.duplicated),
            ("completed without its work", &self.unrecorded),
            ("persistent worker in two places", &self.overlaps),
            ("periodic slot", &self.periodic),
            ("unique args with two rows", &self.unique),
        ] {
            out.extend(list.iter().map(|v| format!("{what}: {v}")));
        }
        out
    }
}

impl fmt::Display for LedgerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "jobs {} (periodic {}, {} after the drain), attempts {}, lost {}, duplicated {}, unrecorded {}, \
             persistent overlaps {} over {} holders ({} fenced zombie beats), periodic faults \
             {}, unique faults {}; states {:?}",
            self.jobs,
            self.periodic_jobs,
            self.after_drain,
            self.attempts,
            self.lost.len(),
            self.duplicated.len(),
            self.unrecorded.len(),
            self.overlaps.len(),
            self.persistent_holders,
            self.zombie_beats,
            self.periodic.len(),
            self.unique.len(),
            self.states,
        )
    }
}

/// Marks a PostgreSQL soak drained when no job but the persistent instance is open, and says
/// whether it did.
///
/// The count and the mark (the highest job id) are one statement, so one snapshot: every job
/// at or below the mark was final. The workers' leader keeps inserting the durable periodic
/// job until the workers stop, after the drain; [`check_pg`] does not judge those it finds
/// above the mark and still open, and counts them in [`LedgerReport::after_drain`].
///
/// # Errors
///
/// When the database fails.
///
/// # Examples
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let schema = millrace::Schema::new("soak").unwrap();
/// while !millrace_test::soak::mark_drained_pg(&pool, &schema).await? {
///     tokio::time::sleep(std::time::Duration::from_millis(100)).await;
/// }
/// # Ok(()) }
/// ```
pub async fn mark_drained_pg(pool: &PgPool, schema: &Schema) -> Result<bool, sqlx::Error> {
    let marked = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {drained} (job_id) \
         SELECT coalesce(max(id), 0) FROM {job} \
         HAVING count(*) FILTER (WHERE finalized_at IS NULL \
             AND kind NOT LIKE 'millrace_persistent:%') = 0",
        drained = schema.qualify("soak_drained"),
        job = schema.qualify("river_job"),
    )))
    .execute(pool)
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// Reads the ledger and `river_job` of a PostgreSQL soak and checks every property: each
/// inserted job in its final state (`cancelled` for [`CancelMidRun`], any final state for the
/// hostile rows, `completed` for the rest, periodic jobs included); the work of each job
/// committed once, by its completing attempt; persistent holders never overlapping (tolerance
/// zero: every bound is a timestamp of the one server's clock, written under the fence);
/// each periodic slot moved once, in a chain without gaps, each move with exactly one job;
/// and no two rows for one unique job.
///
/// # Errors
///
/// When the database fails.
///
/// # Examples
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// let schema = millrace::Schema::new("soak").unwrap();
/// let report = millrace_test::soak::check_pg(&pool, &schema).await?;
/// assert!(report.is_clean(), "{:#?}", report.violations());
/// # Ok(()) }
/// ```
pub async fn check_pg(pool: &PgPool, schema: &Schema) -> Result<LedgerReport, sqlx::Error> {
    let q = |name: &str| schema.qualify(name);
    let (job, inserted, attempts, effects, persistent) = (
        q("river_job"),
        q("soak_inserted"),
        q("soak_attempts"),
        q("soak_effects"),
        q("soak_persistent"),
    );
    let (moves, periodic_jobs, zombies, drained) = (
        q("soak_periodic_moves"),
        q("soak_periodic_jobs"),
        q("soak_zombie_beats"),
        q("soak_drained"),
    );
    // Jobs above the drain's mark came after every job was final; only the leader's periodic
    // jobs can, and those still open are left out of `lost` (counted in `after_drain`).
    let after_drain = format!(
        "j.kind = 'soak_periodic' AND j.finalized_at IS NULL \
         AND j.id > (SELECT coalesce(min(job_id), 9223372036854775807) FROM {drained})"
    );
    let rows = |sql: String| async move {
        sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
    };
    let count = |sql: String| async move {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
    };
    let mut report = LedgerReport {
        jobs: count(format!(
            "SELECT (SELECT count(*) FROM {inserted}) + (SELECT count(*) FROM {periodic_jobs})"
        ))
        .await?,
        attempts: count(format!("SELECT count(*) FROM {attempts}")).await?,
        zombie_beats: count(format!("SELECT count(*) FROM {zombies}")).await?,
        persistent_holders: count(format!("SELECT count(*) FROM {persistent}")).await?,
        periodic_jobs: count(format!("SELECT count(*) FROM {periodic_jobs}")).await?,
        after_drain: count(format!("SELECT count(*) FROM {job} j WHERE {after_drain}")).await?,
        ..LedgerReport::default()
    };
    report.lost = rows(format!(
        "WITH expected AS (\
             SELECT job_id, kind FROM {inserted} \
             UNION ALL SELECT job_id, 'soak_periodic' FROM {periodic_jobs}) \
         SELECT format('job %s (%s) is %s', e.job_id, e.kind, coalesce(j.state::text, 'gone')) \
         FROM expected e LEFT JOIN {job} j ON j.id = e.job_id \
         WHERE j.id IS NULL OR NOT CASE \
             WHEN e.kind = 'soak_cancel' THEN j.state = 'cancelled' \
             WHEN e.kind = 'hostile' THEN j.finalized_at IS NOT NULL \
             WHEN {after_drain} THEN true \
             ELSE j.state = 'completed' END \
         ORDER BY e.job_id"
    ))
    .await?;
    report.duplicated = rows(format!(
        "SELECT format('job %s committed %s times (attempts %s, by %s)', job_id, count(*), \
             string_agg(attempt::text, ','), string_agg(process, ',')) \
         FROM {effects} GROUP BY job_id HAVING count(*) > 1 ORDER BY job_id"
    ))
    .await?;
    report.unrecorded = rows(format!(
        "SELECT format('job %s (%s) completed at attempt %s without its work', j.id, j.kind, \
             j.attempt) \
         FROM {job} j WHERE j.state = 'completed' AND j.kind = ANY($soak${{{kinds}}}$soak$) \
         AND NOT EXISTS (SELECT 1 FROM {effects} e WHERE e.job_id = j.id AND e.attempt = j.attempt) \
         ORDER BY j.id",
        kinds = EFFECT_KINDS.join(",")
    ))
    .await?;
    report.overlaps = rows(format!(
        "SELECT format('%s attempt %s [%s, %s] and %s attempt %s [%s, %s]', \
             a.process, a.attempt, a.started_at, a.last_beat_at, \
             b.process, b.attempt, b.started_at, b.last_beat_at) \
         FROM {persistent} a JOIN {persistent} b \
           ON (a.process, a.job_id, a.attempt) < (b.process, b.job_id, b.attempt) \
          AND a.started_at <= b.last_beat_at AND b.started_at <= a.last_beat_at"
    ))
    .await?;
    report.periodic = rows(format!(
        "WITH m AS (SELECT id, old_next, new_next, xact, \
                 lag(new_next) OVER (PARTITION BY id ORDER BY old_next, new_next) AS prev_new, \
                 count(*) OVER (PARTITION BY id, old_next) AS same_slot \
             FROM {moves}) \
         SELECT format('slot %s run %s times', old_next, same_slot) FROM m WHERE same_slot > 1 \
         UNION ALL \
         SELECT format('slot %s skipped: the previous move went to %s', old_next, prev_new) \
             FROM m WHERE prev_new IS NOT NULL AND prev_new <> old_next \
         UNION ALL \
         SELECT format('slot %s moved with %s jobs', m.old_next, \
                 (SELECT count(*) FROM {periodic_jobs} p WHERE p.xact = m.xact)) \
             FROM m WHERE (SELECT count(*) FROM {periodic_jobs} p WHERE p.xact = m.xact) <> 1 \
         UNION ALL \
         SELECT format('periodic job %s inserted without a move', p.job_id) \
             FROM {periodic_jobs} p WHERE NOT EXISTS (SELECT 1 FROM {moves} m WHERE m.xact = p.xact)"
    ))
    .await?;
    report.unique = rows(format!(
        "SELECT format('args %s: %s rows', args, count(*)) FROM {job} \
         WHERE kind = 'soak_unique' GROUP BY args HAVING count(*) > 1"
    ))
    .await?;
    report.states = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(format!(
        "SELECT state::text, count(*) FROM {job} GROUP BY 1"
    )))
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    Ok(report)
}

/// Reads the ledger and `river_job` of a SQLite soak: each inserted job completed (or, for
/// the hostile rows, final), and the work of each committed once, by its completing attempt.
///
/// # Errors
///
/// When the database fails.
///
/// # Examples
///
/// ```no_run
/// # async fn example(pool: sqlx::SqlitePool) -> Result<(), sqlx::Error> {
/// let report = millrace_test::soak::check_sqlite(&pool).await?;
/// assert!(report.is_clean(), "{:#?}", report.violations());
/// # Ok(()) }
/// ```
pub async fn check_sqlite(pool: &SqlitePool) -> Result<LedgerReport, sqlx::Error> {
    let rows = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await
    };
    let mut report = LedgerReport {
        jobs: sqlx::query_scalar("SELECT count(*) FROM soak_inserted")
            .fetch_one(pool)
            .await?,
        attempts: sqlx::query_scalar("SELECT count(*) FROM soak_attempts")
            .fetch_one(pool)
            .await?,
        ..LedgerReport::default()
    };
    report.lost = rows(
        "SELECT 'job ' || i.job_id || ' (' || i.kind || ') is ' || coalesce(j.state, 'gone') \
         FROM soak_inserted i LEFT JOIN river_job j ON j.id = i.job_id \
         WHERE j.id IS NULL OR NOT CASE \
             WHEN i.kind = 'hostile' THEN j.finalized_at IS NOT NULL \
             ELSE j.state = 'completed' END \
         ORDER BY i.job_id",
    )
    .await?;
    report.duplicated = rows(
        "SELECT 'job ' || job_id || ' committed ' || count(*) || ' times (attempts ' \
             || group_concat(attempt) || ', by ' || group_concat(process) || ')' \
         FROM soak_effects GROUP BY job_id HAVING count(*) > 1 ORDER BY job_id",
    )
    .await?;
    report.unrecorded = rows(
        "SELECT 'job ' || j.id || ' (' || j.kind || ') completed at attempt ' || j.attempt \
             || ' without its work' \
         FROM river_job j WHERE j.state = 'completed' \
         AND j.kind IN ('soak_plain', 'soak_retry') \
         AND NOT EXISTS (SELECT 1 FROM soak_effects e WHERE e.job_id = j.id AND e.attempt = j.attempt) \
         ORDER BY j.id",
    )
    .await?;
    report.states =
        sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM river_job GROUP BY 1")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    Ok(report)
}

/// The page limit every SQLite connection of the soak opens with (`max_page_count`, 4 KiB
/// pages: 32 MiB): the disk-full fault fills the file to it.
pub const SQLITE_MAX_PAGES: u32 = 8_192;
