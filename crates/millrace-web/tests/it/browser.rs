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
use millrace::{Client, Driver, JobId, JobState};
use millrace_test::TestDb;
use millrace_web::Dashboard;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::support::{eventually, seed, serve, sqlite_client};

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

/// What both engines go through.
async fn exercise<D: Driver>(b: &Browser, client: Client<D>, shots: bool) {
    let emails = seed(&client, "email", "mail", 60).await;
    let reports = seed(&client, "report", "reports", 15).await;
    let probe = "<script>window.__xss=1</script>\"><img src=x onerror=window.__xss=2>";
    let xss = client
        .insert_many([millrace::InsertManyParams::from_json(
            "probe",
            &json!({ "html": probe }),
        )])
        .await
        .unwrap()
        .remove(0)
        .job;
    let base = serve(
        Dashboard::new(client.clone())
            .poll_interval(Duration::from_millis(300))
            .router(),
    )
    .await;

    // Every page loads, in the frame, without an error banner.
    let job_path = format!("/jobs/{}", emails[0].id);
    for (path, h1, shot) in [
        ("/", "Overview", "overview"),
        ("/jobs", "Jobs", "jobs"),
        (job_path.as_str(), "Job ", "job"),
        ("/queues", "Queues", "queues"),
        ("/periodic", "Periodic jobs", "periodic"),
        ("/persistent", "Persistent workers", "persistent"),
        ("/fleet", "Leader & clients", "fleet"),
        ("/jobs/new", "Insert a job", "insert"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        let title = b.text("h1").await;
        assert!(title.starts_with(h1), "{path}: h1 {title:?}");
        assert_eq!(
            b.count(".banner.error:not(.hidden)").await,
            0,
            "{path}: an error banner"
        );
        if shots {
            b.shot(shot).await;
        }
    }

    // Args holding a payload render as text.
    b.goto(&format!("{base}/jobs/{}", xss.id)).await;
    // Pretty JSON escapes the quote; the rest must stand as typed.
    let args = b.text("#job-args").await;
    assert!(
        args.contains("<script>window.__xss=1</script>\\\"><img src=x onerror=window.__xss=2>"),
        "{args}"
    );
    assert_inert(b, "job detail").await;
    b.goto(&format!("{base}/jobs")).await;
    assert_inert(b, "jobs list").await;

    // Filter through the form.
    b.goto(&format!("{base}/jobs")).await;
    b.web
        .find(Locator::Css("#filter-form input[name=kind]"))
        .await
        .unwrap()
        .send_keys("report")
        .await
        .unwrap();
    b.click("#filter-form button[type=submit]").await;
    b.wait_text("#match-count", "15 matching").await;
    assert_eq!(b.count("#jobs tbody tr[data-job-id]").await, 15);
    for el in b.web.find_all(Locator::Css("#jobs td.kind")).await.unwrap() {
        assert_eq!(el.text().await.unwrap(), "report");
    }

    // Page through the 60 emails, newest first.
    b.goto(&format!("{base}/jobs?queue=mail")).await;
    assert_eq!(b.count("#jobs tbody tr[data-job-id]").await, 50);
    b.click("#next-page").await;
    eventually("the second page", DEADLINE, || async {
        (b.count("#jobs tbody tr[data-job-id]").await == 10).then_some(())
    })
    .await;
    let ids: Vec<i64> = b
        .js("return Array.from(document.querySelectorAll('#jobs tr[data-job-id]')).map(r => Number(r.dataset.jobId))")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let oldest: Vec<i64> = emails[..10].iter().map(|j| j.id.0).rev().collect();
    assert_eq!(ids, oldest, "the second page holds the ten oldest");
    // And back: the newer page is the newest fifty again.
    b.click("#prev-page").await;
    let newest: Vec<i64> = emails[10..].iter().map(|j| j.id.0).rev().collect();
    eventually("the newer page", DEADLINE, || async {
        let ids: Vec<i64> = b
            .js("return Array.from(document.querySelectorAll('#jobs tr[data-job-id]')).map(r => Number(r.dataset.jobId))")
            .await
            .as_array()?
            .iter()
            .filter_map(serde_json::Value::as_i64)
            .collect();
        (ids == newest).then_some(())
    })
    .await;
    assert_eq!(
        b.count("#prev-page").await,
        0,
        "no newer page above the newest"
    );

    // Cancel a job, then retry it, and see its state change each time.
    let id = emails[5].id;
    b.goto(&format!("{base}/jobs/{id}")).await;
    b.click("#action-cancel").await;
    b.wait_text("#job-state", "cancelled").await;
    assert_eq!(client.job_get(id).await.unwrap().state, JobState::Cancelled);
    b.click("#action-retry").await;
    b.wait_text("#job-state", "available").await;
    assert_eq!(client.job_get(id).await.unwrap().state, JobState::Available);

    // Pause a queue and resume it.
    b.goto(&format!("{base}/queues")).await;
    b.click("tr[data-queue=mail] button.queue-pause").await;
    b.wait_text("tr[data-queue=mail] td.status", "paused").await;
    assert!(client.queue_get("mail").await.unwrap().paused_at.is_some());
    b.click("tr[data-queue=mail] button.queue-resume").await;
    b.wait_text("tr[data-queue=mail] td.status", "active").await;
    assert!(client.queue_get("mail").await.unwrap().paused_at.is_none());

    // Cancel a selection of two.
    b.goto(&format!("{base}/jobs?queue=reports")).await;
    let boxes = b
        .web
        .find_all(Locator::Css("#jobs input[name=id]"))
        .await
        .unwrap();
    let mut picked = Vec::new();
    for el in &boxes[..2] {
        el.click().await.unwrap();
        picked.push(JobId(
            el.attr("value").await.unwrap().unwrap().parse().unwrap(),
        ));
    }
    b.click("#bulk-form button[name=action][value=cancel]")
        .await;
    eventually("the selection cancelled", DEADLINE, || async {
        let mut all = true;
        for id in &picked {
            all &= client.job_get(*id).await.ok()?.state == JobState::Cancelled;
        }
        all.then_some(())
    })
    .await;

    // Retry every job the filter matches, after the confirmation with its count.
    b.goto(&format!("{base}/jobs?queue=reports&state=cancelled"))
        .await;
    b.click("#bulk-form button[name=all][value=retry]").await;
    b.wait_text("#confirm-count", "2 jobs matching").await;
    if shots {
        b.shot("confirm").await;
    }
    b.click("#confirm-button").await;
    eventually("every match retried", DEADLINE, || async {
        let mut all = true;
        for id in &picked {
            all &= client.job_get(*id).await.ok()?.state == JobState::Available;
        }
        all.then_some(())
    })
    .await;
    assert_eq!(reports.len(), 15);

    // Live updates: a job inserted elsewhere shows up without a reload; pausing stops them.
    b.goto(&format!("{base}/")).await;
    let card = "[data-state=available] .card-value";
    let before = eventually("the count", DEADLINE, || b.try_text(card)).await;
    seed(&client, "email", "mail", 1).await;
    let after = eventually("the overview updates itself", DEADLINE, || async {
        b.try_text(card).await.filter(|now| *now != before)
    })
    .await;
    assert_ne!(before, after);
    // The toggle sits in the frame, outside the content the updates replace.
    b.click("#live-toggle").await;
    assert_eq!(b.text("#live-toggle").await, "Resume updates");
    let paused = b
        .js("return localStorage.getItem('millrace-live-paused')")
        .await;
    assert_eq!(paused, json!("1"));
    b.click("#live-toggle").await;
    assert_eq!(b.text("#live-toggle").await, "Pause updates");
}

#[tokio::test]
async fn dashboard_works_in_a_browser_on_postgres() {
    let Some(b) = Browser::start("pg").await else {
        return;
    };
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    exercise(&b, client, true).await;
    b.close().await;
}

#[tokio::test]
async fn dashboard_works_in_a_browser_on_sqlite() {
    let Some(b) = Browser::start("sqlite").await else {
        return;
    };
    let (client, _dir) = sqlite_client("browser").await;
    exercise(&b, client, false).await;
    b.close().await;
}

/// Inserts a job whose kind, queue, args, metadata and error all hold payloads, as another
/// client (or a hand-written row) could: straight into the table, past the insert checks.
async fn hostile_job(db: &TestDb) -> JobId {
    let payload = "<script>window.__xss=1</script>\"><img src=x onerror=window.__xss=2>";
    let error =
        json!({ "at": "2026-01-01T00:00:00Z", "attempt": 1, "error": payload, "trace": payload });
    let sql = format!(
        "INSERT INTO {} (args, kind, queue, state, max_attempts, priority, metadata, errors, attempt, finalized_at) \
         VALUES ($1::jsonb, $2, $3, 'discarded', 1, 1, $4::jsonb, ARRAY[$5::jsonb], 1, now()) RETURNING id",
        db.schema().qualify("river_job")
    );
    let id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(json!({ "html": payload }))
        .bind(format!("k{payload}"))
        .bind("q\"><img src=x onerror=window.__xss=3>")
        .bind(json!({ "note": payload, "output": payload }))
        .bind(error)
        .fetch_one(db.pool())
        .await
        .expect("insert the hostile row");
    JobId(id)
}

#[tokio::test]
async fn payloads_in_every_database_value_render_as_text() {
    let Some(b) = Browser::start("xss").await else {
        return;
    };
    let db = TestDb::new().await;
    let id = hostile_job(&db).await;
    // The same kind of row, available, so the queue shows on the overview and queues pages.
    let client = Client::builder(db.driver()).build().unwrap();
    client.job_retry(id).await.unwrap();
    let base = serve(Dashboard::new(client).router()).await;
    for path in [
        "/".to_owned(),
        "/jobs".to_owned(),
        format!("/jobs/{id}"),
        "/queues".to_owned(),
    ] {
        b.goto(&format!("{base}{path}")).await;
        assert_inert(&b, &path).await;
    }
    b.goto(&format!("{base}/jobs/{id}")).await;
    assert!(
        b.text("dd.kind").await.starts_with("k<script>"),
        "the kind shows as text"
    );
    assert!(
        b.text(".attempt-error .error-message")
            .await
            .contains("<img src=x"),
        "the error shows as text"
    );
    b.goto(&format!("{base}/queues")).await;
    assert!(
        b.text("#queues").await.contains("q\"><img src=x"),
        "the queue shows as text"
    );
    b.close().await;
}

#[tokio::test]
async fn forged_requests_are_refused_in_the_browser() {
    let Some(b) = Browser::start("forge").await else {
        return;
    };
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    let job = seed(&client, "email", "mail", 1).await.remove(0);
    let base = serve(Dashboard::new(client.clone()).router()).await;

    // A page on another site posts a form at the dashboard, after the user visited it (so
    // the browser holds the dashboard's cookies).
    b.goto(&format!("{base}/jobs/{}", job.id)).await;
    let target = format!("{base}/jobs/{}/cancel", job.id);
    let evil = serve(axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let target = target.clone();
            async move {
                axum::response::Html(format!(
                    "<form method=post action=\"{target}\"><input name=csrf value=forged>\
                     <button id=go type=submit>win a prize</button></form>"
                ))
            }
        }),
    ))
    .await;
    // localhost is another site than 127.0.0.1 to the browser.
    b.goto(&evil.replace("127.0.0.1", "localhost")).await;
    b.click("#go").await;
    b.wait_text("h1", "Request refused").await;
    assert_eq!(
        client.job_get(job.id).await.unwrap().state,
        JobState::Available,
        "the cross-site post changed nothing"
    );

    // Read-only: no buttons, and a same-origin script posting a well-formed action is refused.
    let read_only = serve(Dashboard::new(client.clone()).read_only(true).router()).await;
    b.goto(&format!("{read_only}/jobs/{}", job.id)).await;
    assert_eq!(b.count("#job-actions button").await, 0);
    let reply = b
        .web
        .execute_async(
            &format!(
                "const done = arguments[0];
                 const csrf = document.querySelector('meta[name=csrf-token]').content;
                 fetch('/jobs/{}/cancel', {{method: 'POST', body: new URLSearchParams({{csrf}})}})
                   .then(r => r.text().then(t => done([r.status, t])));",
                job.id
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(reply[0], 403, "{reply}");
    assert!(reply[1].as_str().unwrap().contains("read-only"));
    assert_eq!(
        client.job_get(job.id).await.unwrap().state,
        JobState::Available
    );

    // A token-protected dashboard shows nothing without the token, and everything with it.
    let locked = serve(
        Dashboard::new(client.clone())
            .bearer_token("s3cret")
            .router(),
    )
    .await;
    b.goto(&format!("{locked}/")).await;
    assert_eq!(b.text("h1").await, "Authentication required");
    b.goto(&format!("{locked}/jobs?token=wrong")).await;
    assert_eq!(b.text("h1").await, "Authentication required");
    b.goto(&format!("{locked}/jobs?token=s3cret")).await;
    assert_eq!(b.text("h1").await, "Jobs");
    assert!(
        !b.web
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("s3cret"),
        "the token left the URL"
    );
    b.close().await;
}

#[tokio::test]
async fn a_database_outage_shows_a_banner_that_clears_when_it_returns() {
    let Some(b) = Browser::start("outage").await else {
        return;
    };
    let db = TestDb::new().await;
    let gate = crate::support::Gate::start(crate::support::pg_addr(db.url())).await;
    let client = crate::support::client_through(&gate, &db);
    seed(&client, "email", "mail", 2).await;
    let base = serve(
        Dashboard::new(client)
            .poll_interval(Duration::from_millis(300))
            .router(),
    )
    .await;

    // A live page that loses the database keeps its content under a banner, and clears the
    // banner on the first good poll after the database returns.
    b.goto(&format!("{base}/queues")).await;
    gate.down();
    let banner = "#live-error:not(.hidden)";
    b.wait_text(banner, "Live update failed").await;
    assert_eq!(b.text("h1").await, "Queues", "the last content stays");
    gate.up();
    eventually("the banner clears", DEADLINE, || async {
        (b.count(banner).await == 0).then_some(())
    })
    .await;

    // A page loaded while the database is away is a 503 with a banner, and reloads itself
    // into the real page once the database answers.
    gate.down();
    b.goto(&format!("{base}/")).await;
    b.wait_text("h1", "Database unavailable").await;
    assert!(
        b.text(".banner.error:not(#live-error)")
            .await
            .contains("reloads when the database is back")
    );
    gate.up();
    b.wait_text("h1", "Overview").await;
    b.close().await;
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Nightly {}

impl millrace::JobArgs for Nightly {
    const KIND: &'static str = "nightly";
}

struct NightlyWorker;

impl millrace::Worker for NightlyWorker {
    type Args = Nightly;

    async fn work(&self, _job: millrace::Job<Nightly>) -> Result<(), millrace::WorkError> {
        Ok(())
    }
}

/// A persistent worker whose first run fails (a failover to its next run), then holds on.
struct FailsOnce(std::sync::atomic::AtomicBool);

impl millrace::PersistentWorker for FailsOnce {
    async fn run(&self, ctx: millrace::PersistentContext) -> Result<(), millrace::BoxError> {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err("the feed dropped the connection".into());
        }
        ctx.cancelled().await;
        Ok(())
    }
}

/// The fleet's pages with a running client behind them: a named periodic job, a persistent
/// worker that failed once and is held again, both leases, and a queue with a concurrency
/// limit. `client` is unstarted, on the engine under test.
async fn exercise_fleet<D: Driver>(b: &Browser, builder: millrace::ClientBuilder<D>, shots: bool) {
    let mut workers = millrace::Workers::new();
    workers.register(NightlyWorker).unwrap();
    let client = builder
        .workers(workers)
        .queue(
            "default",
            millrace::QueueConfig::new().max_workers(3).concurrency(
                millrace::ConcurrencyLimit::global(2)
                    .local(1)
                    .partition_by_kind(),
            ),
        )
        .periodic_job(
            millrace::PeriodicJob::new(
                millrace::Schedule::interval(Duration::from_secs(15 * 60)),
                || (Nightly {}, None),
            )
            .id("nightly-report")
            .run_on_start(true),
        )
        .persistent_worker_with(
            "feed",
            FailsOnce(std::sync::atomic::AtomicBool::new(false)),
            millrace::PersistentOpts::new()
                .restart_backoff(Duration::from_millis(100), Duration::from_millis(200)),
        )
        .fetch_poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    client.start().await.unwrap();
    let base = serve(
        Dashboard::new(client.clone())
            .poll_interval(Duration::from_millis(300))
            .router(),
    )
    .await;

    // Periodic: the schedule, the next run, and the last run once the first run is in.
    b.goto(&format!("{base}/periodic")).await;
    let row = "#periodic tr[data-periodic=nightly-report]";
    eventually("the first run of nightly-report", DEADLINE, || async {
        let text = b.try_text(row).await?;
        (!text.contains("never")).then_some(())
    })
    .await;
    assert_eq!(b.text(&format!("{row} td.schedule")).await, "every 15 min");
    let cells: Vec<String> = b
        .js("return Array.from(document.querySelectorAll('#periodic tr[data-periodic] td')).map(td => td.textContent.trim())")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // Id, schedule, next run (in about 15 minutes), overdue, last run, last job.
    assert_eq!(cells[0], "nightly-report", "{cells:?}");
    assert!(
        cells[2].contains("in 1"),
        "next run in about 15 min: {cells:?}"
    );
    assert_eq!(cells[3], "no", "{cells:?}");
    assert!(
        cells[4].contains("ago") || cells[4].contains("now"),
        "last run: {cells:?}"
    );
    assert!(!cells[5].is_empty(), "the last job: {cells:?}");
    if shots {
        b.shot("periodic").await;
    }

    // Persistent: the holder, the lease's age, the restart after the failure, and the failure.
    b.goto(&format!("{base}/persistent")).await;
    let row = "#persistent tr[data-persistent=feed]";
    // The failure, the restart and the hold again come one after another; the page follows
    // each by its live updates, so wait for the last of them rather than read a moment
    // between two (on a loaded machine, the first render can fall in the restart's backoff).
    let expect = format!(
        "{row} shows {} running again after one failure",
        client.id()
    );
    eventually(&expect, DEADLINE, || async {
        let text = b.try_text(row).await?;
        let failover = b.try_text(&format!("{row} td.failover")).await?;
        let restarts: i64 = b
            .try_text(&format!("{row} td.restarts"))
            .await?
            .parse()
            .ok()?;
        (text.contains(client.id())
            && text.contains("running")
            && failover.contains("the feed dropped the connection")
            && restarts >= 1)
            .then_some(())
    })
    .await;
    assert!(
        !b.text(&format!("{row} td.lease-age")).await.is_empty(),
        "the lease's age"
    );
    if shots {
        b.shot("persistent").await;
    }

    // Leader and clients: this client leads both leases and is listed live.
    b.goto(&format!("{base}/fleet")).await;
    eventually("both leases held by the client", DEADLINE, || async {
        let text = b.try_text("#leaders").await?;
        (text.matches(client.id()).count() == 2).then_some(())
    })
    .await;
    b.wait_text("#clients", client.id()).await;
    if shots {
        b.shot("fleet").await;
    }

    // Queues: the client's concurrency for the queue it works.
    b.goto(&format!("{base}/queues")).await;
    assert_eq!(b.text("tr[data-queue=default] td.max-workers").await, "3");
    assert_eq!(
        b.text("tr[data-queue=default] td.limit").await,
        "2 across the fleet, 1 per client, per kind"
    );
    client.stop().await.unwrap();
}

#[tokio::test]
async fn fleet_pages_show_a_running_clients_schedules_workers_and_leases_on_postgres() {
    let Some(b) = Browser::start("fleet-pg").await else {
        return;
    };
    let db = TestDb::new().await;
    exercise_fleet(&b, Client::builder(db.driver()), true).await;
    b.close().await;
}

#[tokio::test]
async fn fleet_pages_show_a_running_clients_schedules_workers_and_leases_on_sqlite() {
    let Some(b) = Browser::start("fleet-sqlite").await else {
        return;
    };
    let (client, _dir) = sqlite_client("fleet").await;
    exercise_fleet(&b, Client::builder(client.driver().clone()), false).await;
    b.close().await;
}
