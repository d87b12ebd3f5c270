//! The security probes in the browser: payloads in every database value, forged and
//! cross-site requests, and a database outage's banner.

use std::time::Duration;

use millrace::{Client, JobId, JobState};
use millrace_test::TestDb;
use millrace_web::Dashboard;
use serde_json::json;

use crate::support::{eventually, seed, serve};

use super::{Browser, DEADLINE, assert_inert};

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
