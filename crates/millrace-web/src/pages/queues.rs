//! Queues: each queue's live counts, how many jobs it runs now, its concurrency, its oldest
//! available job, whether it is paused, and pause and resume.
//!
//! Concurrency (`max_workers` and a [`millrace::ConcurrencyLimit`]) is client configuration,
//! not stored in the database: the page shows the dashboard's own client's settings, for the
//! queues that client works, and "not worked here" for the others.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::{ConcurrencyLimit, Driver, JobState};

use crate::app::{App, AppState, Ctx};
use crate::audit::Action;
use crate::error::PageError;
use crate::layout::{self, Nav, Page};

/// The most queues listed.
const QUEUE_LIMIT: i64 = 1_000;

pub(crate) async fn page<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    match build(&app, &ctx).await {
        Ok(body) => layout::respond(
            &app,
            &ctx,
            Page {
                title: "Queues".to_owned(),
                nav: Nav::Queues,
                live: true,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

async fn build<D: Driver>(app: &App<D>, ctx: &Ctx) -> Result<Markup, PageError> {
    let (rows, counts, lags) = tokio::try_join!(
        app.client.queue_list(None, QUEUE_LIMIT),
        app.counts.get(&app.client),
        app.client.queue_lag(),
    )?;
    let (counts, counted_at) = counts;
    // Queues with jobs but no row yet (no client reported them) are listed too.
    let mut names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    for q in counts.queues() {
        if !names.iter().any(|n| n == q) {
            names.push(q.to_owned());
        }
    }
    let configs = app.client.queue_configs();
    for (q, _) in &configs {
        if !names.iter().any(|n| n == q) {
            names.push(q.clone());
        }
    }
    names.sort();
    let now = jiff::Timestamp::now();
    let (can_pause, can_resume) = (
        app.allowed(&ctx.actor, Action::PauseQueue),
        app.allowed(&ctx.actor, Action::ResumeQueue),
    );
    Ok(html! {
        h1 { "Queues" }
        (super::overview::counted(counted_at))
        table #queues {
            thead { tr {
                th { "Queue" } th { "Status" } th.num { "Running" } th.num { "Available" }
                th.num { "Scheduled" } th.num { "Retryable" }
                th.num title="This client's max_workers for the queue" { "Max workers" }
                th title="This client's concurrency limit for the queue" { "Concurrency limit" }
                th { "Oldest available" } th { "" }
            } }
            tbody {
                @for name in &names {
                    @let row = rows.iter().find(|r| &r.name == name);
                    @let paused = row.and_then(|r| r.paused_at);
                    tr data-queue=(name) {
                        td { a href={ (app.path("/jobs")) "?queue=" (urlencode(name)) } { (name) } }
                        td.status {
                            @if let Some(at) = paused { span.paused { "paused" } " " (layout::time(at, now)) }
                            @else { "active" }
                        }
                        td.num { (layout::count(counts.get(name, JobState::Running))) }
                        td.num { (layout::count(counts.get(name, JobState::Available))) }
                        td.num { (layout::count(counts.get(name, JobState::Scheduled))) }
                        td.num { (layout::count(counts.get(name, JobState::Retryable))) }
                        @match configs.iter().find(|(q, _)| q == name) {
                            Some((_, config)) => {
                                td.num.max-workers { (config.max_workers) }
                                td.limit { @match &config.concurrency {
                                    Some(limit) => (describe(limit)),
                                    None => span.muted { "none" },
                                } }
                            }
                            None => td.muted colspan="2" { "not worked by this client" }
                        }
                        td { @if let Some(lag) = lags.iter().find(|l| &l.queue == name) { (layout::human(lag.age)) } @else { span.muted { "none" } } }
                        td {
                            @if paused.is_some() && can_resume {
                                (button(app, ctx, name, "resume"))
                            } @else if paused.is_none() && can_pause {
                                (button(app, ctx, name, "pause"))
                            }
                        }
                    }
                }
                @if names.is_empty() { tr { td colspan="10" { span.muted { "No queues yet." } } } }
            }
        }
    })
}

/// A concurrency limit in words: `2 across the fleet, 1 per client, per kind, per customer_id`.
fn describe(limit: &ConcurrencyLimit) -> String {
    let mut parts = Vec::new();
    if let Some(n) = limit.global_limit {
        parts.push(format!("{n} across the fleet"));
    }
    if let Some(n) = limit.local_limit {
        parts.push(format!("{n} per client"));
    }
    if limit.by_kind {
        parts.push("per kind".to_owned());
    }
    if !limit.by_args.is_empty() {
        parts.push(format!("per {}", limit.by_args.join(", ")));
    }
    parts.join(", ")
}

fn button<D: Driver>(app: &App<D>, ctx: &Ctx, queue: &str, action: &str) -> Markup {
    html! {
        form.inline method="post" action=(app.path(&format!("/queues/{}/{action}", urlencode(queue)))) {
            (layout::csrf_field(ctx))
            button type="submit" class={ "queue-" (action) } { (action) }
        }
    }
}

/// A queue name as one path segment or query value: percent-encoded, with spaces as `%20`
/// (form encoding's `+` would be read back as a plus in a path).
pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
