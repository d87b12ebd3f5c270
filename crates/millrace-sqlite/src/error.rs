//! Classifying sqlx's SQLite errors into the driver's errors, with a typed fault for the
//! failures of the database file that a user must tell apart.

use std::error::Error as StdError;
use std::fmt;

use millrace_driver::DriverError;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failure of the SQLite database file (or of its lock), as opposed to one of a statement.
///
/// Driver errors carry it as a [`SqliteFaultError`] in their source chain;
/// [`SqliteFault::of`] finds it in any error, such as a `millrace::Error`.
///
/// ```
/// use millrace_sqlite::SqliteFault;
///
/// assert_eq!(SqliteFault::Full.to_string(), "the database or the disk is full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqliteFault {
    /// Another connection held the lock longer than the busy timeout (`SQLITE_BUSY`,
    /// `SQLITE_LOCKED`). Retrying may succeed, so the driver reports it as a connection error.
    Busy,
    /// The file, or the connection, is read-only (`SQLITE_READONLY`), e.g. opened with
    /// `mode=ro`.
    ReadOnly,
    /// The file is damaged or is no SQLite database (`SQLITE_CORRUPT`, `SQLITE_NOTADB`).
    Corrupt,
    /// The disk, or the database's `max_page_count`, is full (`SQLITE_FULL`).
    Full,
    /// The file cannot be opened (`SQLITE_CANTOPEN`): a missing directory, or a missing file
    /// that was not to be created.
    CantOpen,
    /// The operating system failed a read or write (`SQLITE_IOERR`).
    Io,
}

impl SqliteFault {
    /// The fault of a SQLite result code (primary or extended), if it is one.
    fn from_code(code: i32) -> Option<Self> {
        // Extended codes keep the primary code in their low byte.
        match code & 0xff {
            5 | 6 => Some(SqliteFault::Busy),
            8 => Some(SqliteFault::ReadOnly),
            10 => Some(SqliteFault::Io),
            11 | 26 => Some(SqliteFault::Corrupt),
            13 => Some(SqliteFault::Full),
            14 => Some(SqliteFault::CantOpen),
            _ => None,
        }
    }

    /// The fault in `err` or anywhere in its source chain.
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_sqlite::SqliteDriver>) {
    /// # #[derive(serde::Serialize)] struct Ping {}
    /// # impl millrace::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// use millrace_sqlite::SqliteFault;
    ///
    /// if let Err(err) = client.insert(Ping {}, None).await {
    ///     if SqliteFault::of(&err) == Some(SqliteFault::Full) {
    ///         eprintln!("free some disk space");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn of(err: &(dyn StdError + 'static)) -> Option<Self> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(fault) = e.downcast_ref::<SqliteFaultError>() {
                return Some(fault.fault);
            }
            current = e.source();
        }
        None
    }
}

impl fmt::Display for SqliteFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SqliteFault::Busy => "the database is locked by another connection",
            SqliteFault::ReadOnly => "the database is read-only",
            SqliteFault::Corrupt => "the database file is corrupt or is not a database",
            SqliteFault::Full => "the database or the disk is full",
            SqliteFault::CantOpen => "the database file cannot be opened",
            SqliteFault::Io => "reading or writing the database file failed",
        })
    }
}

/// A driver error caused by a [`SqliteFault`]; its source is SQLite's own message.
#[derive(Debug, thiserror::Error)]
#[error("{fault}")]
pub struct SqliteFaultError {
    fault: SqliteFault,
    #[source]
    source: BoxError,
}

impl SqliteFaultError {
    /// The fault.
    pub fn fault(&self) -> SqliteFault {
        self.fault
    }
}

/// Whether `err` is SQLite's "database is locked" (after the busy timeout ran out).
pub(crate) fn is_busy(err: &sqlx::Error) -> bool {
    fault_of(err) == Some(SqliteFault::Busy)
}

fn fault_of(err: &sqlx::Error) -> Option<SqliteFault> {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .and_then(SqliteFault::from_code),
        _ => None,
    }
}

/// Classifies a sqlx error: a lost connection, a crashed worker thread and a busy database
/// may succeed on retry and are connection errors; file faults are typed; the rest are the
/// statement's own.
pub(crate) fn db_error(err: sqlx::Error) -> DriverError {
    let fault = fault_of(&err);
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => DriverError::Connection(Box::new(err)),
        sqlx::Error::Database(db) => {
            // The database's own error, not sqlx's wrapper, whose message repeats it.
            let source: BoxError = db;
            match fault {
                Some(SqliteFault::Busy) => DriverError::Connection(Box::new(SqliteFaultError {
                    fault: SqliteFault::Busy,
                    source,
                })),
                Some(fault) => DriverError::Database(Box::new(SqliteFaultError { fault, source })),
                None => DriverError::Database(source),
            }
        }
        other => DriverError::Database(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_codes_map_to_their_primary_fault() {
        assert_eq!(SqliteFault::from_code(5), Some(SqliteFault::Busy));
        // SQLITE_BUSY_SNAPSHOT
        assert_eq!(SqliteFault::from_code(517), Some(SqliteFault::Busy));
        // SQLITE_READONLY_DBMOVED
        assert_eq!(SqliteFault::from_code(1032), Some(SqliteFault::ReadOnly));
        assert_eq!(SqliteFault::from_code(26), Some(SqliteFault::Corrupt));
        assert_eq!(SqliteFault::from_code(13), Some(SqliteFault::Full));
        // SQLITE_CONSTRAINT_CHECK is the statement's fault, not the file's.
        assert_eq!(SqliteFault::from_code(275), None);
    }

    #[test]
    fn faults_are_found_through_the_source_chain() {
        let inner = SqliteFaultError {
            fault: SqliteFault::ReadOnly,
            source: "attempt to write a readonly database".into(),
        };
        let err = DriverError::Database(Box::new(inner));
        assert_eq!(SqliteFault::of(&err), Some(SqliteFault::ReadOnly));
        let plain = DriverError::Database("syntax error".into());
        assert_eq!(SqliteFault::of(&plain), None);
    }
}
