//! `millrace completions SHELL` and `millrace man`: shell completions and man pages generated
//! from the same clap definitions the command parses with, so they never drift from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::output::outln;

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Options of `man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write one page per command (millrace.1, millrace-jobs-list.1, …) into this folder
    /// instead of printing the top page to stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl CompletionsArgs {
    /// Prints the completion script.
    pub(crate) fn run(self, mut command: clap::Command) -> anyhow::Result<ExitCode> {
        let shell = match self.shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        };
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "millrace", &mut script);
        write_stdout(&script)?;
        Ok(ExitCode::SUCCESS)
    }
}

impl ManArgs {
    /// Prints the top page, or writes every page into `--dir`.
    pub(crate) fn run(self, command: clap::Command) -> anyhow::Result<ExitCode> {
        match self.dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("could not create {}", dir.display()))?;
                clap_mangen::generate_to(command, &dir)
                    .with_context(|| format!("could not write man pages into {}", dir.display()))?;
                outln!("wrote man pages into {}", dir.display())?;
            }
            None => {
                let mut page = Vec::new();
                clap_mangen::Man::new(command)
                    .render(&mut page)
                    .context("could not render the man page")?;
                write_stdout(&page)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes bytes to stdout through the line writer, so a closed pipe stops quietly.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        outln!("{line}")?;
    }
    Ok(())
}
