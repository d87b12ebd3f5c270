//! The dashboard in a real headless Chromium, driven over WebDriver by Debian's chromedriver:
//! every page, filtering, paging, actions that change a job's or queue's state, live updates,
//! and the security probes (XSS payloads in every database value, a cross-site form post,
//! a forged action in read-only mode, a missing token).
//!
//! `scripts/test.sh` installs `chromium` and `chromium-driver` when missing. Without them the
//! tests pass with a note on stderr, except under CI (`CI=true`), where they fail.
//! `MILLRACE_SCREENSHOTS=DIR` saves a PNG of each main page (docs/img holds them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::eventually;

mod fleet;
mod pages;
mod security;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Three times the longest a step should take on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(15);

/// A headless Chromium session, and the chromedriver behind it (killed on drop).
struct Browser {
    web: fantoccini::Client,
    _driver: Child,
    _profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a browser session, or returns `None` (with a note) when they
    /// are not installed, unless under CI, where that fails the test.
    async fn start(name: &str) -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium and chromedriver are missing; scripts/test.sh installs them"
            );
            eprintln!(
                "skipping {name}: chromium or chromedriver missing (scripts/test.sh installs them)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver listens", DEADLINE, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let web = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session");
        Some(Browser {
            web,
            _driver: driver,
            _profile: profile,
        })
    }

    async fn goto(&self, url: &str) {
        self.web.goto(url).await.expect("navigate");
    }

    /// The element's text, waiting while it is missing or a live update replaces it.
    async fn text(&self, css: &str) -> String {
        eventually(&format!("the text of {css}"), DEADLINE, || {
            self.try_text(css)
        })
        .await
    }

    /// The element's text, or `None` when it is missing or was just replaced (a live update
    /// swaps the content under the finder).
    async fn try_text(&self, css: &str) -> Option<String> {
        self.web
            .find(Locator::Css(css))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Clicks the element, finding it again when a live update replaced it between the
    /// find and the click (as a person's click lands on the new button).
    async fn click(&self, css: &str) {
        eventually(&format!("click {css}"), DEADLINE, || async {
            match self.web.find(Locator::Css(css)).await.ok()?.click().await {
                Ok(()) => Some(()),
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    None
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        })
        .await;
    }

    async fn count(&self, css: &str) -> usize {
        self.web
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .len()
    }

    /// Waits until the element's text contains `want`.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        eventually(&format!("{css} shows {want:?}"), DEADLINE, || async {
            let el = self.web.find(Locator::Css(css)).await.ok()?;
            let text = el.text().await.ok()?;
            text.contains(want).then_some(text)
        })
        .await
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.web.execute(script, vec![]).await.expect("script")
    }

    /// Saves a screenshot when MILLRACE_SCREENSHOTS names a folder.
    async fn shot(&self, name: &str) {
        if let Ok(dir) = std::env::var("MILLRACE_SCREENSHOTS") {
            let png = self.web.screenshot().await.expect("screenshot");
            std::fs::create_dir_all(&dir).expect("screenshot folder");
            std::fs::write(Path::new(&dir).join(format!("{name}.png")), png)
                .expect("write screenshot");
        }
    }

    async fn close(self) {
        let _ = self.web.close().await;
    }
}

/// No script from the database ran, no image from a payload exists, and only the dashboard's
/// own script element is on the page.
async fn assert_inert(b: &Browser, page: &str) {
    let state = b
        .js("return [typeof window.__xss, document.querySelectorAll('img').length, document.querySelectorAll('script').length]")
        .await;
    assert_eq!(
        state,
        json!(["undefined", 0, 1]),
        "{page}: a payload became markup or ran"
    );
}
