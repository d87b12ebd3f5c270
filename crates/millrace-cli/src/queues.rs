//! `millrace queues`: list and show queues with their job counts and lag; pause and resume
//! them across the fleet.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use millrace::{Client, Driver, JobCounts, JobState, QUEUE_LIST_MAX_LIMIT, QueueLag, QueueRow};
use serde::Serialize;

use crate::admin::{AdminArgs, Needs, human_duration, millis, not_found, with_client};
use crate::output::{errln, outln};
use crate::table::{Rows, or_dash};

/// The queues commands.
#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// List queues: jobs by state, the oldest available job's age, running, paused.
    #[command(
        after_help = "Lists every queue with a river_queue row or with jobs. Exit status: \
0 when queues are listed, 1 when there are none, 2 on bad input or a connection error. --json \
prints one queue object a line (see docs/cli.md)."
    )]
    List(ReadArgs),
    /// Show one queue.
    #[command(
        after_help = "Exit status: 0 when shown, 1 when the queue has neither a row nor \
jobs, 2 on bad input or a connection error. --json prints one object (see docs/cli.md)."
    )]
    Get(NameArgs),
    /// Pause a queue across the fleet (`*` for every queue): no client fetches from it until
    /// it is resumed; running jobs finish.
    #[command(
        after_help = "River's clients honour it too. Exit status: 0 when paused, 2 on bad \
input or a connection error."
    )]
    Pause(ActArgs),
    /// Resume a paused queue across the fleet (`*` for every queue).
    #[command(after_help = "Exit status: 0 when resumed, 2 on bad input or a connection error.")]
    Resume(ActArgs),
}

/// Options of `queues list`.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Options of `queues get`.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The queue's name.
    name: String,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Options of `queues pause` and `resume`.
#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    /// The queue's name, or `*` for every queue.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A queue as `--json` prints it. The shape is documented in docs/cli.md: fields are only
/// ever added.
#[derive(Debug, Serialize)]
struct QueueJson {
    name: String,
    paused: bool,
    paused_at: Option<Timestamp>,
    created_at: Option<Timestamp>,
    updated_at: Option<Timestamp>,
    metadata: serde_json::Value,
    /// Every state, zero included.
    counts: BTreeMap<&'static str, i64>,
    total: i64,
    running: i64,
    oldest_available_at: Option<Timestamp>,
    oldest_available_age_ms: Option<u64>,
}

impl QueuesCommand {
    /// Runs the command; the exit status is as each `--help` says.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            QueuesCommand::List(args) => {
                let client = args.admin.connect("queues", Needs::River).await?;
                with_client!(client, |c| list(&c, &args).await)
            }
            QueuesCommand::Get(args) => {
                let client = args.admin.connect("queues", Needs::River).await?;
                with_client!(client, |c| get(&c, &args).await)
            }
            QueuesCommand::Pause(args) => {
                let client = args.admin.connect("queues", Needs::River).await?;
                with_client!(client, |c| set_paused(&c, &args.name, true).await)
            }
            QueuesCommand::Resume(args) => {
                let client = args.admin.connect("queues", Needs::River).await?;
                with_client!(client, |c| set_paused(&c, &args.name, false).await)
            }
        }
    }
}

/// Every queue: its row where it has one, its counts and its lag.
async fn overview<D: Driver>(client: &Client<D>) -> anyhow::Result<Vec<QueueJson>> {
    let mut rows: Vec<QueueRow> = Vec::new();
    let mut after: Option<String> = None;
    // Bounded by the number of queues: each page moves past the names it returned.
    loop {
        let page = client
            .queue_list(after.as_deref(), QUEUE_LIST_MAX_LIMIT)
            .await?;
        let full = page.len() as i64 == QUEUE_LIST_MAX_LIMIT;
        after = page.last().map(|q| q.name.clone());
        rows.extend(page);
        if !full {
            break;
        }
    }
    // Operators want the discarded and completed counts too, whatever they cost.
    let counts = client.job_counts_all().await?;
    let lags = client.queue_lag().await?;
    let mut by_name: BTreeMap<String, Option<QueueRow>> = rows
        .into_iter()
        .map(|r| (r.name.clone(), Some(r)))
        .collect();
    for name in counts.queues() {
        by_name.entry(name.to_owned()).or_insert(None);
    }
    Ok(by_name
        .into_iter()
        .map(|(name, row)| queue_json(name, row, &counts, &lags))
        .collect())
}

