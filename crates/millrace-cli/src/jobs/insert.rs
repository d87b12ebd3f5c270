//! `millrace jobs insert`: one job by kind and JSON args, for a manual run.

use std::process::ExitCode;

use anyhow::bail;
use millrace::{Client, Driver, InsertManyParams, InsertOpts, UniqueOpts};
use serde::Serialize;

use crate::output::outln;

use super::read::JobJson;

use super::args::InsertArgs;

impl InsertArgs {
    pub(super) fn opts(&self) -> InsertOpts {
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

pub(super) async fn insert<D: Driver>(
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
