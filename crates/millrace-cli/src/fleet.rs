//! `millrace periodic list`, `persistent list`, `leader` and `clients`: what the fleet's
//! clients are doing, from Millrace's own tables and River's leader row.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use millrace::{Client, Driver, JobState, LeaderRow};
use serde::Serialize;

use crate::admin::{AdminArgs, Needs, human_duration, millis, not_found, with_client};
use crate::output::outln;
use crate::queues::{limit_counts, rate_text};
use crate::table::{Rows, first_line, or_dash};

/// Options of the read-only fleet commands.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// JSON instead of text: one object a line for lists, one object for `leader`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// The periodic commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PeriodicCommand {
    /// List the durable schedules of named periodic jobs: next run, last run, how overdue.
    #[command(
        after_help = "Only periodic jobs with an id keep a durable schedule. Exit status: \
0 when listed, 1 when there are none, 2 on bad input or a connection error. --json prints one \
object a line (see docs/cli.md)."
    )]
    List(ReadArgs),
}

/// The persistent commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PersistentCommand {
    /// List persistent worker instances: holder, lease age, restarts, last error.
    #[command(
        after_help = "Exit status: 0 when listed, 1 when there are none, 2 on bad input \
or a connection error. --json prints one object a line (see docs/cli.md)."
    )]
    List(ReadArgs),
}

#[derive(Debug, Serialize)]
struct PeriodicJson {
    id: String,
    next_run_at: Timestamp,
    updated_at: Timestamp,
    overdue_ms: u64,
    last_run_at: Option<Timestamp>,
    last_job_id: Option<i64>,
    last_job_state: Option<JobState>,
}

#[derive(Debug, Serialize)]
struct PersistentJson {
    name: String,
    job_id: i64,
    queue: String,
    state: JobState,
    holder: Option<String>,
    renewed_at: Option<Timestamp>,
    lease_age_ms: Option<u64>,
    claims: i64,
    restarts: i64,
    errors: usize,
    last_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct LeaderJson {
    leader_id: String,
    elected_at: Timestamp,
    expires_at: Timestamp,
    expired: bool,
}

#[derive(Debug, Serialize)]
struct LeadersJson {
    now: Timestamp,
    river: Option<LeaderJson>,
    millrace: Option<LeaderJson>,
}

#[derive(Debug, Serialize)]
struct RunningJson {
    queue: String,
    kind: String,
    count: i64,
}

#[derive(Debug, Serialize)]
struct ClientJson {
    id: String,
    started_at: Option<Timestamp>,
    heartbeat_at: Option<Timestamp>,
    lease_expires_at: Option<Timestamp>,
    live: Option<bool>,
    running_total: i64,
    running: Vec<RunningJson>,
    /// The limits it was built with, by queue, as it declares them.
    declared_limits: Option<serde_json::Value>,
}

impl PeriodicCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let PeriodicCommand::List(args) = self;
        let client = args.admin.connect("periodic", Needs::Millrace).await?;
        with_client!(client, |c| periodic_list(&c, args.json).await)
    }
}

impl PersistentCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let PersistentCommand::List(args) = self;
        let client = args.admin.connect("persistent", Needs::River).await?;
        with_client!(client, |c| persistent_list(&c, args.json).await)
    }
}

impl ReadArgs {
    /// Runs `millrace leader`.
    pub(crate) async fn run_leader(self) -> anyhow::Result<ExitCode> {
        let client = self.admin.connect("leader", Needs::Millrace).await?;
        with_client!(client, |c| leader(&c, self.json).await)
    }

    /// Runs `millrace clients`.
    pub(crate) async fn run_clients(self) -> anyhow::Result<ExitCode> {
        let client = self.admin.connect("clients", Needs::Millrace).await?;
        with_client!(client, |c| clients(&c, self.json).await)
    }
}

