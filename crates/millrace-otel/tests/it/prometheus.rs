//! The Prometheus endpoint, scraped over HTTP and read by an independent parser.

use std::time::Duration;

use millrace::{EventKind, InsertManyParams, InsertOpts};
use millrace_otel::prometheus::PrometheusMetrics;
use millrace_otel::{ClientBuilderExt, OtelMiddleware};
use millrace_test::TestDb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Mode, Task, outcomes, worker_client};

/// GETs `path` from `addr` over HTTP/1.1 and returns the status line, headers and body.
pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect within 5 s")
            .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_owned(), body.to_owned())
}

/// Undoes chunked transfer encoding, which axum uses for bodies it streams.
pub(crate) fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_otelriver_names_to_a_prometheus_parser() {
    let metrics = PrometheusMetrics::new().unwrap();
    let db = TestDb::new().await;
    let otel = OtelMiddleware::builder()
        .meter_provider(metrics.meter_provider())
        .build();
    let client = worker_client(&db, |b| b.opentelemetry(otel));
    let inserted = client
        .insert_many([
            InsertManyParams::new(Task {
                mode: Mode::Succeed,
            }),
            InsertManyParams::new(Task {
                mode: Mode::Succeed,
            }),
            InsertManyParams::new(Task {
                mode: Mode::Succeed,
            }),
            InsertManyParams::new(Task { mode: Mode::Fail })
                .opts(InsertOpts::new().max_attempts(1)),
        ])
        .await
        .unwrap();
    let ids: Vec<_> = inserted.iter().map(|r| r.job.id).collect();
    let mut events = client.subscribe();
    client.start().await.unwrap();
    let seen = outcomes(&mut events, &ids, Duration::from_secs(15)).await;
    client.stop().await.unwrap();
    assert_eq!(
        seen.values()
            .filter(|k| **k == EventKind::JobCompleted)
            .count(),
        3
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        metrics
            .clone()
            .serve(listener, stop.clone().cancelled_owned()),
    );
    let (head, body) = http_get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let body = dechunk(&head, &body);

    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("the page parses as Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> Vec<prometheus_parse::Value> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| s.value.clone())
            .collect()
    };
    let ok = value(
        "river_work_count_total",
        &[
            ("kind", "otel_task"),
            ("queue", "default"),
            ("status", "ok"),
        ],
    );
    assert!(
        matches!(ok.as_slice(), [prometheus_parse::Value::Counter(n)] if *n == 3.0),
        "{ok:?}\n{body}"
    );
    let failed = value("river_work_count_total", &[("status", "error")]);
    assert!(
        matches!(failed.as_slice(), [prometheus_parse::Value::Counter(n)] if *n == 1.0),
        "{failed:?}"
    );
    let durations = value("river_work_duration_histogram_seconds", &[("status", "ok")]);
    assert!(
        matches!(durations.as_slice(), [prometheus_parse::Value::Histogram(buckets)] if !buckets.is_empty()),
        "{durations:?}\n{body}"
    );
    assert!(
        !value(
            "river_job_get_available_duration_seconds",
            &[("queue", "default")]
        )
        .is_empty(),
        "{body}"
    );
    assert!(
        !value(
            "river_insert_count_total",
            &[("unique_skipped_as_duplicate", "false")]
        )
        .is_empty(),
        "{body}"
    );

    let (head, _) = http_get(addr, "/nowhere").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops on its shutdown signal")
        .unwrap()
        .unwrap();
}
