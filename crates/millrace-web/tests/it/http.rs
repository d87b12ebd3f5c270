//! The security rules and bad-input behaviour at the HTTP level, through `oneshot` on the
//! router, against a real PostgreSQL schema.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use millrace::{Client, JobState};
use millrace_postgres::PgDriver;
use millrace_test::TestDb;
use millrace_web::{Action, Dashboard};
use tower::ServiceExt as _;

use crate::support::{Gate, client_through, eventually, pg_addr, seed};

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), 1 << 22).await.expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(router: &Router, path: &str) -> Reply {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}

/// The CSRF token a first GET hands out in its cookie.
async fn csrf(router: &Router) -> String {
    let reply = get(router, "/jobs").await;
    let cookie = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("millrace_csrf="))
        .expect("a CSRF cookie");
    cookie["millrace_csrf=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A same-origin form post, as the browser sends one from the dashboard's own page.
fn form_post(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "dash.test")
        .header(header::ORIGIN, "http://dash.test")
        .header("sec-fetch-site", "same-origin")
        .header(header::COOKIE, format!("millrace_csrf={cookie}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn setup() -> (TestDb, Client<PgDriver>) {
    let db = TestDb::new().await;
    let client = Client::builder(db.driver()).build().unwrap();
    (db, client)
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_load() {
    let (_db, client) = setup().await;
    let jobs = seed(&client, "email", "mail", 3).await;
    let router = Dashboard::new(client).router();
    for path in [
        "/",
        "/jobs",
        &format!("/jobs/{}", jobs[0].id),
        "/queues",
        "/periodic",
        "/persistent",
        "/fleet",
        "/jobs/new",
    ] {
        let reply = get(&router, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        // No inline script or style anywhere: the CSP would block it, so it would be a bug.
        assert!(
            !reply.body.contains("<script>") && !reply.body.contains("style="),
            "{path}"
        );
    }
    let css = get(&router, "/assets/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn a_post_without_the_csrf_token_or_from_another_site_is_refused() {
    let (_db, client) = setup().await;
    let job = seed(&client, "email", "mail", 1).await.remove(0);
    let router = Dashboard::new(client.clone()).router();
    let token = csrf(&router).await;
    let path = format!("/jobs/{}/cancel", job.id);

    // No cookie at all.
    let mut req = form_post(&path, &token, &format!("csrf={token}"));
    req.headers_mut().remove(header::COOKIE);
    assert_eq!(send(&router, req).await.status, StatusCode::FORBIDDEN);
    // A cookie but the wrong field.
    let reply = send(&router, form_post(&path, &token, "csrf=0000")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply.body.contains("CSRF token does not match"),
        "{}",
        reply.body
    );
    // The right token, but the browser says the form came from another site.
    let mut req = form_post(&path, &token, &format!("csrf={token}"));
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(send(&router, req).await.status, StatusCode::FORBIDDEN);
    // The right token from a foreign Origin.
    let mut req = form_post(&path, &token, &format!("csrf={token}"));
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.test".parse().unwrap());
    assert_eq!(send(&router, req).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        client.job_get(job.id).await.unwrap().state,
        JobState::Available,
        "nothing changed"
    );

    // And the genuine post goes through.
    let reply = send(&router, form_post(&path, &token, &format!("csrf={token}"))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        client.job_get(job.id).await.unwrap().state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn read_only_mode_hides_and_refuses_every_action() {
    let (_db, client) = setup().await;
    let job = seed(&client, "email", "mail", 1).await.remove(0);
    let router = Dashboard::new(client.clone()).read_only(true).router();
    let page = get(&router, &format!("/jobs/{}", job.id)).await;
    assert!(
        !page.body.contains("action-cancel"),
        "no action buttons in read-only mode"
    );
    let list = get(&router, "/jobs").await;
    assert!(
        !list.body.contains("select-all") && !list.body.contains("name=\"all\""),
        "no bulk actions"
    );
    let token = csrf(&router).await;
    for (path, body) in [
        (format!("/jobs/{}/cancel", job.id), format!("csrf={token}")),
        (
            "/jobs/bulk".to_owned(),
            format!("csrf={token}&action=delete&id={}", job.id),
        ),
        ("/queues/mail/pause".to_owned(), format!("csrf={token}")),
        (
            "/jobs/new".to_owned(),
            format!("csrf={token}&kind=x&args=%7B%7D"),
        ),
    ] {
        let reply = send(&router, form_post(&path, &token, &body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert!(reply.body.contains("read-only"), "{path}: {}", reply.body);
    }
    assert_eq!(
        client.job_get(job.id).await.unwrap().state,
        JobState::Available
    );
    assert!(
        client
            .queue_get("mail")
            .await
            .map(|q| q.paused_at.is_none())
            .unwrap_or(true)
    );
}

#[tokio::test]
async fn authentication_refuses_a_missing_or_wrong_token() {
    let (_db, client) = setup().await;
    let router = Dashboard::new(client)
        .bearer_token("t0ken")
        .basic_auth("ops", "pw")
        .router();
    let reply = get(&router, "/").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
    assert!(
        !reply.body.contains("Overview"),
        "nothing of the dashboard before authentication"
    );
    let with = |value: &str| {
        Request::get("/")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&router, with("Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, with("Bearer t0ken")).await.status,
        StatusCode::OK
    );
    let basic = |u: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(u)
        )
    };
    assert_eq!(
        send(&router, with(&basic("ops:nope"))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, with(&basic("ops:pw"))).await.status,
        StatusCode::OK
    );
    // A token in the address bar becomes a cookie, and the URL loses it.
    let login = get(&router, "/jobs?token=t0ken&state=available").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.headers[header::LOCATION], "/jobs?state=available");
    let cookie = login.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let req = Request::get("/jobs")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_404_and_400_with_the_reason() {
    let (_db, client) = setup().await;
    let router = Dashboard::new(client).router();
    for path in ["/jobs/987654321", "/jobs/not-a-number", "/nowhere"] {
        let reply = get(&router, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.body.contains("Not found"), "{path}");
    }
    for (path, reason) in [
        ("/jobs?state=runing", "unknown state &quot;runing&quot;"),
        ("/jobs?id=12x", "not a whole number"),
        ("/jobs?args=%7Bbroken", "the args filter is not valid JSON"),
        ("/jobs?metadata=%5B%5D", "must be a JSON object"),
        ("/jobs?after=x", "page cursor"),
        ("/jobs?before=x", "page cursor before="),
        ("/jobs?after=5&before=9", "not both"),
    ] {
        let reply = get(&router, path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(reply.body.contains(reason), "{path}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_rejected_insert_keeps_what_was_typed() {
    let (_db, client) = setup().await;
    let router = Dashboard::new(client.clone()).router();
    let token = csrf(&router).await;
    let body = format!(
        "csrf={token}&kind=report&queue=reports&args=%7B%22a%22%3A&priority=1&max_attempts=5"
    );
    let reply = send(&router, form_post("/jobs/new", &token, &body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("the args are not valid JSON"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("{&quot;a&quot;:") && reply.body.contains("value=\"reports\""),
        "typed values kept"
    );
    let body =
        format!("csrf={token}&kind=report&queue=Bad%20Queue&args=%7B%7D&priority=1&max_attempts=5");
    let reply = send(&router, form_post("/jobs/new", &token, &body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        client
            .job_list(millrace::JobListParams::new())
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
    // A good one lands, and the browser is sent to it.
    let body = format!(
        "csrf={token}&kind=report&queue=reports&args=%7B%22a%22%3A1%7D&priority=2&max_attempts=5"
    );
    let reply = send(&router, form_post("/jobs/new", &token, &body)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let jobs = client
        .job_list(millrace::JobListParams::new())
        .await
        .unwrap()
        .jobs;
    assert_eq!(
        (jobs.len(), jobs[0].priority, jobs[0].queue.as_str()),
        (1, 2, "reports")
    );
}

#[tokio::test]
async fn permissions_and_audit_events_follow_each_action() {
    let (_db, client) = setup().await;
    let jobs = seed(&client, "email", "mail", 5).await;
    let dashboard =
        Dashboard::new(client.clone()).permissions(|_, action| action != Action::Delete);
    let mut audit = dashboard.subscribe();
    let router = dashboard.router();
    let page = get(&router, &format!("/jobs/{}", jobs[0].id)).await;
    assert!(page.body.contains("action-cancel") && !page.body.contains("action-delete"));
    let token = csrf(&router).await;
    let reply = send(
        &router,
        form_post(
            &format!("/jobs/{}/delete", jobs[0].id),
            &token,
            &format!("csrf={token}"),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(client.job_get(jobs[0].id).await.is_ok(), "not deleted");

    // A selection of two.
    let body = format!(
        "csrf={token}&action=cancel&id={}&id={}",
        jobs[0].id, jobs[1].id
    );
    let reply = send(&router, form_post("/jobs/bulk", &token, &body)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let event = audit.recv().await.unwrap();
    assert_eq!(
        (event.action, event.count, event.actor.as_str()),
        (Action::Cancel, 2, "anonymous")
    );

    // Every job the filter matches: a confirmation with the count first, then the action.
    let body = format!("csrf={token}&all=cancel&queue=mail&state=available");
    let reply = send(&router, form_post("/jobs/bulk", &token, &body)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body.contains("<strong>3</strong> jobs matching"),
        "{}",
        reply.body
    );
    assert_eq!(
        client.job_get(jobs[4].id).await.unwrap().state,
        JobState::Available,
        "not before confirming"
    );
    let reply = send(
        &router,
        form_post("/jobs/bulk", &token, &format!("{body}&confirm=yes")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let event = audit.recv().await.unwrap();
    assert_eq!((event.action, event.count), (Action::Cancel, 3));
    assert!(event.target.contains("queue=mail"), "{}", event.target);
    for job in &jobs {
        assert_eq!(
            client.job_get(job.id).await.unwrap().state,
            JobState::Cancelled
        );
    }
}

#[tokio::test]
async fn a_database_that_goes_away_shows_a_banner_and_recovers() {
    let db = TestDb::new().await;
    let gate = Gate::start(pg_addr(db.url())).await;
    let client = client_through(&gate, &db);
    seed(&client, "email", "mail", 2).await;
    let router = Dashboard::new(client).router();
    assert_eq!(get(&router, "/").await.status, StatusCode::OK);

    gate.down();
    let reply = eventually("a 503 page", Duration::from_secs(15), || async {
        let reply = get(&router, "/").await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    assert!(
        reply.body.contains("Database unavailable"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("role=\"alert\""), "a banner");

    gate.up();
    let reply = eventually("the overview again", Duration::from_secs(15), || async {
        let reply = get(&router, "/").await;
        (reply.status == StatusCode::OK).then_some(reply)
    })
    .await;
    assert!(!reply.body.contains("Database unavailable"));
}

#[tokio::test]
async fn a_final_state_past_its_cap_shows_the_planner_estimate() {
    let (db, client) = setup().await;
    let sql = format!(
        "INSERT INTO {} (args, kind, state, finalized_at, max_attempts, priority, queue, metadata, scheduled_at) \
         SELECT '{{}}', 'k', 'completed', now(), 25, 1, 'default', '{{}}', now() FROM generate_series(1, 10500)",
        db.schema().qualify("river_job")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(db.pool())
        .await
        .unwrap();
    let analyze = format!("ANALYZE {}", db.schema().qualify("river_job"));
    sqlx::query(sqlx::AssertSqlSafe(analyze))
        .execute(db.pool())
        .await
        .unwrap();
    let router = Dashboard::new(client).router();
    let reply = get(&router, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    let card = &reply.body[reply.body.find("data-state=\"completed\"").unwrap()..];
    let card = &card[..card.find("</a>").unwrap()];
    assert!(card.contains("10,000+"), "{card}");
    assert!(card.contains("≈ 10K"), "{card}");
}

/// The ids of the jobs a list page shows, in its order.
fn listed(body: &str) -> Vec<i64> {
    body.split("data-job-id=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The `href` of the link with this element id, decoded of its `&amp;`.
fn link(body: &str, id: &str) -> Option<String> {
    let at = body.find(&format!("id=\"{id}\""))?;
    let tag_start = body[..at].rfind('<')?;
    let tag = &body[tag_start..tag_start + body[tag_start..].find('>')?];
    let href = &tag[tag.find("href=\"")? + 6..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_jobs_list_pages_both_ways_by_keyset() {
    let (_db, client) = setup().await;
    let mut ids: Vec<i64> = seed(&client, "email", "mail", 25)
        .await
        .iter()
        .map(|j| j.id.0)
        .collect();
    // Another queue's jobs in between, which the filter must skip both ways.
    seed(&client, "report", "reports", 5).await;
    ids.reverse(); // newest first, as the list shows them
    let router = Dashboard::new(client).page_size(10).router();

    let first = get(&router, "/jobs?queue=mail").await;
    assert_eq!(listed(&first.body), ids[..10]);
    assert!(
        link(&first.body, "prev-page").is_none(),
        "no newer page on the newest"
    );
    let older = link(&first.body, "next-page").expect("an older page");
    assert_eq!(older, format!("/jobs?queue=mail&after={}", ids[9]));
    let second = get(&router, &older).await;
    assert_eq!(listed(&second.body), ids[10..20]);
    let third = get(&router, &link(&second.body, "next-page").unwrap()).await;
    assert_eq!(listed(&third.body), ids[20..]);
    assert!(
        link(&third.body, "next-page").is_none(),
        "the oldest page ends"
    );

    // Back from the oldest page: the ten jobs just newer, then the newest page again.
    let newer = link(&third.body, "prev-page").expect("a newer page");
    assert!(
        newer.contains("queue=mail") && newer.contains("before="),
        "{newer}"
    );
    let back = get(&router, &newer).await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(listed(&back.body), ids[10..20]);
    assert_eq!(
        link(&back.body, "next-page").as_deref(),
        Some(format!("/jobs?queue=mail&after={}", ids[19]).as_str()),
        "older again from the page stepped back to"
    );
    let top = get(&router, &link(&back.body, "prev-page").unwrap()).await;
    assert_eq!(listed(&top.body), ids[..10]);

    // Fewer than a page newer than the cursor: the newest page, full, with no newer link.
    let near_top = get(&router, &format!("/jobs?queue=mail&before={}", ids[5])).await;
    assert_eq!(listed(&near_top.body), ids[..10]);
    assert!(link(&near_top.body, "prev-page").is_none());
}
