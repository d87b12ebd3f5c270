//! Every page, filtering, paging, actions and live updates, on PostgreSQL and on a SQLite file.

use std::time::Duration;

use fantoccini::Locator;
use millrace::{Client, Driver, JobId, JobState};
use millrace_test::TestDb;
use millrace_web::Dashboard;
use serde_json::json;

use crate::support::{eventually, seed, serve, sqlite_client};

use super::{Browser, DEADLINE, assert_inert};

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
