//! `millrace jobs`: list, show, retry, cancel, delete and insert jobs, on PostgreSQL or SQLite,
//! through the library's admin API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;
use millrace::{
    Client, Driver, Error, InsertManyParams, InsertOpts, JOB_LIST_MAX_LIMIT, JobBatchAction,
    JobBatchRow, JobId, JobListParams, JobRow, JobState, UndecodableJob, UniqueOpts,
};
use serde::Serialize;

use crate::admin::{
    AdminArgs, Needs, ago, confirm, human_duration, not_found, parse_at, parse_duration,
    parse_json_object, parse_since, with_client,
};
use crate::output::{errln, outln};
use crate::table::{Rows, first_line, or_dash};

/// The jobs commands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List jobs matching filters, newest first, a page at a time (`--after` for the next).
    #[command(
        after_help = "Exit status: 0 when jobs are listed, 1 when none matched, 2 on bad \
input or a connection error. --json prints one job object a line (see docs/cli.md); when more \
jobs match, `next page: --after ID` goes to stderr."
    )]
    List(ListArgs),
    /// Show one job: args, metadata, output, every attempt's error and trace, and a timeline.
    #[command(
        after_help = "Exit status: 0 when shown, 1 when no job has the id, 2 on bad input \
or a connection error. --json prints one object (see docs/cli.md)."
    )]
    Get(GetArgs),
    /// Make jobs available to run now (one more attempt when they used them all); running
    /// jobs are skipped.
    #[command(after_help = ACT_HELP)]
    Retry(ActArgs),
    /// Cancel jobs: waiting jobs at once; running jobs are asked to stop (their client
    /// cancels the worker); finalized jobs are skipped.
    #[command(after_help = ACT_HELP)]
    Cancel(ActArgs),
    /// Delete jobs; running jobs are skipped (cancel them first).
    #[command(after_help = ACT_HELP)]
    Delete(ActArgs),
    /// Insert one job by kind and JSON args, for a manual run.
    #[command(
        after_help = "Exit status: 0 when inserted (or skipped as a unique duplicate, \
which the output says), 2 on bad input (an invalid kind, queue, priority or args) or a \
connection error."
    )]
    Insert(InsertArgs),
}

const ACT_HELP: &str = "Give job ids, filters, or both (ids and filters must all match). An \
action on more than one job first counts them and asks for confirmation (--yes skips it; without \
a terminal it is required); a progress bar shows on a terminal. Each job is locked and judged by \
its state at that moment: a job that changed state since it was listed is reported as skipped, \
and a running job is never overwritten. Exit status: 0 when at least one job was acted on, 1 \
when none matched or every match was skipped, 2 on bad input or a connection error. --json \
prints one object (see docs/cli.md).";

/// Filters shared by `list` and the actions.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Filters")]
pub(crate) struct FilterArgs {
    /// Only jobs in these states (repeat or separate with commas): available, cancelled,
    /// completed, discarded, pending, retryable, running, scheduled.
    #[arg(long = "state", value_name = "STATE", value_delimiter = ',', value_parser = parse_state)]
    states: Vec<JobState>,
    /// Only jobs of these kinds.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',')]
    kinds: Vec<String>,
    /// Only jobs in these queues.
    #[arg(long = "queue", value_name = "QUEUE", value_delimiter = ',')]
    queues: Vec<String>,
    /// Only jobs carrying every one of these tags.
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    tags: Vec<String>,
    /// Only jobs with these priorities (1 to 4).
    #[arg(long = "priority", value_name = "N", value_delimiter = ',', value_parser = clap::value_parser!(i16).range(1..=4))]
    priorities: Vec<i16>,
    /// Only jobs with an id of at least this.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    min_id: Option<i64>,
    /// Only jobs with an id of at most this.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    max_id: Option<i64>,
    /// Only jobs created since: an RFC 3339 time, a date, or a duration ago (15m, 2h, 3d).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    created_since: Option<Timestamp>,
    /// Only jobs finalized since (so only finalized jobs): a time, a date or a duration ago.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    finalized_since: Option<Timestamp>,
    /// Only jobs whose args contain this JSON object, e.g. '{"customer_id": 42}'.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    args_contains: Option<serde_json::Value>,
    /// Only jobs whose metadata contains this JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    metadata_contains: Option<serde_json::Value>,
}

