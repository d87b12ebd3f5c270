//! Reading `river_job` rows.

use jiff::Timestamp;
use millrace_driver::{DriverError, LeaderRow, QueueRow, Result};
use millrace_types::{
    AttemptError, JobId, JobRead, JobRow, JobState, UndecodableJob, UniqueStates,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

/// The columns every job row starts with, read by position (which spares a name lookup per
/// column per row on the fetch path).
const SHARED_COLUMNS: [&str; 15] = [
    "id",
    "args",
    "attempt",
    "attempted_at",
    "attempted_by",
    "created_at",
    "errors",
    "kind",
    "max_attempts",
    "metadata",
    "priority",
    "queue",
    "scheduled_at",
    "tags",
    "unique_key",
];

/// The columns after [`SHARED_COLUMNS`] in [`job_columns`]. The state and the unique mask are
/// cast to types sqlx reads without extra features.
const STORED_TAIL: [&str; 3] = ["finalized_at", "state", "unique_states"];

/// How a statement's job rows end after [`SHARED_COLUMNS`].
#[derive(Clone, Copy)]
enum Tail {
    /// [`job_columns`]: `finalized_at`, the state as text, the unique mask as an int.
    Stored,
    /// [`fetch_columns`]: the unique mask raw. A fetched job is running and not finalized, so
    /// its state and `finalized_at` are not sent, and nothing is cast: less work for
    /// PostgreSQL on every fetched row.
    Fetched,
}

/// The column list every statement returning jobs selects, with `prefix` before each column
/// (`""` or `"j."`). Statements may add columns after these.
pub(crate) fn job_columns(prefix: &str) -> String {
    SHARED_COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .chain([
            format!("{prefix}finalized_at"),
            format!("{prefix}state::text AS state"),
            format!("{prefix}unique_states::int AS unique_states"),
        ])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns a fetch returns, with `prefix` before each; see [`Tail::Fetched`].
pub(crate) fn fetch_columns(prefix: &str) -> String {
    SHARED_COLUMNS
        .iter()
        .chain(&["unique_states"])
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `row` starts with the columns of [`job_columns`], in order.
pub(crate) fn check_job_columns(row: &PgRow) -> Result<()> {
    let columns = row.columns();
    for (index, expected) in SHARED_COLUMNS.iter().chain(&STORED_TAIL).enumerate() {
        let found = columns.get(index).map(sqlx::Column::name);
        if found != Some(*expected) {
            return Err(DriverError::Decode {
                column: expected,
                message: format!(
                    "expected column {index} to be {expected:?}, found {found:?}; select the \
                     columns with job_columns"
                ),
            });
        }
    }
    Ok(())
}

/// Decodes one `river_job` row selected with [`job_columns`], for verbs that return one row: a
/// row that does not decode is [`DriverError::UndecodableJob`].
pub(crate) fn job_row(row: &PgRow) -> Result<JobRow> {
    job_read(row)?.map_err(|job| DriverError::UndecodableJob(Box::new(job)))
}

/// Decodes one `river_job` row selected with [`job_columns`], for verbs that return many: a row
/// that does not decode is reported on its own, so that it never fails the others.
pub(crate) fn job_read(row: &PgRow) -> Result<JobRead> {
    read_job(row, Tail::Stored)
}

/// Decodes one row of a fetch, selected with [`fetch_columns`]; see [`job_read`].
pub(crate) fn fetched_job_read(row: &PgRow) -> Result<JobRead> {
    read_job(row, Tail::Fetched)
}

/// Decodes a job row, or, when some column holds a value no client should have written, reads
/// the columns whose types admit no such value and reports the row as undecodable. Fails only
/// when even those cannot be read: a statement that did not select the job's columns.
fn read_job(row: &PgRow, tail: Tail) -> Result<JobRead> {
    let err = match decode_job(row, tail) {
        Ok(job) => return Ok(Ok(job)),
        Err(err) => err,
    };
    let at = |index| Column { row, index };
    let state = match tail {
        Tail::Stored => parse_state_text(
            Column {
                row,
                index: SHARED_COLUMNS.len() + 1,
            }
            .get("state")?,
        )?,
        Tail::Fetched => JobState::Running,
    };
    Ok(Err(UndecodableJob {
        id: JobId(at(0).get("id")?),
        kind: at(7).get("kind")?,
        queue: at(11).get("queue")?,
        state,
        attempt: at(2).get("attempt")?,
        max_attempts: at(8).get("max_attempts")?,
        error: err.to_string(),
    }))
}

fn parse_state_text(state: &str) -> Result<JobState> {
    state
        .parse::<JobState>()
        .map_err(|err| DriverError::Decode {
            column: "state",
            message: err.to_string(),
        })
}

fn decode_job(row: &PgRow, tail: Tail) -> Result<JobRow> {
    let at = |index| Column { row, index };
    let tail_at = |offset: usize| Column {
        row,
        index: SHARED_COLUMNS.len() + offset,
    };
    let (finalized_at, state, unique_states) = match tail {
        Tail::Stored => {
            let state = parse_state_text(tail_at(1).get("state")?)?;
            let bits: Option<i32> = tail_at(2).get("unique_states")?;
            (
                tail_at(0)
                    .get::<Option<jiff_sqlx::Timestamp>>("finalized_at")?
                    .map(time),
                state,
                bits.map(|bits| UniqueStates::from_bits(bits as u8)),
            )
        }
        Tail::Fetched => (None, JobState::Running, raw_unique_states(tail_at(0))?),
    };
    // Arrays may hold NULLs (SQL's, or JSON's `null` in `errors`) when written by hand: they
    // carry nothing, so they are skipped rather than failing the row.
    let errors: Option<Vec<Option<Json<Option<AttemptError>>>>> = at(6).get("errors")?;
    Ok(JobRow {
        id: JobId(at(0).get("id")?),
        args: at(1).get::<Json<serde_json::Value>>("args")?.0,
        attempt: at(2).get("attempt")?,
        attempted_at: at(3)
            .get::<Option<jiff_sqlx::Timestamp>>("attempted_at")?
            .map(time),
        attempted_by: without_nulls(at(4).get::<Option<Vec<Option<String>>>>("attempted_by")?),
        created_at: time(at(5).get("created_at")?),
        errors: errors
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.and_then(|e| e.0))
            .collect(),
        finalized_at,
        kind: at(7).get("kind")?,
        max_attempts: at(8).get("max_attempts")?,
        metadata: at(9).get::<Json<serde_json::Value>>("metadata")?.0,
        priority: at(10).get("priority")?,
        queue: at(11).get("queue")?,
        scheduled_at: time(at(12).get("scheduled_at")?),
        state,
        tags: without_nulls(at(13).get::<Option<Vec<Option<String>>>>("tags")?),
        unique_key: at(14).get("unique_key")?,
        unique_states,
    })
}

fn without_nulls(values: Option<Vec<Option<String>>>) -> Vec<String> {
    values.into_iter().flatten().flatten().collect()
}

/// One column of a job row, read by position.
#[derive(Clone, Copy)]
struct Column<'r> {
    row: &'r PgRow,
    index: usize,
}

impl<'r> Column<'r> {
    /// Decodes the column, which must be named `name` (checked in debug builds).
    fn get<T>(self, name: &'static str) -> Result<T>
    where
        T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        debug_assert_eq!(
            sqlx::Column::name(&self.row.columns()[self.index]),
            name,
            "job rows are selected with job_columns or fetch_columns"
        );
        self.row
            .try_get(self.index)
            .map_err(|err| DriverError::Decode {
                column: name,
                message: err.to_string(),
            })
    }
}

/// Reads a `bit(8)` column in PostgreSQL's binary format: the bit count as a 4-byte integer,
/// then the bits, first bit highest, as `bit(8)::int` numbers them.
fn raw_unique_states(column: Column<'_>) -> Result<Option<UniqueStates>> {
    debug_assert_eq!(
        sqlx::Column::name(&column.row.columns()[column.index]),
        "unique_states"
    );
    let value = column
        .row
        .try_get_raw(column.index)
        .map_err(|err| DriverError::Decode {
            column: "unique_states",
            message: err.to_string(),
        })?;
    if sqlx::ValueRef::is_null(&value) {
        return Ok(None);
    }
    match value.as_bytes() {
        Ok([0, 0, 0, 8, bits]) => Ok(Some(UniqueStates::from_bits(*bits))),
        other => Err(DriverError::Decode {
            column: "unique_states",
            message: format!("expected bit(8) in binary format, got {other:?}"),
        }),
    }
}

fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|err| DriverError::Decode {
        column,
        message: err.to_string(),
    })
}

fn time(t: jiff_sqlx::Timestamp) -> Timestamp {
    t.to_jiff()
}

/// Reads the `state` column, selected as text.
pub(crate) fn parse_state(row: &PgRow) -> Result<JobState> {
    parse_state_text(get(row, "state")?)
}

/// Decodes one leader row.
pub(crate) fn leader_row(row: &PgRow) -> Result<LeaderRow> {
    Ok(LeaderRow {
        leader_id: get(row, "leader_id")?,
        elected_at: time(get(row, "elected_at")?),
        expires_at: time(get(row, "expires_at")?),
    })
}

/// Decodes one `river_queue` row.
pub(crate) fn queue_row(row: &PgRow) -> Result<QueueRow> {
    Ok(QueueRow {
        name: get(row, "name")?,
        created_at: time(get(row, "created_at")?),
        metadata: get::<Json<serde_json::Value>>(row, "metadata")?.0,
        paused_at: get::<Option<jiff_sqlx::Timestamp>>(row, "paused_at")?.map(time),
        updated_at: time(get(row, "updated_at")?),
    })
}
