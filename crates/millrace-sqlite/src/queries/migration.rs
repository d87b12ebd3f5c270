//! The statements of `river_migration`, in River's current shape (with lines) and its
//! legacy one (versions only).

use std::sync::Arc;

/// The migration table's statements.
#[derive(Debug)]
pub(crate) struct MigrationQueries {
    pub(crate) has_line: Arc<str>,
    pub(crate) get_all: Arc<str>,
    pub(crate) get_all_legacy: Arc<str>,
    pub(crate) insert: Arc<str>,
    pub(crate) insert_legacy: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) delete_legacy: Arc<str>,
}

impl MigrationQueries {
    pub(super) fn new(s: &str) -> Self {
        let migration = format!("{s}river_migration");
        // pragma_table_info takes the schema as its second argument.
        let migration_has_line = "SELECT EXISTS (\
            SELECT 1 FROM pragma_table_info('river_migration', ?1) WHERE name = 'line')"
            .to_owned();
        let migration_get_all = format!(
            "SELECT line, version, created_at FROM {migration} WHERE line = ?1 ORDER BY version"
        );
        let migration_get_all_legacy =
            format!("SELECT 'main' AS line, version, created_at FROM {migration} ORDER BY version");
        let migration_insert = format!("INSERT INTO {migration} (line, version) VALUES (?1, ?2)");
        let migration_insert_legacy = format!("INSERT INTO {migration} (version) VALUES (?1)");
        let migration_delete = format!("DELETE FROM {migration} WHERE line = ?1 AND version = ?2");
        let migration_delete_legacy = format!("DELETE FROM {migration} WHERE version = ?1");
        MigrationQueries {
            has_line: migration_has_line.into(),
            get_all: migration_get_all.into(),
            get_all_legacy: migration_get_all_legacy.into(),
            insert: migration_insert.into(),
            insert_legacy: migration_insert_legacy.into(),
            delete: migration_delete.into(),
            delete_legacy: migration_delete_legacy.into(),
        }
    }
}
