//! Reading `river_job` rows.

use jiff::Timestamp;
use millrace_driver::{DriverError, LeaderRow, QueueRow, Result};
use millrace_types::{AttemptError, JobId, JobRow, JobState, UniqueStates};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

/// The column list every statement returning jobs selects, with `prefix` before each column
/// (`""` or `"j."`). The state and the unique mask are cast to types sqlx reads without extra
/// features.
pub(crate) fn job_columns(prefix: &str) -> String {
    [
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
    ]
    .iter()
    .map(|c| format!("{prefix}{c}"))
    .chain([
        format!("{prefix}state::text AS state"),
        format!("{prefix}unique_states::int AS unique_states"),
    ])
    .collect::<Vec<_>>()
    .join(", ")
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
    let state = parse_state(row)?;
    let errors: Option<Vec<Json<AttemptError>>> = get(row, "errors")?;
    let unique_states: Option<i32> = get(row, "unique_states")?;
    Ok(JobRow {
        id: JobId(get(row, "id")?),
        args: get::<Json<serde_json::Value>>(row, "args")?.0,
        attempt: get(row, "attempt")?,
        attempted_at: get::<Option<jiff_sqlx::Timestamp>>(row, "attempted_at")?.map(time),
        attempted_by: get::<Option<Vec<String>>>(row, "attempted_by")?.unwrap_or_default(),
        created_at: time(get(row, "created_at")?),
        errors: errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.0)
            .collect(),
        finalized_at: get::<Option<jiff_sqlx::Timestamp>>(row, "finalized_at")?.map(time),
        kind: get(row, "kind")?,
        max_attempts: get(row, "max_attempts")?,
        metadata: get::<Json<serde_json::Value>>(row, "metadata")?.0,
        priority: get(row, "priority")?,
        queue: get(row, "queue")?,
        scheduled_at: time(get(row, "scheduled_at")?),
        state,
        tags: get(row, "tags")?,
        unique_key: get(row, "unique_key")?,
        unique_states: unique_states.map(|bits| UniqueStates::from_bits(bits as u8)),
    })
}
