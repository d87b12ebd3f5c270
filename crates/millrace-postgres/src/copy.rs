//! Encoding jobs as COPY text rows, for the fast insert.

use std::fmt::Write as _;

use jiff::Timestamp;
use millrace_driver::JobInsertParams;

/// Which columns a COPY batch sends. Columns left out take their defaults: `now()` for the
/// times, the empty object and array for metadata and tags. A column is sent only when some
/// job of the batch sets it; jobs that leave it unset then get the client's clock, or the
/// empty value. Leaving defaults to PostgreSQL spares it parsing them for every row.
pub(crate) struct CopyLayout {
    with_metadata: bool,
    with_tags: bool,
    with_created: bool,
    with_scheduled: bool,
    now: Timestamp,
}

impl CopyLayout {
    pub(crate) fn for_jobs(jobs: &[JobInsertParams]) -> Self {
        CopyLayout {
            with_metadata: jobs.iter().any(|j| j.metadata != "{}"),
            with_tags: jobs.iter().any(|j| !j.tags.is_empty()),
            with_created: jobs.iter().any(|j| j.created_at.is_some()),
            with_scheduled: jobs.iter().any(|j| j.scheduled_at.is_some()),
            now: Timestamp::now(),
        }
    }

    /// The column list, in the order [`CopyLayout::encode`] writes values.
    pub(crate) fn columns(&self) -> Vec<&'static str> {
        let mut columns = vec!["args", "kind", "max_attempts", "priority", "queue", "state"];
        for (sent, column) in [
            (self.with_metadata, "metadata"),
            (self.with_tags, "tags"),
            (self.with_created, "created_at"),
            (self.with_scheduled, "scheduled_at"),
        ] {
            if sent {
                columns.push(column);
            }
        }
        columns
    }

    /// Appends `job` to `data` as one row of COPY's text format.
    pub(crate) fn encode(&self, data: &mut String, job: &JobInsertParams) {
        copy_escape(data, &job.args);
        data.push('\t');
        copy_escape(data, &job.kind);
        let _ = write!(data, "\t{}\t{}\t", job.max_attempts, job.priority);
        copy_escape(data, &job.queue);
        data.push('\t');
        data.push_str(job.state.as_str());
        if self.with_metadata {
            data.push('\t');
            copy_escape(data, &job.metadata);
        }
        if self.with_tags {
            // Tags are validated at insert to hold no characters an array literal would need
            // to quote.
            data.push_str("\t{");
            for (i, tag) in job.tags.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                copy_escape(data, tag);
            }
            data.push('}');
        }
        if self.with_created {
            let _ = write!(data, "\t{}", job.created_at.unwrap_or(self.now));
        }
        if self.with_scheduled {
            let _ = write!(data, "\t{}", job.scheduled_at.unwrap_or(self.now));
        }
        data.push('\n');
    }
}

/// Escapes a value for COPY's text format.
fn copy_escape(out: &mut String, value: &str) {
    if !value
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The COPY text the fast insert sends for `jobs`, with its column list. For the criterion
/// benchmark of the encoding; not part of the supported API.
#[doc(hidden)]
pub fn encode_copy_text(jobs: &[JobInsertParams]) -> (Vec<&'static str>, String) {
    let layout = CopyLayout::for_jobs(jobs);
    let mut data = String::new();
    for job in jobs {
        layout.encode(&mut data, job);
    }
    (layout.columns(), data)
}

#[cfg(test)]
mod tests {
    use millrace_types::JobState;

    use super::*;

    fn job() -> JobInsertParams {
        JobInsertParams {
            args: "{\"s\":\"a\\tb\"}".to_owned(),
            created_at: None,
            kind: "k".to_owned(),
            max_attempts: 25,
            metadata: "{}".to_owned(),
            priority: 1,
            queue: "default".to_owned(),
            scheduled_at: None,
            state: JobState::Available,
            tags: Vec::new(),
            unique_key: None,
            unique_states: None,
        }
    }

    #[test]
    fn defaults_are_left_out_and_values_escaped() {
        let (columns, text) = encode_copy_text(&[job()]);
        assert_eq!(
            columns,
            ["args", "kind", "max_attempts", "priority", "queue", "state"]
        );
        assert_eq!(text, "{\"s\":\"a\\\\tb\"}\tk\t25\t1\tdefault\tavailable\n");
    }

    #[test]
    fn a_column_one_job_sets_is_sent_for_all() {
        let mut tagged = job();
        tagged.tags = vec!["x".to_owned(), "y".to_owned()];
        tagged.metadata = "{\"m\":1}".to_owned();
        let (columns, text) = encode_copy_text(&[tagged, job()]);
        assert_eq!(columns[6..], ["metadata", "tags"]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("\t{\"m\":1}\t{x,y}"), "{}", lines[0]);
        assert!(lines[1].ends_with("\t{}\t{}"), "{}", lines[1]);
    }
}
