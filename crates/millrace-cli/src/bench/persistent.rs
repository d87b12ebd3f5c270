//! `millrace bench persistent`: how fast a persistent worker's instance moves between
//! processes, and a watch for any moment with two instances.
//!
//! The benchmark runs a fleet of `millrace demo` processes (this very binary), each with the
//! demo's persistent worker `ticker`, and reads the `persistent-worker ticker started/stopped
//! client=…` lines they print. Each trial first kills the holder with SIGKILL and times the
//! failover (the kill to another process's `started` line), then stops the next holder with
//! SIGINT and times the handover (its `stopped` line to another's `started` line); a fresh
//! process replaces each one that left, so the fleet keeps its size.
//!
//! Two instances are watched for in two ways: from the lines (a `started` while another live
//! process holds the instance) and from the database (sampled every 50 ms: at most one row of
//! the worker is running, and at most one is live).

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use millrace::{MigrateOpts, Migrator, Schema};
use millrace_postgres::PgDriver;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::mpsc;

use crate::database::{ConnectionArgs, Database, postgres_options};
use crate::output::{errln, outln};
use crate::signals::Signals;

/// The kind of the demo's persistent worker.
const TICKER_KIND: &str = "millrace_persistent:ticker";
const STARTED: &str = "persistent-worker ticker started client=";
const STOPPED: &str = "persistent-worker ticker stopped client=";
const HEADER: &str = "millrace demo: client ";

/// Each process's stdout is read by a thread of its own, so two lines written a moment apart
/// by two processes may be read in the other order. A `started` read while another process
/// still holds the instance counts as two instances only when that holder's `stopped` does not
/// follow within this much.
const LINE_ORDER_SLACK: Duration = Duration::from_millis(250);

/// How long the fleet runs undisturbed after a process joins, before the next trial.
const SETTLE: Duration = Duration::from_secs(1);

/// How often the database is sampled for a second instance.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Args)]
pub(crate) struct PersistentArgs {
    /// PostgreSQL only; the URL reaches the demo processes through their environment, the
    /// other connection flags through their command lines.
    #[command(flatten)]
    connection: Box<ConnectionArgs>,
    /// Use (and keep) this schema, created and migrated if needed. By default the benchmark
    /// creates a schema of its own and drops it at the end.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// How many times to measure each of failover after SIGKILL and handover after SIGINT:
    /// 1 to 1,000.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    trials: u32,
    /// The persistent worker's lease (and the demos' heartbeat lease), in seconds: 1 to
    /// 3,600, as `millrace demo --lease` accepts.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    lease: u64,
    /// How many `millrace demo` processes make up the fleet: 2 to 32.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=32))]
    clients: u32,
}

/// What the trials measured.
struct Report {
    kill_failover: Vec<Duration>,
    stop_handover: Vec<Duration>,
    two_instances: u32,
}

