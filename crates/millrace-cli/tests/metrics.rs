//! `millrace demo --metrics-addr`: a Prometheus page scraped over HTTP while the demo runs,
//! read by an independent parser (issue 16).
#![cfg(feature = "metrics")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

/// A folder of the test's own for the demo's SQLite file, removed at the end.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("millrace-metrics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test folder");
        Folder(path)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// GETs `/metrics` over HTTP/1.1 and returns the head and the (de-chunked) body.
async fn scrape(addr: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (head.to_owned(), body.to_owned());
    }
    let (mut out, mut rest) = (String::new(), body);
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return (head.to_owned(), out);
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[tokio::test]
async fn demo_serves_otelriver_metrics_and_queue_gauges_to_prometheus() {
    let folder = Folder::new("demo");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args([
            "demo",
            "--duration",
            "30",
            "--rate",
            "50",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .current_dir(&folder.0)
        .env_remove("DATABASE_URL")
        .env_remove("MILLRACE_METRICS_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run millrace");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("metrics at http://") {
                return rest.trim_end_matches("/metrics").to_owned();
            }
        }
        panic!("the demo ended without serving metrics");
    })
    .await
    .expect("the metrics address within 20 s");
    // Keep reading the demo's output, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // The demo works a job within a second or so of starting; scrape until one is counted.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    let (head, scrape) = loop {
        let (head, body) = scrape(&addr).await;
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("the page parses as Prometheus text");
        let worked = scrape.samples.iter().any(|s| {
            s.metric == "river_work_count_total"
                && matches!(s.value, prometheus_parse::Value::Counter(n) if n >= 1.0)
        });
        let gauged = scrape.samples.iter().any(|s| s.metric == "millrace_jobs");
        if (worked && gauged) || tokio::time::Instant::now() >= until {
            break (head, scrape);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in [
        "river_work_count_total",
        "river_work_duration_histogram_seconds",
        "river_insert_count_total",
        "river_job_get_available_duration_seconds",
        "millrace_jobs",
        "millrace_queue_lag_seconds",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let email = scrape.samples.iter().find(|s| {
        s.metric == "river_work_count_total" && s.labels.get("kind") == Some("demo_send_email")
    });
    assert!(email.is_some(), "work counted by kind: {names:?}");
    let _ = child.kill().await;
}