async fn periodic_list<D: Driver>(client: &Client<D>, json: bool) -> anyhow::Result<ExitCode> {
    let schedules = client.periodic_schedules().await?;
    if schedules.is_empty() {
        return Ok(not_found(
            "no durable periodic schedules (only periodic jobs with an id keep one)",
        ));
    }
    if json {
        for s in schedules {
            let line = PeriodicJson {
                id: s.id,
                next_run_at: s.next_run_at,
                updated_at: s.updated_at,
                overdue_ms: millis(s.overdue),
                last_run_at: s.last_run_at,
                last_job_id: s.last_job_id.map(|id| id.0),
                last_job_state: s.last_job_state,
            };
            outln!("{}", serde_json::to_string(&line)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Rows::new(["ID", "NEXT RUN", "OVERDUE", "LAST RUN", "LAST JOB"]);
    rows.keep(&[1, 2, 3, 4]);
    for s in schedules {
        rows.row([
            s.id,
            s.next_run_at.to_string(),
            if s.overdue.is_zero() {
                "-".to_owned()
            } else {
                human_duration(s.overdue)
            },
            or_dash(s.last_run_at),
            match (s.last_job_id, s.last_job_state) {
                (Some(id), Some(state)) => format!("{id} ({state})"),
                _ => "-".to_owned(),
            },
        ]);
    }
    rows.print()?;
    Ok(ExitCode::SUCCESS)
}

async fn persistent_list<D: Driver>(client: &Client<D>, json: bool) -> anyhow::Result<ExitCode> {
    let (instances, undecodable) = client.persistent_instances().await?;
    if instances.is_empty() && undecodable.is_empty() {
        return Ok(not_found("no persistent worker instances"));
    }
    for u in &undecodable {
        crate::output::errln!("{u}");
    }
    if json {
        for i in instances {
            let line = PersistentJson {
                last_error: i.errors.last().map(|e| e.error.clone()),
                errors: i.errors.len(),
                name: i.name,
                job_id: i.job_id.0,
                queue: i.queue,
                state: i.state,
                holder: i.holder,
                renewed_at: i.renewed_at,
                lease_age_ms: i.lease_age.map(millis),
                claims: i.claims,
                restarts: i.restarts,
            };
            outln!("{}", serde_json::to_string(&line)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Rows::new([
        "NAME",
        "JOB",
        "STATE",
        "HOLDER",
        "LEASE AGE",
        "RESTARTS",
        "LAST ERROR",
    ]);
    rows.keep(&[1, 2, 4, 5]).cap(6, 60);
    for i in instances {
        rows.row([
            i.name,
            i.job_id.to_string(),
            i.state.to_string(),
            or_dash(i.holder),
            or_dash(i.lease_age.map(human_duration)),
            i.restarts.to_string(),
            i.errors
                .last()
                .map_or_else(String::new, |e| first_line(&e.error, 120)),
        ]);
    }
    rows.print()?;
    Ok(ExitCode::SUCCESS)
}

fn leader_json(row: Option<LeaderRow>, now: Timestamp) -> Option<LeaderJson> {
    row.map(|r| LeaderJson {
        expired: r.expires_at <= now,
        leader_id: r.leader_id,
        elected_at: r.elected_at,
        expires_at: r.expires_at,
    })
}

async fn leader<D: Driver>(client: &Client<D>, json: bool) -> anyhow::Result<ExitCode> {
    let leaders = client.leaders().await?;
    let report = LeadersJson {
        now: leaders.now,
        river: leader_json(leaders.river, leaders.now),
        millrace: leader_json(leaders.millrace, leaders.now),
    };
    let live_river = report.river.as_ref().is_some_and(|l| !l.expired);
    if json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        let line = |name: &str, l: &Option<LeaderJson>| -> anyhow::Result<()> {
            match l {
                Some(l) => {
                    let held = Duration::try_from(report.now.duration_since(l.elected_at))
                        .unwrap_or_default();
                    let state = if l.expired {
                        "expired".to_owned()
                    } else {
                        let left = Duration::try_from(l.expires_at.duration_since(report.now))
                            .unwrap_or_default();
                        format!("expires in {}", human_duration(left))
                    };
                    outln!(
                        "{name} {} (elected {} ago, {state})",
                        l.leader_id,
                        human_duration(held)
                    )
                }
                None => outln!("{name} none"),
            }
        };
        line("river leader:    ", &report.river)?;
        line("millrace leader: ", &report.millrace)?;
    }
    Ok(if live_river {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::admin::NOT_FOUND)
    })
}

async fn clients<D: Driver>(client: &Client<D>, json: bool) -> anyhow::Result<ExitCode> {
    let clients = client.fleet_clients().await?;
    if clients.is_empty() {
        return Ok(not_found(
            "no clients: no Millrace heartbeats and no running jobs",
        ));
    }
    if json {
        for c in clients {
            let line = ClientJson {
                running_total: c.running.iter().map(|r| r.count).sum(),
                running: c
                    .running
                    .into_iter()
                    .map(|r| RunningJson {
                        queue: r.queue,
                        kind: r.kind,
                        count: r.count,
                    })
                    .collect(),
                id: c.id,
                started_at: c.started_at,
                heartbeat_at: c.heartbeat_at,
                lease_expires_at: c.lease_expires_at,
                live: c.live,
                declared_limits: c.declared_limits,
            };
            outln!("{}", serde_json::to_string(&line)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Rows::new(["CLIENT", "LIVE", "HEARTBEAT", "RUNNING", "WHAT", "LIMITS"]);
    rows.keep(&[1, 2, 3]).cap(4, 60).cap(5, 60);
    for c in clients {
        let total: i64 = c.running.iter().map(|r| r.count).sum();
        let what: Vec<String> = c
            .running
            .iter()
            .map(|r| format!("{} {}@{}", r.count, r.kind, r.queue))
            .collect();
        rows.row([
            c.id,
            match c.live {
                Some(true) => "yes",
                Some(false) => "expired",
                None => "unknown",
            }
            .to_owned(),
            or_dash(
                c.heartbeat_at
                    .map(|t| format!("{} ago", human_duration(crate::admin::ago(t)))),
            ),
            total.to_string(),
            what.join(", "),
            or_dash(c.declared_limits.as_ref().and_then(limits_summary)),
        ]);
    }
    rows.print()?;
    Ok(ExitCode::SUCCESS)
}

/// One line of a client's declared limits, the limited queues only: `q: global 2, local 1,
/// rate 100/60000 ms`; `None` when it declares none.
fn limits_summary(declared: &serde_json::Value) -> Option<String> {
    let queues = declared.as_object()?;
    let parts: Vec<String> = queues
        .iter()
        .filter_map(|(queue, limits)| {
            let mut said = limit_counts(&limits["concurrency"]);
            said.extend(rate_text(&limits["rate_limit"]));
            (!said.is_empty()).then(|| format!("{queue}: {}", said.join(", ")))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::limits_summary;
    use serde_json::json;

    #[test]
    fn limits_summary_names_the_limited_queues_only() {
        let declared = json!({
            "default": {"concurrency": null, "rate_limit": null},
            "api": {
                "concurrency": {"global_limit": 2, "local_limit": 0, "partition": {}},
                "rate_limit": {"limit": 100, "period_ms": 60000, "partition": {}},
            },
        });
        assert_eq!(
            limits_summary(&declared).as_deref(),
            Some("api: global 2, rate 100/60000 ms")
        );
        assert_eq!(limits_summary(&json!({})), None);
        assert_eq!(limits_summary(&json!(null)), None);
    }
}
