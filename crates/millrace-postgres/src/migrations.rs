//! River's PostgreSQL migrations (line `main`) and Millrace's own (line `millrace`).
//!
//! The SQL lives in `migrations/<line>/NNN_name.{up,down}.sql`, with `/*schema*/` wherever a
//! schema prefix goes; [`Migration::up_sql`] fills it in.

use millrace_driver::Migration;

/// One migration, from `migrations/<line>/<number>_<name>.{up,down}.sql`.
macro_rules! migration {
    ($line:literal, $version:literal, $number:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            up: include_str!(concat!(
                "../migrations/",
                $line,
                "/",
                $number,
                "_",
                $name,
                ".up.sql"
            )),
            down: include_str!(concat!(
                "../migrations/",
                $line,
                "/",
                $number,
                "_",
                $name,
                ".down.sql"
            )),
        }
    };
}

/// River's line `main`. Versions 1 to 7 are River's for Go; version 8 comes with River's Rust
/// crate and CLI (`riverqueue-cli` 0.5.0) and changes nothing on PostgreSQL. Applying them all
/// gives the schema River's CLI gives, object for object.
pub(crate) static MAIN: &[Migration] = &[
    migration!("main", 1, "001", "create_river_migration"),
    migration!("main", 2, "002", "initial_schema"),
    migration!("main", 3, "003", "river_job_tags_non_null"),
    migration!("main", 4, "004", "pending_and_more"),
    migration!("main", 5, "005", "migration_unique_client"),
    migration!("main", 6, "006", "bulk_unique"),
    migration!(
        "main",
        7,
        "007",
        "notification_outbox_sqlite_jsonb_and_sql_cleanup"
    ),
    migration!("main", 8, "008", "job_id_autoincrement"),
];

/// Millrace's own line, for its `millrace_*` tables: version 1 adds client heartbeats, the
/// Millrace lease and durable periodic schedules; version 2 the sequences' index; version 3 the rate limits' fetch log and each client's declared limits.
pub(crate) static MILLRACE: &[Migration] = &[
    migration!("millrace", 1, "001", "fleet"),
    migration!("millrace", 2, "002", "sequences"),
    migration!("millrace", 3, "003", "limits"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for line in [MAIN, MILLRACE] {
            for (i, m) in line.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
    }

    #[test]
    fn every_statement_names_its_schema() {
        // A bare `river_` object name after one of these keywords would land in whatever
        // schema the connection's search_path picks. The only bare names allowed are the ones
        // PostgreSQL resolves within the table's own schema: RENAME TO, index and trigger
        // names.
        for m in MAIN.iter().chain(MILLRACE) {
            for sql in [m.up, m.down] {
                for keyword in [
                    "TABLE ",
                    "TYPE ",
                    "FUNCTION ",
                    " ON ",
                    "INTO ",
                    "FROM ",
                    "UPDATE ",
                    "REFERENCES ",
                ] {
                    for (at, _) in sql.match_indices(keyword) {
                        let rest = &sql[at + keyword.len()..];
                        let rest = rest.strip_prefix("IF EXISTS ").unwrap_or(rest);
                        if rest.starts_with("river_") {
                            panic!("{} names {rest:.40?} without /*schema*/", m.name);
                        }
                    }
                }
            }
        }
    }
}