fn parse_state(s: &str) -> Result<JobState, String> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown state {s:?}: expected one of {}", names.join(", "))
    })
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.params().is_unfiltered_here()
    }

    fn params(&self) -> JobListParams {
        let mut params = JobListParams::new()
            .states(self.states.iter().copied())
            .kinds(self.kinds.iter().cloned())
            .queues(self.queues.iter().cloned())
            .tags(self.tags.iter().cloned())
            .priorities(self.priorities.iter().copied());
        params.id_min = self.min_id.map(JobId);
        params.id_max = self.max_id.map(JobId);
        params.created_since = self.created_since;
        params.finalized_since = self.finalized_since;
        params.args = self.args_contains.clone();
        params.metadata = self.metadata_contains.clone();
        params
    }
}

/// Whether params set no filter, for the CLI's own check before any database work.
trait Unfiltered {
    fn is_unfiltered_here(&self) -> bool;
}

impl Unfiltered for JobListParams {
    fn is_unfiltered_here(&self) -> bool {
        self.states.is_empty()
            && self.kinds.is_empty()
            && self.queues.is_empty()
            && self.ids.is_empty()
            && self.priorities.is_empty()
            && self.tags.is_empty()
            && self.metadata.is_none()
            && self.args.is_none()
            && self.id_min.is_none()
            && self.id_max.is_none()
            && self.created_since.is_none()
            && self.finalized_since.is_none()
    }
}

/// List order, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Order {
    /// Newest first.
    Desc,
    /// Oldest first.
    Asc,
}

