//! The fleet of `millrace demo` processes the benchmark runs: spawning, reading their lines
//! into notes, who holds the instance, and the moments that look like two instances.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;

use crate::output::outln;

const STARTED: &str = "persistent-worker ticker started client=";
const STOPPED: &str = "persistent-worker ticker stopped client=";
const HEADER: &str = "millrace demo: client ";

/// Each process's stdout is read by a thread of its own, so two lines written a moment apart
/// by two processes may be read in the other order. A `started` read while another process
/// still holds the instance counts as two instances only when that holder's `stopped` does not
/// follow within this much.
pub(super) const LINE_ORDER_SLACK: Duration = Duration::from_millis(250);

pub(super) fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A line of interest from a demo, stamped when it was read.
struct Note {
    proc: usize,
    at: Instant,
    what: What,
}

enum What {
    Header(String),
    Started(String),
    Stopped(String),
    /// The process closed its stdout: it is exiting or gone.
    Exited,
}

impl What {
    fn parse(line: &str) -> Option<What> {
        if let Some(client) = line.strip_prefix(STARTED) {
            Some(What::Started(client.trim().to_owned()))
        } else if let Some(client) = line.strip_prefix(STOPPED) {
            Some(What::Stopped(client.trim().to_owned()))
        } else {
            line.strip_prefix(HEADER)
                .and_then(|rest| rest.split_whitespace().next())
                .map(|id| What::Header(id.to_owned()))
        }
    }
}

