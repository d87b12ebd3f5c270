//! The jobs list's filter: parsed from a query string or form with a clear reason for each
//! malformed value, and written back into links and hidden fields.

use std::str::FromStr as _;

use maud::{Markup, html};
use millrace::{JobId, JobListParams, JobState};

use crate::error::PageError;

/// The filters of the jobs list, as the query string gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JobFilter {
    pub(crate) states: Vec<JobState>,
    pub(crate) kinds: Vec<String>,
    pub(crate) queues: Vec<String>,
    pub(crate) ids: Vec<JobId>,
    pub(crate) args: Option<serde_json::Value>,
    pub(crate) metadata: Option<serde_json::Value>,
}

/// The query keys the filter reads; others (paging, the CSRF field, the action) are left.
const KEYS: [&str; 6] = ["state", "kind", "queue", "id", "args", "metadata"];

impl JobFilter {
    /// Reads the filter from `key=value` pairs. Repeated keys and comma-separated values both
    /// add up; empty values are ignored (an empty form field).
    pub(crate) fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<JobFilter, PageError> {
        let mut filter = JobFilter::default();
        for (key, value) in pairs {
            let value = value.trim();
            if value.is_empty() || !KEYS.contains(&key) {
                continue;
            }
            let items = || value.split(',').map(str::trim).filter(|s| !s.is_empty());
            match key {
                "state" => {
                    for s in items() {
                        let state = JobState::from_str(s).map_err(|_| {
                            PageError::BadRequest(format!(
                                "unknown state {s:?}; expected one of {}",
                                JobState::ALL.map(JobState::as_str).join(", ")
                            ))
                        })?;
                        if !filter.states.contains(&state) {
                            filter.states.push(state);
                        }
                    }
                }
                "kind" => filter.kinds.extend(items().map(str::to_owned)),
                "queue" => filter.queues.extend(items().map(str::to_owned)),
                "id" => {
                    for s in items() {
                        let id = s.parse::<i64>().map_err(|_| {
                            PageError::BadRequest(format!("job id {s:?} is not a whole number"))
                        })?;
                        filter.ids.push(JobId(id));
                    }
                }
                "args" => filter.args = Some(object("args", value)?),
                "metadata" => filter.metadata = Some(object("metadata", value)?),
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Whether no filter is set.
    pub(crate) fn is_empty(&self) -> bool {
        *self == JobFilter::default()
    }

    /// The list params for this filter, newest first.
    pub(crate) fn params(&self) -> JobListParams {
        let mut params = JobListParams::new()
            .states(self.states.iter().copied())
            .kinds(self.kinds.iter().cloned())
            .queues(self.queues.iter().cloned())
            .ids(self.ids.iter().copied())
            .descending();
        if let Some(args) = &self.args {
            params = params.args(args.clone());
        }
        if let Some(metadata) = &self.metadata {
            params = params.metadata(metadata.clone());
        }
        params
    }

    /// The filter as `key=value` pairs, in a fixed order.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        for s in &self.states {
            pairs.push(("state", s.as_str().to_owned()));
        }
        for k in &self.kinds {
            pairs.push(("kind", k.clone()));
        }
        for q in &self.queues {
            pairs.push(("queue", q.clone()));
        }
        for id in &self.ids {
            pairs.push(("id", id.0.to_string()));
        }
        if let Some(args) = &self.args {
            pairs.push(("args", args.to_string()));
        }
        if let Some(metadata) = &self.metadata {
            pairs.push(("metadata", metadata.to_string()));
        }
        pairs
    }

    /// The filter as a query string (without `?`), with `extra` pairs after it.
    pub(crate) fn query(&self, extra: &[(&str, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            s.append_pair(k, &v);
        }
        for (k, v) in extra {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// The filter as hidden form fields, so a bulk action acts on exactly what was shown.
    pub(crate) fn hidden(&self) -> Markup {
        html! {
            @for (k, v) in self.pairs() {
                input type="hidden" name=(k) value=(v);
            }
        }
    }

    /// The value to show in a text box for a key (comma-joined).
    pub(crate) fn text(&self, key: &str) -> String {
        self.pairs()
            .into_iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn object(name: &str, value: &str) -> Result<serde_json::Value, PageError> {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(PageError::BadRequest(format!(
            "the {name} filter must be a JSON object, such as {{\"customer_id\": 7}}"
        ))),
        Err(err) => Err(PageError::BadRequest(format!(
            "the {name} filter is not valid JSON: {err}"
        ))),
    }
}

/// The pairs of a query string or form body, decoded.
pub(crate) fn decode(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Borrows decoded pairs as `&str`s.
pub(crate) fn borrow(pairs: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The first value of `key`, if any.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_the_query_string() {
        let pairs =
            decode(b"state=available,retryable&kind=email&id=7&args=%7B%22a%22%3A1%7D&after=3");
        let filter = JobFilter::parse(borrow(&pairs)).unwrap();
        assert_eq!(filter.states, [JobState::Available, JobState::Retryable]);
        assert_eq!(filter.ids, [JobId(7)]);
        let again = decode(filter.query(&[]).as_bytes());
        assert_eq!(JobFilter::parse(borrow(&again)).unwrap(), filter);
    }

    #[test]
    fn malformed_filters_say_why() {
        let bad = |q: &str| match JobFilter::parse(borrow(&decode(q.as_bytes()))) {
            Err(PageError::BadRequest(m)) => m,
            other => panic!("{q}: {other:?}"),
        };
        assert!(bad("state=runing").contains("unknown state \"runing\""));
        assert!(bad("id=abc").contains("not a whole number"));
        assert!(bad("args=%7Bnope").contains("not valid JSON"));
        assert!(bad("metadata=%5B1%5D").contains("must be a JSON object"));
    }
}
