//! What `millrace` writes to standard error: JSON lines for log collectors, plain text without
//! colour codes when the stream is not a terminal (issue 14, item 5).

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

/// A folder of the test's own for the demo's SQLite file, removed at the end.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("millrace-logs-{name}-{}", std::process::id()));
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

/// Runs the demo on a SQLite file for `seconds`, with `args` before the subcommand and
/// `envs` set; it must end by itself within three times that.
async fn demo(name: &str, args: &[&str], envs: &[(&str, &str)], seconds: u64) -> Output {
    let folder = Folder::new(name);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"));
    command
        .args(args)
        .args(["demo", "--duration", &seconds.to_string()])
        .current_dir(&folder.0)
        .env_remove("DATABASE_URL")
        .env_remove("MILLRACE_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let within = Duration::from_secs(seconds * 3 + 10);
    let output = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("the demo did not end within {within:?}"))
        .expect("run millrace");
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_carrying_the_job() {
    // The demo's fourth job fails its first attempt, which the runtime logs in the job's span.
    let output = demo("json", &["--log-format", "json"], &[], 3).await;
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 logs");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    assert!(!lines.is_empty(), "the demo logs");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
    }
    let failed = lines
        .iter()
        .find(|line| line["span"]["name"] == "job")
        .unwrap_or_else(|| panic!("no line in a job's span: {stderr}"));
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["span"]["kind"], "demo_flaky_call");
    assert_eq!(failed["span"]["queue"], "default");
    assert_eq!(failed["span"]["attempt"], 1);
    assert!(failed["span"]["job_id"].as_i64().is_some(), "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("503"),
        "{failed}"
    );
}

#[tokio::test]
async fn text_logs_to_a_pipe_carry_no_colour_codes() {
    for (name, envs) in [("text", vec![]), ("no-color", vec![("NO_COLOR", "1")])] {
        let output = demo(name, &[], &envs, 2).await;
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 logs");
        assert!(stderr.contains("INFO"), "{name}: the demo logs: {stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "{name}: colour codes in {stderr:?}"
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(stderr.lines().next().unwrap()).is_err(),
            "{name}: text, not JSON"
        );
    }
}

#[tokio::test]
async fn an_unknown_log_format_is_a_usage_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args(["--log-format", "xml", "demo"])
        .output()
        .await
        .expect("run millrace");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown log format \"xml\""), "{stderr}");
}
