//! The clients' logs: a runtime per test that captures them, and what a proof checks of
//! their warnings.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The log lines of the clients running in one test's runtime.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("lock"))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Prints the logs when the test fails, for its report.
struct PrintOnPanic(Logs);

impl Drop for PrintOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "log of the clients in this process:\n{}",
                self.0.lines().join("\n")
            );
        }
    }
}

/// Runs a test on a runtime of its own whose every thread logs into the [`Logs`] it hands the
/// test (`warn`, and `info` from Millrace), so a test sees its own clients' logs only, also
/// when tests share a process.
pub(crate) fn run_logged<F, Fut>(test: F)
where
    F: FnOnce(Logs) -> Fut,
    Fut: Future<Output = ()>,
{
    let logs = Logs::default();
    let buffer = logs.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,millrace=info"))
        .with_ansi(false)
        .with_writer(move || LogWriter(buffer.clone()))
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let for_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads live as long as it does; so does their default.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .expect("build the runtime");
    let _default = tracing::dispatcher::set_default(&dispatch);
    let _print = PrintOnPanic(logs.clone());
    runtime.block_on(test(logs));
}

fn warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect()
}

pub(crate) fn print_warnings(in_process: &[String], process: &[String]) {
    let warnings_here = warnings(in_process);
    let warnings_there = warnings(process);
    eprintln!(
        "warnings of the clients in this process ({}):\n{}\nwarnings of millrace-load-worker ({}):\n{}",
        warnings_here.len(),
        warnings_here
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        warnings_there.len(),
        warnings_there
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

/// Asserts that each part of each client logged each outage about once (one more per client
/// allowed): a part that logs every failed retry shows up several times per outage, since the
/// outage outlasts the pools' acquire timeout and the retries fail again and again.
///
/// Counts Millrace's own messages, keyed by target, message and `service` field. sqlx logs each
/// dead connection of a pool once, which is bounded by the pool's size, not by time.
pub(crate) fn assert_warnings_bounded(lines: &[String], clients: usize, outages: usize) {
    let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
    for line in warnings(lines) {
        let Some(start) = line.find("millrace::") else {
            continue;
        };
        let (target, rest) = line[start..]
            .split_once(": ")
            .unwrap_or((&line[start..], ""));
        // The fields (`err=...`, `service=...`) follow the message.
        let message: Vec<&str> = rest.split(' ').take_while(|w| !w.contains('=')).collect();
        let service = rest
            .split(' ')
            .find(|w| w.starts_with("service="))
            .unwrap_or("");
        let key = format!("{target}: {} {service}", message.join(" "));
        *per_message.entry(key).or_default() += 1;
    }
    let bound = clients * (outages + 1);
    let looping: Vec<_> = per_message
        .iter()
        .filter(|(_, count)| **count > bound)
        .collect();
    assert!(
        looping.is_empty(),
        "logged more than {bound} times for {outages} outages of {clients} clients, so logged \
         in a loop rather than once per outage: {looping:?}"
    );
}
