//! The fleet: two load clients in this process and one `millrace-load-worker` process, and
//! the killing of their connections.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use millrace::{Client, Schema};
use millrace_postgres::PgDriver;
use sqlx::PgPool;
use tokio::time::Instant;

use super::load_worker::{load_client, load_pool_with, record_failures};
use super::{MAX_WORKERS, POLL, POOL_SIZE, PROCESS_DEADLINE};

/// Three load clients on one schema: two in this process, one `millrace-load-worker` process.
pub(crate) struct Fleet {
    pub(crate) clients: Vec<Client<PgDriver>>,
    process: LoadProcess,
    /// Each client's `application_name`, so a test can kill exactly their connections.
    pub(crate) application_names: Vec<String>,
}

impl Fleet {
    pub(crate) const CLIENT_IDS: [&'static str; 3] =
        ["load_client_1", "load_client_2", "load_process"];

    pub(crate) async fn start(url: &str, schema: &Schema, acquire_timeout: Duration) -> Fleet {
        let application_names: Vec<String> = (1..=3)
            .map(|n| format!("mrproof_{}_{n}", schema.name()))
            .collect();
        let process = LoadProcess::spawn(
            url,
            schema,
            &application_names[2],
            Self::CLIENT_IDS[2],
            acquire_timeout,
        )
        .await;
        let mut clients = Vec::new();
        for (id, name) in Self::CLIENT_IDS.iter().zip(&application_names).take(2) {
            let pool = load_pool_with(url, name, POOL_SIZE, acquire_timeout).expect("pool");
            let client = load_client(pool, schema, id, MAX_WORKERS).expect("client");
            client.start().await.expect("start");
            clients.push(client);
        }
        Fleet {
            clients,
            process,
            application_names,
        }
    }

    /// What a stalled run looks like from here, for its failure message: the in-process
    /// pools' sizes and idle connections, why this process's workers failed to record their
    /// runs, and what the fleet's server connections are doing.
    pub(crate) async fn report(&self, pool: &PgPool) -> String {
        let pools: Vec<(u32, usize)> = self
            .clients
            .iter()
            .map(|c| (c.driver().pool().size(), c.driver().pool().num_idle()))
            .collect();
        type Activity = (String, i32, Option<String>, Option<String>, Option<String>);
        let activity: Vec<Activity> = sqlx::query_as(
            "SELECT application_name, pid, state, wait_event_type || ':' || wait_event, \
             left(query, 100) FROM pg_stat_activity WHERE application_name = ANY($1) \
             ORDER BY 1, 2",
        )
        .bind(&self.application_names)
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        format!(
            "in-process pools (size, idle): {pools:?}\nfailed recordings in this process: \
             {:?}\nthe fleet's server connections:\n{}",
            record_failures::snapshot(),
            activity
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Stops every client softly, the process by SIGTERM (it must exit 0), and returns the
    /// process's log.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        for client in &self.clients {
            client.stop().await.expect("stop a client");
        }
        self.process.terminate().await
    }
}

/// A running `millrace-load-worker`, killed if the test ends without stopping it.
pub(crate) struct LoadProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl LoadProcess {
    pub(crate) async fn spawn(
        url: &str,
        schema: &Schema,
        application_name: &str,
        id: &str,
        acquire_timeout: Duration,
    ) -> LoadProcess {
        Self::spawn_with(url, schema, application_name, id, acquire_timeout, &[]).await
    }

    /// [`LoadProcess::spawn`] with more arguments for `millrace-load-worker`.
    pub(crate) async fn spawn_with(
        url: &str,
        schema: &Schema,
        application_name: &str,
        id: &str,
        acquire_timeout: Duration,
        extra: &[&str],
    ) -> LoadProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_millrace-load-worker"))
            .args(extra)
            .args(["--database-url", url, "--schema", schema.name()])
            .args(["--application-name", application_name, "--client-id", id])
            .args(["--max-workers", &MAX_WORKERS.to_string()])
            .args(["--pool-size", &POOL_SIZE.to_string()])
            .args([
                "--acquire-timeout-ms",
                &acquire_timeout.as_millis().to_string(),
            ])
            // Ends by itself should this test die without stopping it.
            .args(["--seconds", "110"])
            .env("RUST_LOG", "warn,millrace=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn millrace-load-worker");
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let child_stderr = child.stderr.take().expect("piped stderr");
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(child_stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let process = LoadProcess {
            child,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        };
        let expected = format!("ready {id}");
        let ready = tokio::time::timeout(PROCESS_DEADLINE, async {
            while let Some(line) = lines.recv().await {
                if line == expected {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "millrace-load-worker did not start within {PROCESS_DEADLINE:?}; its log:\n{}",
            process.stderr.lock().expect("lock").join("\n")
        );
        process
    }

    /// Sends SIGTERM, waits for a clean exit, and returns the process's log.
    pub(crate) async fn terminate(&mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "millrace-load-worker did not exit within {PROCESS_DEADLINE:?} of SIGTERM"
            );
            tokio::time::sleep(POLL).await;
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let log = self.stderr.lock().expect("lock").clone();
        assert!(
            status.success(),
            "millrace-load-worker exited with {status} after SIGTERM; its log:\n{}",
            log.join("\n")
        );
        log
    }
}

impl LoadProcess {
    /// Sends SIGKILL and reaps the process: it dies mid-work, holding its running jobs.
    pub(crate) fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the process");
        self.child.wait().expect("reap the process");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for LoadProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Terminates every backend of the given application names; returns how many.
pub(crate) async fn kill_connections(pool: &PgPool, application_names: &[String]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = ANY($1) AND pid <> pg_backend_pid()",
    )
    .bind(application_names)
    .fetch_one(pool)
    .await
    .expect("terminate the fleet's connections")
}