impl PersistentArgs {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let Database::Postgres(options) = self.connection.database("bench persistent", None)?
        else {
            bail!("millrace bench persistent runs on PostgreSQL only: give a postgres:// URL");
        };
        // From here on SIGINT and SIGTERM end the benchmark through its cleanup: the demos
        // are killed and the schema dropped.
        let mut signals = Signals::new()?;
        let opts = signals.interruptible(postgres_options(&options)).await?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(opts);
        let (schema, owned) = match &self.schema {
            Some(name) => (Schema::new(name).context("invalid --schema")?, false),
            None => (
                Schema::new(format!("millrace_bench_persistent_{}", std::process::id()))?,
                true,
            ),
        };
        let work = async {
            exec(
                &pool,
                &format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.name()),
            )
            .await?;
            // Migrated here, so the demos, started one after another, find nothing to do.
            Migrator::new(PgDriver::new(pool.clone()).with_schema(schema.clone()))
                .migrate_up(MigrateOpts::default())
                .await
                .context("could not migrate the benchmark schema")?;
            self.bench(&pool, &schema).await
        };
        // A signal drops the fleet, whose demos are killed with it, and the sampler.
        let result = signals.interruptible(work).await;
        if owned {
            let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema.name());
            let dropped = tokio::select! {
                dropped = exec(&pool, &drop) => dropped,
                signal = signals.recv() => Err(anyhow::anyhow!(
                    "{signal} while dropping the benchmark's schema: it is left behind; run {drop}"
                )),
            };
            match (&result, dropped) {
                (_, Ok(())) => {}
                (Ok(_), Err(err)) => return Err(err),
                (Err(_), Err(err)) => errln!("warning: {err:#}"),
            }
        }
        let report = result?;
        let kill = Stats::of(&report.kill_failover);
        let stop = Stats::of(&report.stop_handover);
        outln!(
            "kill failover (SIGKILL of the holder to another's start): p50 {} ms, max {} ms \
             (promised: within the lease plus 2 s, {} ms)",
            kill.p50_ms,
            kill.max_ms,
            (self.lease + 2) * 1000
        )?;
        outln!(
            "stop handover (the holder's stop to another's start): p50 {} ms, max {} ms \
             (promised: within 2000 ms)",
            stop.p50_ms,
            stop.max_ms
        )?;
        outln!(
            "kill_failover_p50_ms={} kill_failover_max_ms={} stop_handover_p50_ms={} \
             stop_handover_max_ms={} two_instances={} trials={} lease_s={}",
            kill.p50_ms,
            kill.max_ms,
            stop.p50_ms,
            stop.max_ms,
            report.two_instances,
            self.trials,
            self.lease
        )?;
        Ok(if report.two_instances == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    async fn bench(&self, pool: &PgPool, schema: &Schema) -> anyhow::Result<Report> {
        let lease = Duration::from_secs(self.lease);
        let promised_failover = lease + Duration::from_secs(2);
        // Deadlines are generous: a trial that misses one is a failure of the guarantee, and is
        // reported as an error rather than as a figure.
        let failover_deadline = promised_failover * 3;
        let exit_deadline = Duration::from_secs(30);
        outln!(
            "settings: clients={} trials={} lease={}s schema={}",
            self.clients,
            self.trials,
            self.lease,
            schema.name()
        )?;

        let sampler = DbSampler::start(pool.clone(), schema);
        let mut fleet = Fleet::new(
            std::env::current_exe().context("could not find the millrace binary")?,
            [
                "demo".to_owned(),
                "--schema".to_owned(),
                schema.name().to_owned(),
                "--lease".to_owned(),
                self.lease.to_string(),
                "--rate".to_owned(),
                "1".to_owned(),
            ]
            .into_iter()
            .chain(self.connection.child_args())
            .collect(),
            self.connection.database_url.clone(),
        );
        let result = async {
            let spawned = Instant::now();
            for _ in 0..self.clients {
                fleet.spawn().await?;
            }
            let (first, at) = fleet
                .wait_start(spawned, None, failover_deadline)
                .await
                .context("no demo started the instance")?;
            outln!(
                "the instance started on {} {} ms after the first demo was spawned",
                fleet.procs[first].client_id,
                ms(at - spawned)
            )?;
            fleet.settle(SETTLE).await?;

            let mut report = Report {
                kill_failover: Vec::new(),
                stop_handover: Vec::new(),
                two_instances: 0,
            };
            for trial in 1..=self.trials {
                // The holder renews four times per lease, and the failover depends on how long
                // before the kill it last did: kill at a random point of that cycle, as a crash
                // would, rather than always at the same one.
                fleet.settle(random_below(lease / 4)).await?;
                let holder = fleet.wait_holder(failover_deadline).await?;
                let killed_at = fleet.kill(holder);
                let (next, at) = fleet
                    .wait_start(killed_at, Some(holder), failover_deadline)
                    .await
                    .with_context(|| {
                        format!("trial {trial}: no demo took the instance over after SIGKILL")
                    })?;
                let failover = at - killed_at;
                outln!(
                    "trial {trial}/{}: SIGKILL of {}; {} started the instance {} ms later",
                    self.trials,
                    fleet.procs[holder].client_id,
                    fleet.procs[next].client_id,
                    ms(failover)
                )?;
                report.kill_failover.push(failover);
                fleet.wait_exit(holder, exit_deadline).await?;
                fleet.spawn().await?;
                fleet.settle(SETTLE).await?;

                let holder = fleet.wait_holder(failover_deadline).await?;
                let asked = fleet.interrupt(holder)?;
                let stopped = fleet
                    .wait_stop(holder, asked, exit_deadline)
                    .await
                    .with_context(|| format!("trial {trial}: the holder did not stop"))?;
                let (next, started) = fleet
                    .wait_start(asked, Some(holder), failover_deadline)
                    .await
                    .with_context(|| {
                        format!("trial {trial}: no demo took the instance over after SIGINT")
                    })?;
                // A start before the stop is counted as two instances by the fleet's watch.
                let handover = started.saturating_duration_since(stopped);
                outln!(
                    "trial {trial}/{}: SIGINT of {}, stopped {} ms later; {} started the \
                     instance {} ms after the stop",
                    self.trials,
                    fleet.procs[holder].client_id,
                    ms(stopped - asked),
                    fleet.procs[next].client_id,
                    ms(handover)
                )?;
                report.stop_handover.push(handover);
                fleet.wait_exit(holder, exit_deadline).await?;
                fleet.spawn().await?;
                fleet.settle(SETTLE).await?;
            }
            // The last starts may still be unresolved: give them their slack.
            fleet.settle(LINE_ORDER_SLACK * 2).await?;
            Ok::<_, anyhow::Error>(report)
        }
        .await;
        let samples = sampler.stop();
        fleet.shutdown().await;
        let mut report = result?;
        outln!(
            "lines: {} starts, {} while another process held the instance; {} pairs of lines \
             read out of order (by at most {} ms)",
            fleet.starts.len(),
            fleet.overlaps,
            fleet.reordered,
            ms(fleet.max_reorder)
        )?;
        outln!(
            "database: {} samples, at most {} running and {} live rows of {TICKER_KIND} \
             ({} rows at most in all), {} moments with two, {} failed samples",
            samples.samples,
            samples.max_running,
            samples.max_live,
            samples.max_rows,
            samples.violations,
            samples.errors
        )?;
        report.two_instances = fleet.overlaps + samples.violations;
        Ok(report)
    }
}