/// Options of `jobs list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Order by id: desc (newest first) or asc.
    #[arg(long, value_enum, default_value = "desc")]
    order: Order,
    /// Only jobs after this id in the list's order: the id `next page:` printed.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    after: Option<i64>,
    /// At most this many jobs, 1 to 10,000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=JOB_LIST_MAX_LIMIT))]
    limit: i64,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Options of `jobs get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The job's id.
    #[arg(value_name = "ID", value_parser = parse_id)]
    id: i64,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

fn parse_id(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(id) if id >= 1 => Ok(id),
        _ => Err(format!("{s:?} is not a job id (a whole number from 1)")),
    }
}

/// Options of `jobs retry`, `cancel` and `delete`.
#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    /// Job ids (with filters, only those that also match them).
    #[arg(value_name = "ID", value_parser = parse_id)]
    ids: Vec<i64>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Do not ask before acting on more than one job.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Jobs changed per transaction, 1 to 10,000.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(i64).range(1..=JOB_LIST_MAX_LIMIT))]
    batch_size: i64,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Options of `jobs insert`.
#[derive(Debug, Args)]
pub(crate) struct InsertArgs {
    /// The job's kind: the worker that runs it.
    kind: String,
    /// The args, a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}", value_parser = parse_json_object)]
    args: serde_json::Value,
    /// The queue (default: default).
    #[arg(long)]
    queue: Option<String>,
    /// 1 (first) to 4 (default: 1).
    #[arg(long, value_parser = clap::value_parser!(i16).range(1..=4))]
    priority: Option<i16>,
    /// Attempts before the job is discarded, 1 to 32,767 (default: 25).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=32_767))]
    max_attempts: Option<i32>,
    /// When to run it: an RFC 3339 time, a date, or a duration from now (30s, 5m, 2h).
    #[arg(long, value_name = "WHEN", value_parser = parse_at)]
    scheduled_at: Option<Timestamp>,
    /// Tags (repeat or separate with commas).
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    tags: Vec<String>,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    metadata: Option<serde_json::Value>,
    /// Insert it pending, so nothing runs it until it is made available.
    #[arg(long)]
    pending: bool,
    /// Unique by args: skip the insert while a job of the kind with the same args is live.
    #[arg(long, help_heading = "Unique")]
    unique_by_args: bool,
    /// Unique by queue.
    #[arg(long, help_heading = "Unique")]
    unique_by_queue: bool,
    /// Unique within a period (15m, 1h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Unique")]
    unique_by_period: Option<Duration>,
    /// The states in which a duplicate blocks the insert (default: all but cancelled and
    /// discarded); must include available, pending, running and scheduled.
    #[arg(long, value_name = "STATE", value_delimiter = ',', value_parser = parse_state, help_heading = "Unique")]
    unique_by_state: Vec<JobState>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

impl JobsCommand {
    /// Runs the command; the exit status is as each `--help` says.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            JobsCommand::List(args) => {
                let client = args.admin.connect("jobs", Needs::River).await?;
                with_client!(client, |c| list(&c, &args).await)
            }
            JobsCommand::Get(args) => {
                let client = args.admin.connect("jobs", Needs::River).await?;
                with_client!(client, |c| get(&c, &args).await)
            }
            JobsCommand::Retry(args) => act(JobBatchAction::Retry, args).await,
            JobsCommand::Cancel(args) => act(JobBatchAction::Cancel, args).await,
            JobsCommand::Delete(args) => act(JobBatchAction::Delete, args).await,
            JobsCommand::Insert(args) => {
                let opts = args.opts();
                let client = args.admin.connect("jobs", Needs::River).await?;
                with_client!(client, |c| insert(&c, &args, opts).await)
            }
        }
    }
}

/// A job as `--json` prints it. The shape is documented in docs/cli.md: fields are only ever
/// added.
#[derive(Debug, Serialize)]
struct JobJson<'a> {
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
    fn new(job: &'a JobRow) -> Self {
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

async fn list<D: Driver>(client: &Client<D>, args: &ListArgs) -> anyhow::Result<ExitCode> {
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

async fn get<D: Driver>(client: &Client<D>, args: &GetArgs) -> anyhow::Result<ExitCode> {
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

/// A skipped job, as `--json` prints it.
#[derive(Debug, Serialize)]
struct SkippedJson {
    id: i64,
    kind: String,
    queue: String,
    state: JobState,
}

/// What a retry, cancel or delete did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct ActJson {
    action: &'static str,
    matched: i64,
    applied: u64,
    cancel_requested: u64,
    skipped: Vec<SkippedJson>,
    not_found: Vec<i64>,
    elapsed_ms: u64,
}

async fn act(action: JobBatchAction, args: ActArgs) -> anyhow::Result<ExitCode> {
    if args.ids.is_empty() && args.filter.is_empty() {
        bail!(
            "give job ids or at least one filter (--state, --kind, --queue, …) to {} jobs",
            action.as_str()
        );
    }
    let client = args.admin.connect("jobs", Needs::River).await?;
    with_client!(client, |c| act_on(&c, action, &args).await)
}

async fn act_on<D: Driver>(
    client: &Client<D>,
    action: JobBatchAction,
    args: &ActArgs,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let params = args
        .filter
        .params()
        .ids(args.ids.iter().copied().map(JobId))
        .limit(args.batch_size);
    let matched = client.job_count(params.clone()).await?;
    let bulk = matched > 1 || args.ids.len() > 1 || !args.filter.is_empty();
    if matched > 0 && bulk {
        confirm(
            &format!(
                "{} {matched} job{}",
                capitalized(action),
                if matched == 1 { "" } else { "s" }
            ),
            args.yes,
        )?;
    }
    // On a terminal only (indicatif draws nothing otherwise), and only when there is more
    // than one batch to wait for.
    let progress = if matched > args.batch_size {
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(matched).unwrap_or(0)),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(action.as_str());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut applied = 0u64;
    let mut cancel_requested = 0u64;
    let mut skipped: Vec<JobBatchRow> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut next = (matched > 0).then_some(params);
    // Each batch moves the cursor past the ids it looked at, so the loop ends: at the latest
    // after the last matching id.
    while let Some(p) = next {
        let batch = client.job_act_many(action, p).await?;
        for row in &batch.applied {
            applied += 1;
            if action == JobBatchAction::Cancel && row.state == JobState::Running {
                cancel_requested += 1;
            }
        }
        if !args.ids.is_empty() {
            seen.extend(batch.applied.iter().chain(&batch.skipped).map(|r| r.id.0));
        }
        progress.inc((batch.applied.len() + batch.skipped.len()) as u64);
        skipped.extend(batch.skipped);
        next = batch.next;
    }
    progress.finish_and_clear();
    let not_found: Vec<i64> = args
        .ids
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    if args.json {
        let report = ActJson {
            action: action.as_str(),
            matched,
            applied,
            cancel_requested,
            skipped: skipped
                .iter()
                .map(|r| SkippedJson {
                    id: r.id.0,
                    kind: r.kind.clone(),
                    queue: r.queue.clone(),
                    state: r.state,
                })
                .collect(),
            not_found: not_found.clone(),
            elapsed_ms: crate::admin::millis(started.elapsed()),
        };
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        report_text(action, applied, cancel_requested, &skipped, &not_found)?;
    }
    if matched == 0 && not_found.is_empty() {
        return Ok(not_found_status("no jobs matched"));
    }
    Ok(if applied > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::admin::NOT_FOUND)
    })
}

fn not_found_status(message: &str) -> ExitCode {
    not_found(message)
}

fn capitalized(action: JobBatchAction) -> &'static str {
    match action {
        JobBatchAction::Retry => "Retry",
        JobBatchAction::Cancel => "Cancel",
        JobBatchAction::Delete => "Delete",
    }
}

fn past(action: JobBatchAction) -> &'static str {
    match action {
        JobBatchAction::Retry => "retried",
        JobBatchAction::Cancel => "cancelled",
        JobBatchAction::Delete => "deleted",
    }
}

/// How many skipped jobs the text report names one by one.
const SKIPPED_SHOWN: usize = 20;

fn report_text(
    action: JobBatchAction,
    applied: u64,
    cancel_requested: u64,
    skipped: &[JobBatchRow],
    not_found: &[i64],
) -> anyhow::Result<()> {
    let plural = |n: u64| if n == 1 { "job" } else { "jobs" };
    let done = applied - cancel_requested;
    let mut summary = format!("{} {done} {}", past(action), plural(done));
    if cancel_requested > 0 {
        summary.push_str(&format!(
            "; asked {cancel_requested} running {} to stop (their clients cancel them)",
            plural(cancel_requested)
        ));
    }
    if !skipped.is_empty() {
        summary.push_str(&format!("; skipped {}", skipped.len()));
    }
    outln!("{summary}")?;
    for row in skipped.iter().take(SKIPPED_SHOWN) {
        let why = match (action, row.state) {
            (_, JobState::Running) => "running".to_owned(),
            (JobBatchAction::Cancel, state) => format!("already {state}"),
            (_, state) => state.to_string(),
        };
        outln!(
            "  skipped job {} ({}, queue {}): {why}",
            row.id,
            row.kind,
            row.queue
        )?;
    }
    if skipped.len() > SKIPPED_SHOWN {
        outln!(
            "  … and {} more (--json lists them all)",
            skipped.len() - SKIPPED_SHOWN
        )?;
    }
    for id in not_found {
        errln!("job {id} not found");
    }
    Ok(())
}

impl InsertArgs {
    fn opts(&self) -> InsertOpts {
        let mut opts = InsertOpts::new();
        if let Some(queue) = &self.queue {
            opts = opts.queue(queue.clone());
        }
        if let Some(priority) = self.priority {
            opts = opts.priority(priority);
        }
        if let Some(max) = self.max_attempts {
            opts = opts.max_attempts(max);
        }
        if let Some(at) = self.scheduled_at {
            opts = opts.scheduled_at(at);
        }
        if !self.tags.is_empty() {
            opts = opts.tags(self.tags.clone());
        }
        if let Some(metadata) = &self.metadata {
            opts = opts.metadata(metadata.clone());
        }
        if self.pending {
            opts = opts.pending();
        }
        let mut unique = UniqueOpts::new();
        if self.unique_by_args {
            unique = unique.by_args();
        }
        if self.unique_by_queue {
            unique = unique.by_queue();
        }
        if let Some(period) = self.unique_by_period {
            unique = unique.by_period(period);
        }
        if !self.unique_by_state.is_empty() {
            unique = unique.by_state(self.unique_by_state.iter().copied());
        }
        if !unique.is_empty() {
            opts = opts.unique(unique);
        }
        opts
    }
}

#[derive(Debug, Serialize)]
struct InsertJson<'a> {
    #[serde(flatten)]
    job: JobJson<'a>,
    unique_skipped_as_duplicate: bool,
}

async fn insert<D: Driver>(
    client: &Client<D>,
    args: &InsertArgs,
    opts: InsertOpts,
) -> anyhow::Result<ExitCode> {
    let job = InsertManyParams::from_json(args.kind.clone(), &args.args).opts(opts);
    let mut results = client.insert_many([job]).await?;
    let Some(result) = results.pop() else {
        bail!("the insert returned no job");
    };
    if args.json {
        let json = InsertJson {
            job: JobJson::new(&result.job),
            unique_skipped_as_duplicate: result.unique_skipped_as_duplicate,
        };
        outln!("{}", serde_json::to_string(&json)?)?;
    } else if result.unique_skipped_as_duplicate {
        outln!(
            "not inserted: job {} ({}) is a live duplicate",
            result.job.id,
            result.job.state
        )?;
    } else {
        outln!(
            "inserted job {} ({}, queue {}, {})",
            result.job.id,
            result.job.kind,
            result.job.queue,
            result.job.state
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
