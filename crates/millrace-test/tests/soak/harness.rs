//! The soak's harness: the bounds both soaks share, the processes they start and the folder
//! they log to, and what their fault tasks share.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The workers' heartbeat and persistent lease: short, so that pauses and blackholes outlast it.
pub(crate) const LEASE: Duration = Duration::from_secs(4);
/// The longest the fleet may take to finish every job once faults stop (generous: CI is two
/// busy cores).
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(150);
/// The longest a recovery is waited for; beyond it the fault counts as not recovered.
pub(crate) const RECOVERY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a process may take to say `ready`, or to exit after SIGTERM.
pub(crate) const PROCESS_DEADLINE: Duration = Duration::from_secs(30);
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Where one soak's processes log (and, on SQLite, its database lives); kept when the soak
/// fails, removed when it passes.
#[derive(Clone)]
pub(crate) struct LogDir {
    pub(crate) dir: PathBuf,
}

impl LogDir {
    pub(crate) fn new(name: &str) -> LogDir {
        let dir = std::env::temp_dir().join(format!("millrace-soak-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the soak's folder");
        LogDir { dir }
    }

    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A soak process, killed if the test ends without stopping it.
pub(crate) struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts a process and waits for its `ready`. A worker whose client cannot start (the
    /// database is down, say) exits with an error; like a process supervisor, this starts it
    /// again, a bounded number of times.
    pub(crate) async fn spawn(logs: &LogDir, name: &str, args: &[&str], more: &[&str]) -> Proc {
        const STARTS: u32 = 20;
        let mut failures = Vec::new();
        for start in 0..STARTS {
            match Proc::try_spawn(logs, &format!("{name}.{start}"), args, more).await {
                Ok(proc) => return proc,
                Err(log) => failures.push(log),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "{name} did not start in {STARTS} tries; the last said:\n{}",
            failures.last().map_or("", String::as_str)
        );
    }

    async fn try_spawn(
        logs: &LogDir,
        name: &str,
        args: &[&str],
        more: &[&str],
    ) -> Result<Proc, String> {
        let log = logs.dir.join(format!("{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_millrace-soak-worker"))
            .args(args)
            .args(more)
            // Ends by itself should this test die without stopping it.
            .args(["--seconds", "7200"])
            .env("RUST_LOG", "warn,millrace=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("create a log file"))
            .spawn()
            .expect("spawn millrace-soak-worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Ends at `ready`, or when the process closes its stdout by exiting.
        let ready = tokio::task::spawn_blocking(move || rx.recv_timeout(PROCESS_DEADLINE))
            .await
            .expect("wait for ready");
        let proc = Proc {
            child: Some(child),
            log,
        };
        if matches!(ready.as_deref(), Ok("ready")) {
            Ok(proc)
        } else {
            Err(proc.lines().join("\n"))
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// SIGKILL, reaped; returns when it was killed.
    pub(crate) fn kill(mut self) -> Instant {
        let mut child = self.child.take().expect("a live process");
        let _ = child.kill();
        let at = Instant::now();
        let _ = child.wait();
        at
    }

    /// Waits for the process to exit by itself.
    pub(crate) async fn wait_exit(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("a live process");
        while child.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "a process did not exit within {limit:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        self.child = None;
    }

    /// SIGTERM, then waits for a clean exit; returns its log.
    pub(crate) async fn terminate(mut self) -> String {
        let pid = self.pid();
        signal(pid, "-TERM");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let mut child = self.child.take().expect("a live process");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} did not exit within {PROCESS_DEADLINE:?} of SIGTERM"
            );
            tokio::time::sleep(POLL).await;
        };
        let log = self.lines().join("\n");
        assert!(
            status.success(),
            "process {pid} exited with {status}:\n{log}"
        );
        log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Locks a mutex shared by the fault tasks; a task that panicked holding it has already
/// failed the soak, so the others read on.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn signal(pid: u32, which: &str) {
    // `kill` with pid 0 would signal the whole process group, this test included.
    assert!(pid > 0, "no process to signal");
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}