/// The median and the worst of some durations, in whole milliseconds.
struct Stats {
    p50_ms: u128,
    max_ms: u128,
}

impl Stats {
    fn of(values: &[Duration]) -> Stats {
        let mut sorted: Vec<u128> = values.iter().map(|d| d.as_millis()).collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let p50_ms = match n {
            0 => 0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]).div_ceil(2),
        };
        Stats {
            p50_ms,
            max_ms: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// A duration picked evenly below `bound`, random enough to spread the kills.
fn random_below(bound: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    bound.mul_f64(f64::from(nanos % 1_000_000) / 1_000_000.0)
}

fn ms(d: Duration) -> u128 {
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
struct Proc {
    child: Child,
    client_id: String,
    /// Printed `started` and not yet `stopped`.
    holding: bool,
    /// Killed, or closed its stdout: it runs nothing.
    gone: bool,
    /// The benchmark killed or interrupted it.
    asked_to_leave: bool,
    reaped: bool,
    /// The last lines it printed, on stdout and stderr.
    tail: Arc<Mutex<VecDeque<String>>>,
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
struct Fleet {
    exe: PathBuf,
    args: Vec<String>,
    /// `None` when the PG* variables, which the demos inherit, say where the database is.
    database_url: Option<String>,
    procs: Vec<Proc>,
    tx: mpsc::UnboundedSender<Note>,
    rx: mpsc::UnboundedReceiver<Note>,
    starts: Vec<(usize, Instant)>,
    stops: Vec<(usize, Instant)>,
    suspicions: Vec<Suspicion>,
    overlaps: u32,
    reordered: u32,
    max_reorder: Duration,
}

impl Fleet {
    fn new(exe: PathBuf, args: Vec<String>, database_url: Option<String>) -> Fleet {
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
    async fn spawn(&mut self) -> anyhow::Result<usize> {
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
    async fn settle(&mut self, how_long: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + how_long;
        while self.next(until).await?.is_some() {}
        Ok(())
    }

    /// The process holding the instance; waits for one.
    async fn wait_holder(&mut self, within: Duration) -> anyhow::Result<usize> {
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
    async fn wait_start(
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
    async fn wait_stop(
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
    fn kill(&mut self, p: usize) -> Instant {
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
    fn interrupt(&mut self, p: usize) -> anyhow::Result<Instant> {
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
    async fn wait_exit(&mut self, p: usize, within: Duration) -> anyhow::Result<()> {
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
    async fn shutdown(&mut self) {
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

/// What the database showed of the instance's rows.
#[derive(Debug, Default, Clone)]
struct Samples {
    samples: u64,
    errors: u64,
    max_running: i64,
    max_live: i64,
    max_rows: i64,
    /// Moments (runs of consecutive samples) with more than one running or live row.
    violations: u32,
}

/// Samples the instance's rows every [`SAMPLE_EVERY`] on a task of its own.
struct DbSampler {
    task: tokio::task::JoinHandle<()>,
    samples: Arc<Mutex<Samples>>,
}

impl DbSampler {
    fn start(pool: PgPool, schema: &Schema) -> DbSampler {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE state = 'running'), \
                    count(*) FILTER (WHERE state NOT IN ('completed', 'cancelled', 'discarded')), \
                    count(*) \
             FROM {} WHERE kind = '{TICKER_KIND}'",
            schema.qualify("river_job")
        );
        let samples = Arc::new(Mutex::new(Samples::default()));
        let shared = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut violating = false;
            loop {
                tick.tick().await;
                let row: Result<(i64, i64, i64), _> = sqlx::query_as(AssertSqlSafe(sql.clone()))
                    .fetch_one(&pool)
                    .await;
                let mut s = shared.lock().expect("lock poisoned");
                match row {
                    Ok((running, live, rows)) => {
                        s.samples += 1;
                        s.max_running = s.max_running.max(running);
                        s.max_live = s.max_live.max(live);
                        s.max_rows = s.max_rows.max(rows);
                        let two = running > 1 || live > 1;
                        if two && !violating {
                            s.violations += 1;
                            // A closed stdout is reported by the next line the benchmark checks.
                            let _ = outln!(
                                "TWO INSTANCES in the database: {running} running and {live} live rows"
                            );
                        }
                        violating = two;
                    }
                    Err(_) => s.errors += 1,
                }
            }
        });
        DbSampler { task, samples }
    }

    fn stop(self) -> Samples {
        self.task.abort();
        self.samples.lock().expect("lock poisoned").clone()
    }
}

/// A benchmark stopped by a signal drops the sampler unstopped: its task would otherwise go on
/// querying the schema that is dropped next.
impl Drop for DbSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn exec(pool: &PgPool, sql: &str) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .with_context(|| format!("could not run {sql}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let d = |ms| Duration::from_millis(ms);
        let stats = Stats::of(&[d(40), d(10), d(30), d(20)]);
        assert_eq!((stats.p50_ms, stats.max_ms), (25, 40));
        let stats = Stats::of(&[d(7), d(3), d(5)]);
        assert_eq!((stats.p50_ms, stats.max_ms), (5, 7));
    }

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
