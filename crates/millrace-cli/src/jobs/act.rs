//! `millrace jobs retry`, `cancel` and `delete`: count, confirm, act in batches with a
//! progress bar, and report what was done and what was skipped.

use std::process::ExitCode;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use millrace::{Client, Driver, JobBatchAction, JobBatchRow, JobId, JobState};
use serde::Serialize;

use crate::admin::{Needs, confirm, not_found, with_client};
use crate::output::{errln, outln};

use super::args::ActArgs;

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

pub(super) async fn act(action: JobBatchAction, args: ActArgs) -> anyhow::Result<ExitCode> {
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