fn queue_json(
    name: String,
    row: Option<QueueRow>,
    counts: &JobCounts,
    lags: &[QueueLag],
) -> QueueJson {
    let by_state = counts.queue(&name);
    let lag = lags.iter().find(|l| l.queue == name);
    QueueJson {
        paused: row.as_ref().is_some_and(|r| r.paused_at.is_some()),
        paused_at: row.as_ref().and_then(|r| r.paused_at),
        created_at: row.as_ref().map(|r| r.created_at),
        updated_at: row.as_ref().map(|r| r.updated_at),
        metadata: row.map_or_else(|| serde_json::json!({}), |r| r.metadata),
        counts: JobState::ALL
            .iter()
            .map(|s| (s.as_str(), by_state.get(s).copied().unwrap_or(0)))
            .collect(),
        total: by_state.values().sum(),
        running: by_state.get(&JobState::Running).copied().unwrap_or(0),
        oldest_available_at: lag.map(|l| l.oldest_available_at),
        oldest_available_age_ms: lag.map(|l| millis(l.age)),
        name,
    }
}

async fn list<D: Driver>(client: &Client<D>, args: &ReadArgs) -> anyhow::Result<ExitCode> {
    let queues = overview(client).await?;
    if queues.is_empty() {
        return Ok(not_found("no queues: no river_queue rows and no jobs"));
    }
    if args.json {
        for q in &queues {
            outln!("{}", serde_json::to_string(q)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Rows::new([
        "QUEUE",
        "PAUSED",
        "AVAILABLE",
        "RUNNING",
        "SCHEDULED",
        "RETRYABLE",
        "DISCARDED",
        "COMPLETED",
        "OLDEST AVAILABLE",
    ]);
    rows.keep(&[1, 2, 3, 4, 5, 6, 7, 8]);
    for q in &queues {
        rows.row([
            q.name.clone(),
            if q.paused { "yes" } else { "no" }.to_owned(),
            q.counts["available"].to_string(),
            q.running.to_string(),
            q.counts["scheduled"].to_string(),
            q.counts["retryable"].to_string(),
            q.counts["discarded"].to_string(),
            q.counts["completed"].to_string(),
            or_dash(
                q.oldest_available_age_ms
                    .map(|ms| human_duration(Duration::from_millis(ms))),
            ),
        ]);
    }
    rows.print()?;
    Ok(ExitCode::SUCCESS)
}

async fn get<D: Driver>(client: &Client<D>, args: &NameArgs) -> anyhow::Result<ExitCode> {
    let queues = overview(client).await?;
    let Some(q) = queues.into_iter().find(|q| q.name == args.name) else {
        return Ok(not_found(format!(
            "queue {:?} not found: it has no river_queue row and no jobs",
            args.name
        )));
    };
    if args.json {
        outln!("{}", serde_json::to_string(&q)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("queue:        {}", q.name)?;
    outln!(
        "paused:       {}",
        match q.paused_at {
            Some(at) => format!("yes, since {at}"),
            None => "no".to_owned(),
        }
    )?;
    outln!("created:      {}", or_dash(q.created_at))?;
    outln!("updated:      {}", or_dash(q.updated_at))?;
    outln!(
        "oldest available: {}",
        match (q.oldest_available_at, q.oldest_available_age_ms) {
            (Some(at), Some(ms)) =>
                format!("{at} ({} ago)", human_duration(Duration::from_millis(ms))),
            _ => "-".to_owned(),
        }
    )?;
    outln!("jobs:         {} in all", q.total)?;
    for (state, count) in &q.counts {
        outln!("  {state:<10} {count}")?;
    }
    outln!("metadata:     {}", q.metadata)?;
    Ok(ExitCode::SUCCESS)
}

async fn set_paused<D: Driver>(
    client: &Client<D>,
    name: &str,
    paused: bool,
) -> anyhow::Result<ExitCode> {
    if name != "*" {
        // A typo would otherwise record a new, paused queue without a word.
        let known = match client.queue_get(name).await {
            Ok(_) => true,
            Err(millrace::Error::QueueNotFound(_)) => {
                client.job_counts_all().await?.queue_total(name) > 0
            }
            Err(err) => return Err(err.into()),
        };
        if !known {
            errln!("note: queue {name:?} has no row and no jobs yet; recording it anyway");
        }
    }
    if paused {
        client.queue_pause(name).await?;
    } else {
        client.queue_resume(name).await?;
    }
    let what = if name == "*" {
        "every queue".to_owned()
    } else {
        format!("queue {name}")
    };
    outln!("{} {what}", if paused { "paused" } else { "resumed" })?;
    Ok(ExitCode::SUCCESS)
}
