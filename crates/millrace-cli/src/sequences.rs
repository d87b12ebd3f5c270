//! `millrace sequences`: which sequences have unfinished work, what heads each, how many jobs
//! wait behind it, and which a failed job blocks (issue 19).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use millrace::{Client, Driver, SEQUENCE_LIST_MAX_LIMIT, SequenceListParams};
use serde::Serialize;

use crate::admin::{AdminArgs, Needs, not_found, with_client};
use crate::output::outln;
use crate::table::Rows;

/// The sequences commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SequencesCommand {
    /// List sequences with unfinished work: the head job and its state, how many jobs wait
    /// pending behind it, and whether a discarded or cancelled job blocks it.
    #[command(
        after_help = "A blocked sequence moves on when its failed job is retried (`millrace \
jobs retry ID`: it runs again at the head) or deleted (`millrace jobs delete ID`: the next job \
is promoted at once). Exit status: 0 when sequences are listed, 1 when there are none, 2 on \
bad input or a connection error. --json prints one sequence object a line (see docs/cli.md)."
    )]
    List(ListArgs),
}

/// Options of `sequences list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only sequences that a failed job blocks.
    #[arg(long)]
    blocked: bool,
    /// Only this sequence key.
    #[arg(long)]
    key: Option<String>,
    /// Only keys after this one (the last key of the previous page).
    #[arg(long)]
    after: Option<String>,
    /// At most this many sequences.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=SEQUENCE_LIST_MAX_LIMIT))]
    limit: i64,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A sequence as `--json` prints it. The shape is documented in docs/cli.md: fields are only
/// ever added.
#[derive(Debug, Serialize)]
struct SequenceJson {
    key: String,
    head_id: i64,
    head_state: &'static str,
    head_kind: String,
    head_queue: String,
    pending: i64,
    blocked: bool,
}

impl SequencesCommand {
    /// Runs the command; the exit status is as `--help` says.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            SequencesCommand::List(args) => {
                let client = args.admin.connect("sequences", Needs::River).await?;
                with_client!(client, |c| list(&c, &args).await)
            }
        }
    }
}

async fn list<D: Driver>(client: &Client<D>, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let params = SequenceListParams {
        after: args.after.clone(),
        key: args.key.clone(),
        blocked_only: args.blocked,
        limit: args.limit,
    };
    let sequences = client.sequence_list(&params).await?;
    if sequences.is_empty() {
        return Ok(not_found("no sequences with unfinished work"));
    }
    if args.json {
        for s in sequences {
            let json = SequenceJson {
                key: s.key,
                head_id: s.head_id.0,
                head_state: s.head_state.as_str(),
                head_kind: s.head_kind,
                head_queue: s.head_queue,
                pending: s.pending,
                blocked: s.blocked,
            };
            outln!("{}", serde_json::to_string(&json)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Rows::new([
        "KEY", "HEAD", "STATE", "KIND", "QUEUE", "PENDING", "BLOCKED",
    ]);
    rows.keep(&[1, 2, 5, 6]);
    for s in &sequences {
        rows.row([
            s.key.clone(),
            s.head_id.0.to_string(),
            s.head_state.as_str().to_owned(),
            s.head_kind.clone(),
            s.head_queue.clone(),
            s.pending.to_string(),
            if s.blocked { "yes" } else { "no" }.to_owned(),
        ]);
    }
    rows.print()?;
    Ok(ExitCode::SUCCESS)
}
