//! `millrace jobs list` and `get`: a page of jobs, and one job with its errors, traces,
//! output and timeline, as a table or as JSON.

use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;
use millrace::{Client, Driver, Error, JobId, JobRow, JobState, UndecodableJob};
use serde::Serialize;

use crate::admin::{ago, human_duration, not_found};
use crate::output::{errln, outln};
use crate::table::{Rows, first_line, or_dash};

use super::args::{GetArgs, ListArgs, Order};

/// A job as `--json` prints it. The shape is documented in docs/cli.md: fields are only ever
/// added.
#[derive(Debug, Serialize)]
pub(super) struct JobJson<'a> {
    id: i64,
    kind: &'a str,
    queue: &'a str,
    state: JobState,
    priority: i16,
    attempt: i16,
    max_attempts: i16,
    args: &'a serde_json::Value,
    metadata: &'a serde_json::Value,
    tags: &'a [String],
    created_at: Timestamp,
    scheduled_at: Timestamp,
    attempted_at: Option<Timestamp>,
    finalized_at: Option<Timestamp>,
    attempted_by: &'a [String],
    errors: &'a [millrace::AttemptError],
    unique_key: Option<String>,
    unique_states: Option<Vec<JobState>>,
}

impl<'a> JobJson<'a> {
    pub(super) fn new(job: &'a JobRow) -> Self {
        JobJson {
            id: job.id.0,
            kind: &job.kind,
            queue: &job.queue,
            state: job.state,
            priority: job.priority,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            args: &job.args,
            metadata: &job.metadata,
            tags: &job.tags,
            created_at: job.created_at,
            scheduled_at: job.scheduled_at,
            attempted_at: job.attempted_at,
            finalized_at: job.finalized_at,
            attempted_by: &job.attempted_by,
            errors: &job.errors,
            unique_key: job
                .unique_key
                .as_deref()
                .map(|k| k.iter().map(|b| format!("{b:02x}")).collect()),
            unique_states: job.unique_states.map(|s| s.states()),
        }
    }
}

/// A row that could not be decoded, as `--json` prints it in a list.
#[derive(Debug, Serialize)]
struct UndecodableJson<'a> {
    id: i64,
    kind: &'a str,
    queue: &'a str,
    state: JobState,
    attempt: i16,
    max_attempts: i16,
    undecodable: &'a str,
}

impl<'a> UndecodableJson<'a> {
    fn new(job: &'a UndecodableJob) -> Self {
        UndecodableJson {
            id: job.id.0,
            kind: &job.kind,
            queue: &job.queue,
            state: job.state,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            undecodable: &job.error,
        }
    }
}

