//! `millrace jobs`: list, show, retry, cancel, delete and insert jobs, on PostgreSQL or SQLite,
//! through the library's admin API.

use std::process::ExitCode;

use clap::Subcommand;
use millrace::JobBatchAction;

use crate::admin::{Needs, with_client};

mod act;
mod args;
mod insert;
mod read;

use act::act;
use args::{ActArgs, GetArgs, InsertArgs, ListArgs};
use insert::insert;
use read::{get, list};

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
