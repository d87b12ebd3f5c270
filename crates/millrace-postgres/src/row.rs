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
