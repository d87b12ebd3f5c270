//! Reading `river_job` rows.

use jiff::Timestamp;
use millrace_driver::{DriverError, LeaderRow, QueueRow, Result};
use millrace_types::{AttemptError, JobId, JobRow, JobState, UniqueStates};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

/// The columns of `river_job` that [`job_columns`] selects, in order. [`job_row`] reads them
/// by position, which spares a name lookup per column per row on the fetch path.
const JOB_COLUMNS: [&str; 18] = [
    "id",
    "args",
    "attempt",
    "attempted_at",
    "attempted_by",
    "created_at",
    "errors",
    "finalized_at",
    "kind",
    "max_attempts",
    "metadata",
    "priority",
    "queue",
    "scheduled_at",
    "tags",
    "unique_key",
    "state",
    "unique_states",
];

/// The column list every statement returning jobs selects, with `prefix` before each column
/// (`""` or `"j."`). The state and the unique mask are cast to types sqlx reads without extra
/// features. Statements may add columns after these.
pub(crate) fn job_columns(prefix: &str) -> String {
    JOB_COLUMNS
        .iter()
        .map(|c| match *c {
            "state" => format!("{prefix}state::text AS state"),
            "unique_states" => format!("{prefix}unique_states::int AS unique_states"),
            c => format!("{prefix}{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `row` starts with the columns of [`job_columns`], in order.
pub(crate) fn check_job_columns(row: &PgRow) -> Result<()> {
    let columns = row.columns();
    for (index, expected) in JOB_COLUMNS.iter().enumerate() {
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

/// Reads column `index` of a job row, which must be `JOB_COLUMNS[index]`.
fn at<'r, T>(row: &'r PgRow, index: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    debug_assert_eq!(
        sqlx::Column::name(&row.columns()[index]),
        JOB_COLUMNS[index],
        "job rows are selected with job_columns"
    );
    row.try_get(index).map_err(|err| DriverError::Decode {
        column: JOB_COLUMNS[index],
        message: err.to_string(),
    })
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
    let state: String = get(row, "state")?;
    state
        .parse::<JobState>()
        .map_err(|err| DriverError::Decode {
            column: "state",
            message: err.to_string(),
        })
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

/// Decodes one `river_job` row selected with [`job_columns`].
pub(crate) fn job_row(row: &PgRow) -> Result<JobRow> {
    let state: &str = at(row, 16)?;
    let state = state
        .parse::<JobState>()
        .map_err(|err| DriverError::Decode {
            column: "state",
            message: err.to_string(),
        })?;
    let errors: Option<Vec<Json<AttemptError>>> = at(row, 6)?;
    let unique_states: Option<i32> = at(row, 17)?;
    Ok(JobRow {
        id: JobId(at(row, 0)?),
        args: at::<Json<serde_json::Value>>(row, 1)?.0,
        attempt: at(row, 2)?,
        attempted_at: at::<Option<jiff_sqlx::Timestamp>>(row, 3)?.map(time),
        attempted_by: at::<Option<Vec<String>>>(row, 4)?.unwrap_or_default(),
        created_at: time(at(row, 5)?),
        errors: errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.0)
            .collect(),
        finalized_at: at::<Option<jiff_sqlx::Timestamp>>(row, 7)?.map(time),
        kind: at(row, 8)?,
        max_attempts: at(row, 9)?,
        metadata: at::<Json<serde_json::Value>>(row, 10)?.0,
        priority: at(row, 11)?,
        queue: at(row, 12)?,
        scheduled_at: time(at(row, 13)?),
        state,
        tags: at(row, 14)?,
        unique_key: at(row, 15)?,
        unique_states: unique_states.map(|bits| UniqueStates::from_bits(bits as u8)),
    })
}

/// The columns a fetch returns, with `prefix` before each. A fetched job is running and not
/// finalized, so neither its state nor `finalized_at` is sent, and the unique mask comes back
/// raw: each cast or column left out is work PostgreSQL does not do for every fetched row.
pub(crate) fn fetch_columns(prefix: &str) -> String {
    FETCH_COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const FETCH_COLUMNS: [&str; 15] = [
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

/// Decodes one row of a fetch, selected with [`fetch_columns`] followed by `unique_states`.
pub(crate) fn fetched_job_row(row: &PgRow) -> Result<JobRow> {
    let get = |index: usize| {
        debug_assert_eq!(
            sqlx::Column::name(&row.columns()[index]),
            FETCH_COLUMNS.get(index).copied().unwrap_or("unique_states"),
        );
        index
    };
    let decode = |column: &'static str| {
        move |err: sqlx::Error| DriverError::Decode {
            column,
            message: err.to_string(),
        }
    };
    let errors: Option<Vec<Json<AttemptError>>> = row.try_get(get(6)).map_err(decode("errors"))?;
    Ok(JobRow {
        id: JobId(row.try_get(get(0)).map_err(decode("id"))?),
        args: row
            .try_get::<Json<serde_json::Value>, _>(get(1))
            .map_err(decode("args"))?
            .0,
        attempt: row.try_get(get(2)).map_err(decode("attempt"))?,
        attempted_at: row
            .try_get::<Option<jiff_sqlx::Timestamp>, _>(get(3))
            .map_err(decode("attempted_at"))?
            .map(time),
        attempted_by: row
            .try_get::<Option<Vec<String>>, _>(get(4))
            .map_err(decode("attempted_by"))?
            .unwrap_or_default(),
        created_at: time(row.try_get(get(5)).map_err(decode("created_at"))?),
        errors: errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.0)
            .collect(),
        finalized_at: None,
        kind: row.try_get(get(7)).map_err(decode("kind"))?,
        max_attempts: row.try_get(get(8)).map_err(decode("max_attempts"))?,
        metadata: row
            .try_get::<Json<serde_json::Value>, _>(get(9))
            .map_err(decode("metadata"))?
            .0,
        priority: row.try_get(get(10)).map_err(decode("priority"))?,
        queue: row.try_get(get(11)).map_err(decode("queue"))?,
        scheduled_at: time(row.try_get(get(12)).map_err(decode("scheduled_at"))?),
        state: JobState::Running,
        tags: row.try_get(get(13)).map_err(decode("tags"))?,
        unique_key: row.try_get(get(14)).map_err(decode("unique_key"))?,
        unique_states: raw_unique_states(row, get(15))?,
    })
}

/// Reads a `bit(8)` column in PostgreSQL's binary format: the bit count as a 4-byte integer,
/// then the bits, first bit highest, as `bit(8)::int` numbers them.
fn raw_unique_states(row: &PgRow, index: usize) -> Result<Option<UniqueStates>> {
    let value = row.try_get_raw(index).map_err(|err| DriverError::Decode {
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
