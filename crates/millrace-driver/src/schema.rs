/// The schema that holds River's tables, validated once and quoted in every statement.
///
/// Every statement names its tables as `"schema".table`, never through `search_path`, because
/// `_tx` methods run on the caller's connection, whose `search_path` Millrace does not control.
/// Notification channels are prefixed with the schema (`jobs.river_insert`), as River's clients
/// do (with no schema configured they use `current_schema()`, normally `public`).
///
/// ```
/// use millrace_driver::Schema;
///
/// assert_eq!(Schema::default().channel("river_insert"), "public.river_insert");
/// assert_eq!(Schema::new("jobs").unwrap().channel("river_insert"), "jobs.river_insert");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    name: String,
    prefix: String,
    channel_prefix: String,
}

/// A schema name outside `[A-Za-z_][A-Za-z0-9_]*`, or too long for PostgreSQL's 63-byte channel
/// names once `.river_leadership` is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid schema name {0:?}: use letters, digits and underscores, not starting with a digit, at most {max} bytes",
    max = Schema::MAX_LEN
)]
pub struct InvalidSchemaName(pub String);

impl Schema {
    /// The longest name accepted: `<schema>.river_leadership` must fit in 63 bytes.
    pub const MAX_LEN: usize = 63 - ".river_leadership".len();

    /// A validated schema.
    ///
    /// # Errors
    ///
    /// [`InvalidSchemaName`] for anything outside `[A-Za-z_][A-Za-z0-9_]*` or longer than
    /// [`Schema::MAX_LEN`].
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidSchemaName> {
        let name = name.into();
        let mut chars = name.chars();
        let valid_start = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_start || !valid_rest || name.len() > Self::MAX_LEN {
            return Err(InvalidSchemaName(name));
        }
        Ok(Schema {
            prefix: format!("\"{name}\"."),
            channel_prefix: format!("{name}."),
            name,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `"schema".table`.
    pub fn qualify(&self, table: &str) -> String {
        format!("{}{table}", self.prefix)
    }

    /// The notification channel for a topic (`river_insert`, …).
    pub fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.channel_prefix)
    }

    /// Replaces each `/*schema*/` marker in `sql` with `"schema".`.
    pub fn fill(&self, sql: &str) -> String {
        sql.replace("/*schema*/", &self.prefix)
    }
}

impl Default for Schema {
    /// `public`.
    fn default() -> Self {
        Schema::new("public").expect("public is a valid schema name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "1abc", "a-b", "a.b", "a\"b", "ü", &"x".repeat(47)] {
            assert!(Schema::new(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "_x", "Jobs_2", &"x".repeat(46)] {
            assert!(Schema::new(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn fills_markers() {
        let s = Schema::new("q").unwrap();
        assert_eq!(
            s.fill("SELECT 1 FROM /*schema*/river_job"),
            "SELECT 1 FROM \"q\".river_job"
        );
    }
}
