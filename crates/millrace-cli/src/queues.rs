//! `millrace queues`: list and show queues with their job counts and lag; pause and resume
//! them across the fleet.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use millrace::{
    Client, ConcurrencyLimit, Driver, JobCounts, JobState, QUEUE_LIST_MAX_LIMIT, QueueLag, QueueRow,
};
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
    /// Override a queue's concurrency limit across the fleet, or remove the override.
    #[command(
        after_help = "Sets the `concurrency` key of the queue's metadata in River Pro's shape, \
keeping its other keys; every Millrace client of the queue applies it at once on PostgreSQL and \
within 30 s on SQLite, and River Pro reads the same key. Exit status: 0 when set or removed, 2 on \
an invalid limit (nothing is written), bad input or a connection error."
    )]
    SetConcurrency(SetConcurrencyArgs),
}

/// Options of `queues set-concurrency`.
#[derive(Debug, Args)]
pub(crate) struct SetConcurrencyArgs {
    /// The queue's name.
    name: String,
    /// The most jobs running at once per partition across every client.
    #[arg(long, value_name = "N")]
    global: Option<u32>,
    /// The most jobs running at once per partition on each client.
    #[arg(long, value_name = "N")]
    local: Option<u32>,
    /// Partition by these top-level args fields (repeat, or separate with commas).
    #[arg(long, value_name = "FIELD", value_delimiter = ',')]
    by_args: Vec<String>,
    /// Make each kind its own partition.
    #[arg(long)]
    by_kind: bool,
    /// Remove the override: every client goes back to the limit it was built with.
    #[arg(long, conflicts_with_all = ["global", "local", "by_args", "by_kind"])]
    clear: bool,
    #[command(flatten)]
    admin: AdminArgs,
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
    /// The concurrency override in the queue's metadata (River Pro's shape), when valid.
    concurrency_override: Option<serde_json::Value>,
    /// Why the override in the metadata is not one a client can apply, when it is not.
    concurrency_override_error: Option<String>,
    /// `queues get` only: each live client's declared limits for the queue, by client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    declared_limits: Option<BTreeMap<String, serde_json::Value>>,
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
            QueuesCommand::SetConcurrency(args) => {
                let limit = args.limit()?;
                let client = args.admin.connect("queues", Needs::River).await?;
                with_client!(client, |c| set_concurrency(&c, &args.name, limit.as_ref())
                    .await)
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
    let (concurrency_override, concurrency_override_error) = match row
        .as_ref()
        .map(|r| ConcurrencyLimit::from_queue_metadata(&r.metadata))
    {
        Some(Ok(Some(limit))) => (Some(limit.to_metadata_value()), None),
        Some(Err(err)) => (None, Some(err.to_string())),
        Some(Ok(None)) | None => (None, None),
    };
    QueueJson {
        concurrency_override,
        concurrency_override_error,
        declared_limits: None,
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
    let Some(mut q) = queues.into_iter().find(|q| q.name == args.name) else {
        return Ok(not_found(format!(
            "queue {:?} not found: it has no river_queue row and no jobs",
            args.name
        )));
    };
    // A schema without Millrace's own tables (River alone) has no declarations to show.
    let declared: BTreeMap<String, serde_json::Value> = match client.fleet_clients().await {
        Ok(clients) => clients
            .into_iter()
            .filter(|c| c.live == Some(true))
            .filter_map(|c| {
                let declared = c.declared_limits?.get(&q.name)?.clone();
                Some((c.id, declared))
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    q.declared_limits = Some(declared);
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
    outln!(
        "concurrency override: {}",
        match (&q.concurrency_override, &q.concurrency_override_error) {
            (Some(limit), _) => limit_text(limit),
            (None, Some(err)) => format!("invalid, not applied: {err}"),
            (None, None) => "-".to_owned(),
        }
    )?;
    let declared = q.declared_limits.unwrap_or_default();
    if declared.is_empty() {
        outln!("declared limits: - (no live Millrace client declares the queue)")?;
    } else {
        let agree = declared
            .values()
            .all(|d| Some(d) == declared.values().next());
        outln!(
            "declared limits: {}",
            if agree {
                "every live client alike"
            } else {
                "clients DISAGREE (docs/limits.md, \"Clients that disagree\")"
            }
        )?;
        for (id, limits) in &declared {
            let mut said = Vec::new();
            if limits["concurrency"].is_object() {
                said.push(format!(
                    "concurrency {}",
                    limit_text(&limits["concurrency"])
                ));
            }
            said.extend(rate_text(&limits["rate_limit"]));
            if said.is_empty() {
                said.push("none".to_owned());
            }
            outln!("  {id}: {}", said.join("; "))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A concurrency limit in River Pro's shape, in words: `global 2, local 1, by kind, by args
/// customer_id`.
fn limit_text(limit: &serde_json::Value) -> String {
    let mut said = limit_counts(limit);
    let partition = &limit["partition"];
    if partition["by_kind"] == true {
        said.push("by kind".to_owned());
    }
    if let Some(fields) = partition["by_args"].as_array().filter(|f| !f.is_empty()) {
        let fields: Vec<&str> = fields
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        said.push(format!("by args {}", fields.join(",")));
    }
    said.join(", ")
}

/// A concurrency limit's counts in words (`global 2`, `local 1`), the unset (0 or missing)
/// left out.
pub(crate) fn limit_counts(limit: &serde_json::Value) -> Vec<String> {
    ["global", "local"]
        .into_iter()
        .filter_map(|which| match limit[format!("{which}_limit")].as_u64() {
            Some(n) if n > 0 => Some(format!("{which} {n}")),
            _ => None,
        })
        .collect()
}

/// A declared rate limit in words (`rate 100/60000 ms`), `None` when there is none.
pub(crate) fn rate_text(rate: &serde_json::Value) -> Option<String> {
    let (n, ms) = (rate["limit"].as_u64()?, rate["period_ms"].as_u64()?);
    Some(format!("rate {n}/{ms} ms"))
}

impl SetConcurrencyArgs {
    /// The limit the flags describe, or `None` for `--clear`.
    fn limit(&self) -> anyhow::Result<Option<ConcurrencyLimit>> {
        if self.clear {
            return Ok(None);
        }
        let mut limit = match (self.global, self.local) {
            (Some(global), Some(local)) => ConcurrencyLimit::global(global).local(local),
            (Some(global), None) => ConcurrencyLimit::global(global),
            (None, Some(local)) => ConcurrencyLimit::local_only(local),
            (None, None) => anyhow::bail!("give --global N, --local N or both, or --clear"),
        };
        if !self.by_args.is_empty() {
            limit = limit.partition_by_args(self.by_args.iter().map(String::as_str));
        }
        if self.by_kind {
            limit = limit.partition_by_kind();
        }
        Ok(Some(limit))
    }
}

async fn set_concurrency<D: Driver>(
    client: &Client<D>,
    name: &str,
    limit: Option<&ConcurrencyLimit>,
) -> anyhow::Result<ExitCode> {
    let row = client.queue_set_concurrency(name, limit).await?;
    match ConcurrencyLimit::from_queue_metadata(&row.metadata) {
        Ok(Some(limit)) => outln!(
            "queue {name}: concurrency override set: {}",
            limit_text(&limit.to_metadata_value())
        )?,
        _ => outln!("queue {name}: concurrency override removed")?,
    }
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
