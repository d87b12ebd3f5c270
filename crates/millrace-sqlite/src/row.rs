//! Reading `river_job`, `river_queue` and `river_migration` rows.

use jiff::Timestamp;
use millrace_driver::{DriverError, LeaderRow, QueueRow, Result};
use millrace_types::{JobId, JobRead, JobRow, JobState, UndecodableJob, UniqueStates};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, TypeInfo, ValueRef};

/// The column list every statement returning jobs selects, with `prefix` before each column
/// (`""` or `"j."`). JSON columns are JSONB blobs from River's version 7 on (text before it);
/// `json()` reads either as text.
pub(crate) fn job_columns(prefix: &str) -> String {
    let plain = [
        "id",
        "attempt",
        "attempted_at",
        "created_at",
        "finalized_at",
        "kind",
        "max_attempts",
        "priority",
        "queue",
        "scheduled_at",
        "state",
        "unique_key",
        "unique_states",
    ];
    let json = ["args", "attempted_by", "errors", "metadata", "tags"];
    plain
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .chain(json.iter().map(|c| format!("json({prefix}{c}) AS {c}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_error(column: &'static str, message: impl ToString) -> DriverError {
    DriverError::Decode {
        column,
        message: message.to_string(),
    }
}

fn get<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T>
where
    T: Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|err| decode_error(column, err))
}

/// A timestamp column, in any form SQLite may hold one (see [`crate::time`]).
pub(crate) fn time_opt(row: &SqliteRow, column: &'static str) -> Result<Option<Timestamp>> {
    let value = row
        .try_get_raw(column)
        .map_err(|err| decode_error(column, err))?;
    if value.is_null() {
        return Ok(None);
    }
    let kind = value.type_info().name().to_owned();
    let decoded = match kind.as_str() {
        "INTEGER" => {
            let seconds =
                <i64 as Decode<Sqlite>>::decode(value).map_err(|err| decode_error(column, err))?;
            crate::time::decode_unix(seconds)
        }
        "REAL" => {
            let days =
                <f64 as Decode<Sqlite>>::decode(value).map_err(|err| decode_error(column, err))?;
            crate::time::decode_julian(days)
        }
        _ => {
            let text =
                <&str as Decode<Sqlite>>::decode(value).map_err(|err| decode_error(column, err))?;
            return crate::time::decode_text(text)
                .map(Some)
                .map_err(|err| decode_error(column, format!("{text:?}: {err}")));
        }
    };
    decoded.map(Some).map_err(|err| decode_error(column, err))
}

/// A timestamp column that is never null.
pub(crate) fn time(row: &SqliteRow, column: &'static str) -> Result<Timestamp> {
    time_opt(row, column)?.ok_or_else(|| decode_error(column, "unexpected null"))
}

fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &'static str) -> Result<T> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|err| decode_error(column, err))
}

fn json_opt<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    column: &'static str,
) -> Result<Option<T>> {
    let text: Option<String> = get(row, column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|err| decode_error(column, err)))
        .transpose()
}

fn small(row: &SqliteRow, column: &'static str) -> Result<i16> {
    let value: i64 = get(row, column)?;
    i16::try_from(value).map_err(|_| decode_error(column, format!("{value} is out of range")))
}

/// Reads a `state` column.
pub(crate) fn parse_state(row: &SqliteRow) -> Result<JobState> {
    let state: String = get(row, "state")?;
    state
        .parse::<JobState>()
        .map_err(|err| decode_error("state", err))
}

/// Decodes one leader row.
pub(crate) fn leader_row(row: &SqliteRow) -> Result<LeaderRow> {
    Ok(LeaderRow {
        leader_id: get(row, "leader_id")?,
        elected_at: time(row, "elected_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

/// Decodes one `river_queue` row.
pub(crate) fn queue_row(row: &SqliteRow) -> Result<QueueRow> {
    Ok(QueueRow {
        name: get(row, "name")?,
        created_at: time(row, "created_at")?,
        metadata: json(row, "metadata")?,
        paused_at: time_opt(row, "paused_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// Decodes one `river_job` row selected with [`job_columns`], for verbs that return one row: a
/// row that does not decode is [`DriverError::UndecodableJob`].
pub(crate) fn job_row(row: &SqliteRow) -> Result<JobRow> {
    decoded(job_read(row)?)
}

/// A row of [`job_read`] as the result of a verb that returns one row. Writes read their row
/// with [`job_read`] and call this once their transaction is committed, so that a row that
/// does not decode fails the reply, not the write.
pub(crate) fn decoded(read: JobRead) -> Result<JobRow> {
    read.map_err(|job| DriverError::UndecodableJob(Box::new(job)))
}

/// Decodes one `river_job` row selected with [`job_columns`], for verbs that return many: a row
/// that does not decode is reported on its own, with the columns every row can be read by, so
/// that it never fails the others. Fails only when even those cannot be read.
pub(crate) fn job_read(row: &SqliteRow) -> Result<JobRead> {
    let err = match decode_job(row) {
        Ok(job) => return Ok(Ok(job)),
        Err(err) => err,
    };
    Ok(Err(UndecodableJob {
        id: JobId(get(row, "id")?),
        kind: get(row, "kind")?,
        queue: get(row, "queue")?,
        state: parse_state(row)?,
        attempt: small(row, "attempt")?,
        max_attempts: small(row, "max_attempts")?,
        error: err.to_string(),
    }))
}

fn decode_job(row: &SqliteRow) -> Result<JobRow> {
    let unique_states: Option<i64> = get(row, "unique_states")?;
    let unique_states = unique_states
        .map(|bits| {
            u8::try_from(bits)
                .map(UniqueStates::from_bits)
                .map_err(|_| decode_error("unique_states", format!("{bits} is not a bit mask")))
        })
        .transpose()?;
    // Arrays written by hand may hold `null`s: they carry nothing, so they are skipped rather
    // than failing the row.
    Ok(JobRow {
        id: JobId(get(row, "id")?),
        args: json(row, "args")?,
        attempt: small(row, "attempt")?,
        attempted_at: time_opt(row, "attempted_at")?,
        attempted_by: without_nulls(json_opt(row, "attempted_by")?),
        created_at: time(row, "created_at")?,
        errors: without_nulls(json_opt(row, "errors")?),
        finalized_at: time_opt(row, "finalized_at")?,
        kind: get(row, "kind")?,
        max_attempts: small(row, "max_attempts")?,
        metadata: json(row, "metadata")?,
        priority: small(row, "priority")?,
        queue: get(row, "queue")?,
        scheduled_at: time(row, "scheduled_at")?,
        state: parse_state(row)?,
        tags: without_nulls(json_opt(row, "tags")?),
        unique_key: get(row, "unique_key")?,
        unique_states,
    })
}

fn without_nulls<T>(values: Option<Vec<Option<T>>>) -> Vec<T> {
    values.into_iter().flatten().flatten().collect()
}
