//! `millrace ui` (issue 18): it refuses a non-loopback address without authentication before
//! it connects to anything, serves the dashboard on a SQLite file, and stops cleanly on
//! SIGTERM.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

fn millrace() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_millrace"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("MILLRACE_UI_TOKEN")
        .env_remove("MILLRACE_UI_BASIC_AUTH")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_non_loopback_address_needs_authentication() {
    let run = millrace()
        .args([
            "ui",
            "--listen",
            "0.0.0.0:0",
            "--database-url",
            "sqlite://never-opened.db",
        ])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{stderr}"
    );
    let bad = millrace()
        .args([
            "ui",
            "--listen",
            "0.0.0.0:0",
            "--basic-auth",
            "nopassword",
            "--database-url",
            "sqlite://x.db",
        ])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), bad)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("USER:PASSWORD"));
}

#[tokio::test]
async fn ui_serves_the_dashboard_and_stops_on_sigterm() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("millrace-ui-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("jobs.db").display());
    let migrate = millrace()
        .args(["migrate-up", "--database-url", &url])
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let mut child = millrace()
        .args([
            "ui",
            "--listen",
            "127.0.0.1:0",
            "--read-only",
            "--database-url",
            &url,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("millrace ui: listening on http://") {
                return rest.trim_end_matches('/').to_owned();
            }
        }
        panic!("millrace ui ended without listening");
    })
    .await
    .expect("listening within 30 s");

    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            format!("GET /queues HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("<h1>Queues</h1>") && reply.contains("read-only"),
        "{reply}"
    );
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'")
    );

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "a clean stop on SIGTERM: {status}");
}
