//! Which way a migration runs: named by the migrator and by the error a failed step returns.
//!
//! A module of its own so that `error` can name it without importing `migrate`, which imports
//! `error`: the two would otherwise form an import circle.

use std::fmt;

/// Which way a migration runs.
///
/// ```
/// use millrace::MigrationDirection;
///
/// assert_eq!(MigrationDirection::Down.to_string(), "down");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationDirection {
    /// Applies a version.
    Up,
    /// Reverts a version.
    Down,
}

impl fmt::Display for MigrationDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationDirection::Up => "up",
            MigrationDirection::Down => "down",
        })
    }
}