pub(super) async fn list<D: Driver>(
    client: &Client<D>,
    args: &ListArgs,
) -> anyhow::Result<ExitCode> {
    let mut params = args.filter.params().limit(args.limit);
    if args.order == Order::Desc {
        params = params.descending();
    }
    if let Some(after) = args.after {
        params = params.after(JobId(after));
    }
    let page = client.job_list(params).await?;
    if page.jobs.is_empty() && page.undecodable.is_empty() {
        return Ok(not_found("no jobs matched"));
    }
    // One order for rows that decoded and rows that did not, as listed.
    let mut ids: Vec<(i64, Option<&JobRow>, Option<&UndecodableJob>)> = page
        .jobs
        .iter()
        .map(|j| (j.id.0, Some(j), None))
        .chain(page.undecodable.iter().map(|u| (u.id.0, None, Some(u))))
        .collect();
    if args.order == Order::Desc {
        ids.sort_by_key(|(id, _, _)| std::cmp::Reverse(*id));
    } else {
        ids.sort_by_key(|(id, _, _)| *id);
    }
    if args.json {
        for (_, job, undecodable) in &ids {
            match (job, undecodable) {
                (Some(job), _) => outln!("{}", serde_json::to_string(&JobJson::new(job))?)?,
                (_, Some(u)) => outln!("{}", serde_json::to_string(&UndecodableJson::new(u))?)?,
                _ => {}
            }
        }
    } else {
        let mut rows = Rows::new([
            "ID",
            "STATE",
            "ATTEMPT",
            "PRI",
            "QUEUE",
            "KIND",
            "CREATED",
            "LAST ERROR",
        ]);
        rows.keep(&[0, 1, 2, 3, 6]).cap(7, 60);
        for (id, job, undecodable) in &ids {
            match (job, undecodable) {
                (Some(job), _) => {
                    rows.row([
                        id.to_string(),
                        job.state.to_string(),
                        format!("{}/{}", job.attempt, job.max_attempts),
                        job.priority.to_string(),
                        job.queue.clone(),
                        job.kind.clone(),
                        format!("{} ago", human_duration(ago(job.created_at))),
                        job.errors
                            .last()
                            .map_or_else(String::new, |e| first_line(&e.error, 120)),
                    ]);
                }
                (_, Some(u)) => {
                    rows.row([
                        id.to_string(),
                        u.state.to_string(),
                        format!("{}/{}", u.attempt, u.max_attempts),
                        "-".to_owned(),
                        u.queue.clone(),
                        u.kind.clone(),
                        "-".to_owned(),
                        format!("(undecodable: {})", first_line(&u.error, 100)),
                    ]);
                }
                _ => {}
            }
        }
        rows.print()?;
    }
    if let Some(next) = &page.next {
        if let Some(after) = next.after {
            errln!("next page: --after {after}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One event of a job's life, for `jobs get`.
#[derive(Debug, Serialize)]
struct TimelineEvent {
    at: Timestamp,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn timeline(job: &JobRow) -> Vec<TimelineEvent> {
    let mut events = vec![TimelineEvent {
        at: job.created_at,
        event: "created",
        attempt: None,
        detail: None,
    }];
    if job.scheduled_at != job.created_at {
        events.push(TimelineEvent {
            at: job.scheduled_at,
            event: "scheduled",
            attempt: None,
            detail: None,
        });
    }
    for error in &job.errors {
        events.push(TimelineEvent {
            at: error.at,
            event: "attempt_failed",
            attempt: Some(error.attempt),
            detail: Some(first_line(&error.error, 200)),
        });
    }
    if let Some(at) = job.attempted_at {
        events.push(TimelineEvent {
            at,
            event: "attempt_started",
            attempt: Some(i32::from(job.attempt)),
            detail: job.attempted_by.last().cloned(),
        });
    }
    if let Some(at) = job.finalized_at {
        events.push(TimelineEvent {
            at,
            event: "finalized",
            attempt: None,
            detail: Some(job.state.to_string()),
        });
    }
    // The order things happened in; a stable sort keeps `created` before a `scheduled` at
    // the same instant.
    events.sort_by_key(|e| e.at);
    events
}

#[derive(Debug, Serialize)]
struct JobGetJson<'a> {
    #[serde(flatten)]
    job: JobJson<'a>,
    output: Option<&'a serde_json::Value>,
    timeline: Vec<TimelineEvent>,
}

pub(super) async fn get<D: Driver>(client: &Client<D>, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let job = match client.job_get(JobId(args.id)).await {
        Ok(job) => job,
        Err(Error::JobNotFound(id)) => return Ok(not_found(format!("job {id} not found"))),
        Err(err) => return Err(err.into()),
    };
    let output = job.metadata.get("output");
    if args.json {
        let json = JobGetJson {
            job: JobJson::new(&job),
            output,
            timeline: timeline(&job),
        };
        outln!("{}", serde_json::to_string(&json)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let time = |t: Option<Timestamp>| match t {
        Some(t) => format!("{t} ({} ago)", human_duration(ago(t))),
        None => "-".to_owned(),
    };
    outln!("id:           {}", job.id)?;
    outln!("kind:         {}", job.kind)?;
    outln!("queue:        {}", job.queue)?;
    outln!("state:        {}", job.state)?;
    outln!("priority:     {}", job.priority)?;
    outln!("attempt:      {} of {}", job.attempt, job.max_attempts)?;
    outln!(
        "tags:         {}",
        if job.tags.is_empty() {
            "-".to_owned()
        } else {
            job.tags.join(", ")
        }
    )?;
    outln!("created:      {}", time(Some(job.created_at)))?;
    if job.scheduled_at > Timestamp::now() {
        outln!(
            "scheduled:    {} (in {})",
            job.scheduled_at,
            human_duration(
                Duration::try_from(job.scheduled_at.duration_since(Timestamp::now()))
                    .unwrap_or_default()
            )
        )?;
    } else {
        outln!("scheduled:    {}", time(Some(job.scheduled_at)))?;
    }
    outln!("attempted:    {}", time(job.attempted_at))?;
    outln!("finalized:    {}", time(job.finalized_at))?;
    outln!(
        "attempted by: {}",
        or_dash(job.attempted_by.last().map(String::as_str))
    )?;
    if let Some(states) = job.unique_states {
        let names: Vec<&str> = states.states().iter().map(|s| s.as_str()).collect();
        outln!("unique in:    {}", names.join(", "))?;
    }
    outln!("args:")?;
    indented(&serde_json::to_string_pretty(&job.args)?)?;
    outln!("metadata:")?;
    indented(&serde_json::to_string_pretty(&job.metadata)?)?;
    if let Some(output) = output {
        outln!("output:")?;
        indented(&serde_json::to_string_pretty(output)?)?;
    }
    if job.errors.is_empty() {
        outln!("errors:       none")?;
    } else {
        outln!("errors:")?;
        for error in &job.errors {
            outln!("  attempt {} at {}:", error.attempt, error.at)?;
            for line in error.error.lines() {
                outln!("    {line}")?;
            }
            if !error.trace.is_empty() {
                outln!("    trace:")?;
                for line in error.trace.lines() {
                    outln!("      {line}")?;
                }
            }
        }
    }
    outln!("timeline:")?;
    for event in timeline(&job) {
        let attempt = event.attempt.map(|a| format!(" {a}")).unwrap_or_default();
        let detail = event.detail.map(|d| format!(": {d}")).unwrap_or_default();
        outln!("  {}  {}{attempt}{detail}", event.at, event.event)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn indented(text: &str) -> anyhow::Result<()> {
    for line in text.lines() {
        outln!("  {line}")?;
    }
    Ok(())
}