/// One `millrace demo` process.
pub(super) struct Proc {
    pub(super) child: Child,
    pub(super) client_id: String,
    /// Printed `started` and not yet `stopped`.
    pub(super) holding: bool,
    /// Killed, or closed its stdout: it runs nothing.
    pub(super) gone: bool,
    /// The benchmark killed or interrupted it.
    pub(super) asked_to_leave: bool,
    pub(super) reaped: bool,
    /// The last lines it printed, on stdout and stderr.
    pub(super) tail: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    fn tail(&self) -> String {
        let tail = self.tail.lock().expect("lock poisoned");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A `started` read while another process held the instance, waiting for that holder's
/// `stopped` to be read.
struct Suspicion {
    started: usize,
    holder: usize,
    at: Instant,
}

/// The demo processes and what their lines tell.
pub(super) struct Fleet {
    exe: PathBuf,
    args: Vec<String>,
    /// `None` when the PG* variables, which the demos inherit, say where the database is.
    database_url: Option<String>,
    pub(super) procs: Vec<Proc>,
    tx: mpsc::UnboundedSender<Note>,
    rx: mpsc::UnboundedReceiver<Note>,
    pub(super) starts: Vec<(usize, Instant)>,
    stops: Vec<(usize, Instant)>,
    suspicions: Vec<Suspicion>,
    pub(super) overlaps: u32,
    pub(super) reordered: u32,
    pub(super) max_reorder: Duration,
}

impl Fleet {
    pub(super) fn new(exe: PathBuf, args: Vec<String>, database_url: Option<String>) -> Fleet {
        let (tx, rx) = mpsc::unbounded_channel();
        Fleet {
            exe,
            args,
            database_url,
            procs: Vec::new(),
            tx,
            rx,
            starts: Vec::new(),
            stops: Vec::new(),
            suspicions: Vec::new(),
            overlaps: 0,
            reordered: 0,
            max_reorder: Duration::ZERO,
        }
    }

    /// Starts a demo and waits until it has printed its client id.
    pub(super) async fn spawn(&mut self) -> anyhow::Result<usize> {
        let mut command = std::process::Command::new(&self.exe);
        command.args(&self.args);
        // Through the environment rather than the command line, which `ps` shows.
        if let Some(url) = &self.database_url {
            command.env("DATABASE_URL", url);
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", self.exe.display()))?;
        let proc = self.procs.len();
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let tx = self.tx.clone();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        std::thread::spawn({
            let tail = tail.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let at = Instant::now();
                    if let Some(what) = What::parse(&line) {
                        if tx.send(Note { proc, at, what }).is_err() {
                            return;
                        }
                    }
                    push_tail(&tail, line);
                }
                let _ = tx.send(Note {
                    proc,
                    at: Instant::now(),
                    what: What::Exited,
                });
            }
        });
        std::thread::spawn({
            let tail = tail.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { return };
                    push_tail(&tail, format!("stderr: {line}"));
                }
            }
        });
        self.procs.push(Proc {
            child,
            client_id: String::new(),
            holding: false,
            gone: false,
            asked_to_leave: false,
            reaped: false,
            tail,
        });
        let until = Instant::now() + Duration::from_secs(60);
        while self.procs[proc].client_id.is_empty() {
            if self.next(until).await?.is_none() {
                bail!("the demo did not print its client id within a minute");
            }
        }
        Ok(proc)
    }

    /// Takes the next line of interest, up to `until`; `None` when none came. Starts read while
    /// another process held the instance are judged as their slack runs out, lines or not.
    async fn next(&mut self, until: Instant) -> anyhow::Result<Option<Note>> {
        loop {
            let wake = until.min(Instant::now() + LINE_ORDER_SLACK / 4);
            // The channel cannot close: the fleet holds a sender.
            if let Ok(Some(note)) = tokio::time::timeout_at(wake.into(), self.rx.recv()).await {
                self.apply(&note)?;
                self.expire_suspicions(Instant::now());
                return Ok(Some(note));
            }
            self.expire_suspicions(Instant::now());
            if Instant::now() >= until {
                return Ok(None);
            }
        }
    }

    fn apply(&mut self, note: &Note) -> anyhow::Result<()> {
        let p = note.proc;
        match &note.what {
            What::Header(id) => self.procs[p].client_id = id.clone(),
            What::Started(client) | What::Stopped(client) if *client != self.procs[p].client_id => {
                bail!(
                    "the demo with client id {} printed a line about client {client}",
                    self.procs[p].client_id
                );
            }
            What::Started(_) => {
                for (q, other) in self.procs.iter().enumerate() {
                    if q != p && other.holding && !other.gone {
                        self.suspicions.push(Suspicion {
                            started: p,
                            holder: q,
                            at: note.at,
                        });
                    }
                }
                self.procs[p].holding = true;
                self.starts.push((p, note.at));
            }
            What::Stopped(_) => {
                self.procs[p].holding = false;
                self.stops.push((p, note.at));
                self.resolve(p, note.at);
            }
            What::Exited => {
                self.procs[p].holding = false;
                self.procs[p].gone = true;
                self.resolve(p, note.at);
                if !self.procs[p].asked_to_leave {
                    bail!(
                        "demo {} exited unexpectedly; its last lines:\n{}",
                        self.procs[p].client_id,
                        self.procs[p].tail()
                    );
                }
            }
        }
        Ok(())
    }

    /// The holder `p` was read to stop at `at`: settles the starts read while it held.
    fn resolve(&mut self, p: usize, at: Instant) {
        let mut kept = Vec::new();
        for s in self.suspicions.drain(..) {
            if s.holder != p {
                kept.push(s);
                continue;
            }
            let late = at.saturating_duration_since(s.at);
            if late > LINE_ORDER_SLACK {
                self.overlaps += 1;
                // A closed stdout is reported by the next line the benchmark checks.
                let _ = outln!(
                    "TWO INSTANCES: {} started the instance {} ms before {} stopped it",
                    self.procs[s.started].client_id,
                    ms(late),
                    self.procs[p].client_id
                );
            } else {
                self.reordered += 1;
                self.max_reorder = self.max_reorder.max(late);
            }
        }
        self.suspicions = kept;
    }

    fn expire_suspicions(&mut self, now: Instant) {
        let (expired, kept): (Vec<Suspicion>, Vec<Suspicion>) = self
            .suspicions
            .drain(..)
            .partition(|s| now.saturating_duration_since(s.at) > LINE_ORDER_SLACK);
        self.suspicions = kept;
        for s in expired {
            self.overlaps += 1;
            // A closed stdout is reported by the next line the benchmark checks.
            let _ = outln!(
                "TWO INSTANCES: {} started the instance while {} held it",
                self.procs[s.started].client_id,
                self.procs[s.holder].client_id
            );
        }
    }

    /// Reads lines for `how_long`.
    pub(super) async fn settle(&mut self, how_long: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + how_long;
        while self.next(until).await?.is_some() {}
        Ok(())
    }

    /// The process holding the instance; waits for one.
    pub(super) async fn wait_holder(&mut self, within: Duration) -> anyhow::Result<usize> {
        let until = Instant::now() + within;
        loop {
            if let Some(p) = self.procs.iter().position(|p| p.holding && !p.gone) {
                return Ok(p);
            }
            if self.next(until).await?.is_none() && Instant::now() >= until {
                bail!("no demo held the instance within {within:?}");
            }
        }
    }

    /// The first start read after `since` by a process other than `not`; waits for one.
    pub(super) async fn wait_start(
        &mut self,
        since: Instant,
        not: Option<usize>,
        within: Duration,
    ) -> anyhow::Result<(usize, Instant)> {
        let until = Instant::now() + within;
        loop {
            let found = self
                .starts
                .iter()
                .find(|(p, at)| *at >= since && Some(*p) != not)
                .copied();
            if let Some(found) = found {
                return Ok(found);
            }
            if self.next(until).await?.is_none() && Instant::now() >= until {
                bail!("no start within {within:?}");
            }
        }
    }

    /// When `p` was read to stop after `since`; waits for it.
    pub(super) async fn wait_stop(
        &mut self,
        p: usize,
        since: Instant,
        within: Duration,
    ) -> anyhow::Result<Instant> {
        let until = Instant::now() + within;
        loop {
            let found = self
                .stops
                .iter()
                .find(|(q, at)| *q == p && *at >= since)
                .map(|(_, at)| *at);
            if let Some(at) = found {
                return Ok(at);
            }
            if self.procs[p].gone {
                let status = self.procs[p].child.wait()?;
                self.procs[p].reaped = true;
                // Let the stderr thread catch up before showing what the demo printed.
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "{} exited ({status}) without printing that the instance stopped; its last \
                     lines:\n{}",
                    self.procs[p].client_id,
                    self.procs[p].tail()
                );
            }
            if self.next(until).await?.is_none() && Instant::now() >= until {
                bail!("no stop within {within:?}");
            }
        }
    }

    /// Kills `p` with SIGKILL; returns when.
    pub(super) fn kill(&mut self, p: usize) -> Instant {
        let proc = &mut self.procs[p];
        proc.asked_to_leave = true;
        let at = Instant::now();
        let _ = proc.child.kill();
        // A killed process runs nothing from now on, whatever its last line said.
        proc.holding = false;
        proc.gone = true;
        self.resolve(p, at);
        at
    }

    /// Sends SIGINT to `p`, which stops gracefully; returns when.
    pub(super) fn interrupt(&mut self, p: usize) -> anyhow::Result<Instant> {
        let proc = &mut self.procs[p];
        proc.asked_to_leave = true;
        let at = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-INT", &proc.child.id().to_string()])
            .status()
            .context("could not run kill -INT")?;
        if !status.success() {
            bail!("kill -INT {} failed", proc.child.id());
        }
        Ok(at)
    }

    /// Waits until `p` closed its stdout and exited.
    pub(super) async fn wait_exit(&mut self, p: usize, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            if self.procs[p].gone {
                if let Some(_status) = self.procs[p].child.try_wait()? {
                    self.procs[p].reaped = true;
                    return Ok(());
                }
                if Instant::now() >= until {
                    bail!("{} did not exit within {within:?}", self.procs[p].client_id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            if self.next(until).await?.is_none() && Instant::now() >= until {
                bail!("{} did not exit within {within:?}", self.procs[p].client_id);
            }
        }
    }

    /// Stops every demo still running: SIGINT, then SIGKILL after 15 s.
    pub(super) async fn shutdown(&mut self) {
        for proc in &mut self.procs {
            if !proc.reaped {
                proc.asked_to_leave = true;
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &proc.child.id().to_string()])
                    .status();
            }
        }
        let until = Instant::now() + Duration::from_secs(15);
        for proc in &mut self.procs {
            while !proc.reaped {
                match proc.child.try_wait() {
                    Ok(Some(_)) | Err(_) => proc.reaped = true,
                    Ok(None) if Instant::now() >= until => {
                        let _ = proc.child.kill();
                        let _ = proc.child.wait();
                        proc.reaped = true;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            if !proc.reaped {
                let _ = proc.child.kill();
                let _ = proc.child.wait();
            }
        }
    }
}

/// Keeps the last lines a demo printed, to show when it does something unexpected.
fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut tail = tail.lock().expect("lock poisoned");
    if tail.len() == 20 {
        tail.pop_front();
    }
    tail.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_lines_are_recognised() {
        assert!(matches!(
            What::parse("persistent-worker ticker started client=host_2024"),
            Some(What::Started(c)) if c == "host_2024"
        ));
        assert!(matches!(
            What::parse("persistent-worker ticker stopped client=host_2024"),
            Some(What::Stopped(c)) if c == "host_2024"
        ));
        assert!(matches!(
            What::parse("millrace demo: client host_2024 on schema s, inserting 1 jobs/s"),
            Some(What::Header(c)) if c == "host_2024"
        ));
        assert!(What::parse("completed  demo_send_email job 1").is_none());
    }
}
