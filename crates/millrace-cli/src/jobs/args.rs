//! The arguments of `millrace jobs`: the filters the listing and the actions share, and
//! each subcommand's own.

use std::time::Duration;

use clap::{Args, ValueEnum};
use jiff::Timestamp;
use millrace::{JOB_LIST_MAX_LIMIT, JobId, JobListParams, JobState};

use crate::admin::{AdminArgs, parse_at, parse_duration, parse_json_object, parse_since};

/// Filters shared by `list` and the actions.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Filters")]
pub(crate) struct FilterArgs {
    /// Only jobs in these states (repeat or separate with commas): available, cancelled,
    /// completed, discarded, pending, retryable, running, scheduled.
    #[arg(long = "state", value_name = "STATE", value_delimiter = ',', value_parser = parse_state)]
    pub(super) states: Vec<JobState>,
    /// Only jobs of these kinds.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',')]
    pub(super) kinds: Vec<String>,
    /// Only jobs in these queues.
    #[arg(long = "queue", value_name = "QUEUE", value_delimiter = ',')]
    pub(super) queues: Vec<String>,
    /// Only jobs carrying every one of these tags.
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub(super) tags: Vec<String>,
    /// Only jobs with these priorities (1 to 4).
    #[arg(long = "priority", value_name = "N", value_delimiter = ',', value_parser = clap::value_parser!(i16).range(1..=4))]
    pub(super) priorities: Vec<i16>,
    /// Only jobs with an id of at least this.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub(super) min_id: Option<i64>,
    /// Only jobs with an id of at most this.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub(super) max_id: Option<i64>,
    /// Only jobs created since: an RFC 3339 time, a date, or a duration ago (15m, 2h, 3d).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub(super) created_since: Option<Timestamp>,
    /// Only jobs finalized since (so only finalized jobs): a time, a date or a duration ago.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub(super) finalized_since: Option<Timestamp>,
    /// Only jobs whose args contain this JSON object, e.g. '{"customer_id": 42}'.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub(super) args_contains: Option<serde_json::Value>,
    /// Only jobs whose metadata contains this JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub(super) metadata_contains: Option<serde_json::Value>,
}

fn parse_state(s: &str) -> Result<JobState, String> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown state {s:?}: expected one of {}", names.join(", "))
    })
}

impl FilterArgs {
    pub(super) fn is_empty(&self) -> bool {
        self.params().is_unfiltered_here()
    }

    pub(super) fn params(&self) -> JobListParams {
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
pub(super) enum Order {
    /// Newest first.
    Desc,
    /// Oldest first.
    Asc,
}

/// Options of `jobs list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(super) filter: FilterArgs,
    /// Order by id: desc (newest first) or asc.
    #[arg(long, value_enum, default_value = "desc")]
    pub(super) order: Order,
    /// Only jobs after this id in the list's order: the id `next page:` printed.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub(super) after: Option<i64>,
    /// At most this many jobs, 1 to 10,000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=JOB_LIST_MAX_LIMIT))]
    pub(super) limit: i64,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) admin: AdminArgs,
}

/// Options of `jobs get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The job's id.
    #[arg(value_name = "ID", value_parser = parse_id)]
    pub(super) id: i64,
    /// One JSON object instead of text.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) admin: AdminArgs,
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
    pub(super) ids: Vec<i64>,
    #[command(flatten)]
    pub(super) filter: FilterArgs,
    /// Do not ask before acting on more than one job.
    #[arg(long, short = 'y')]
    pub(super) yes: bool,
    /// Jobs changed per transaction, 1 to 10,000.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(i64).range(1..=JOB_LIST_MAX_LIMIT))]
    pub(super) batch_size: i64,
    /// One JSON object instead of text.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) admin: AdminArgs,
}

/// Options of `jobs insert`.
#[derive(Debug, Args)]
pub(crate) struct InsertArgs {
    /// The job's kind: the worker that runs it.
    pub(super) kind: String,
    /// The args, a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}", value_parser = parse_json_object)]
    pub(super) args: serde_json::Value,
    /// The queue (default: default).
    #[arg(long)]
    pub(super) queue: Option<String>,
    /// 1 (first) to 4 (default: 1).
    #[arg(long, value_parser = clap::value_parser!(i16).range(1..=4))]
    pub(super) priority: Option<i16>,
    /// Attempts before the job is discarded, 1 to 32,767 (default: 25).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=32_767))]
    pub(super) max_attempts: Option<i32>,
    /// When to run it: an RFC 3339 time, a date, or a duration from now (30s, 5m, 2h).
    #[arg(long, value_name = "WHEN", value_parser = parse_at)]
    pub(super) scheduled_at: Option<Timestamp>,
    /// Tags (repeat or separate with commas).
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub(super) tags: Vec<String>,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub(super) metadata: Option<serde_json::Value>,
    /// Insert it pending, so nothing runs it until it is made available.
    #[arg(long)]
    pub(super) pending: bool,
    /// Unique by args: skip the insert while a job of the kind with the same args is live.
    #[arg(long, help_heading = "Unique")]
    pub(super) unique_by_args: bool,
    /// Unique by queue.
    #[arg(long, help_heading = "Unique")]
    pub(super) unique_by_queue: bool,
    /// Unique within a period (15m, 1h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Unique")]
    pub(super) unique_by_period: Option<Duration>,
    /// The states in which a duplicate blocks the insert (default: all but cancelled and
    /// discarded); must include available, pending, running and scheduled.
    #[arg(long, value_name = "STATE", value_delimiter = ',', value_parser = parse_state, help_heading = "Unique")]
    pub(super) unique_by_state: Vec<JobState>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) admin: AdminArgs,
}
