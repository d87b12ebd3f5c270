//! The jobs list: filters (state, kind, queue, id, args and metadata containment), newest
//! first, keyset pagination by id both ways (`after=<id>` for older jobs, `before=<id>` for
//! newer ones), and bulk actions on a selection or on every match.

use axum::extract::{Extension, RawQuery, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::{Driver, JobId, JobState};

use super::{capped, state_badge};
use crate::app::{App, AppState, Ctx};
use crate::audit::Action;
use crate::error::PageError;
use crate::filter::{JobFilter, borrow, decode, first};
use crate::layout::{self, Nav, Page};

/// Where the list's "N matching" count stops: a filter no index serves (a queue or kind
/// alone) is counted by reading rows, so the list's count stays small; the confirmation of a
/// bulk action counts further.
pub(crate) const MATCH_CAP: i64 = 1_000;
/// Where the confirmation page's count stops.
pub(crate) const CONFIRM_CAP: i64 = 100_000;

pub(crate) async fn page<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
    RawQuery(query): RawQuery,
) -> Response {
    match build(&app, &ctx, query.as_deref().unwrap_or("")).await {
        Ok(body) => layout::respond(
            &app,
            &ctx,
            Page {
                title: "Jobs".to_owned(),
                nav: Nav::Jobs,
                live: false,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

async fn build<D: Driver>(app: &App<D>, ctx: &Ctx, query: &str) -> Result<Markup, PageError> {
    let pairs = decode(query.as_bytes());
    let filter = JobFilter::parse(borrow(&pairs))?;
    let cursor = |key: &str| -> Result<Option<JobId>, PageError> {
        match first(&pairs, key).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s.parse::<i64>().map(|id| Some(JobId(id))).map_err(|_| {
                PageError::BadRequest(format!("the page cursor {key}={s:?} is not a job id"))
            }),
        }
    };
    let (after, before) = (cursor("after")?, cursor("before")?);
    if after.is_some() && before.is_some() {
        return Err(PageError::BadRequest(
            "a page has one cursor: after (older jobs) or before (newer jobs), not both".to_owned(),
        ));
    }
    let size = app.settings.page_size;
    let (mut page, matching) = tokio::try_join!(
        async {
            match before {
                // Newer jobs: the keyset the other way (oldest first from the cursor), one
                // more than a page to know whether newer ones remain, then turned newest first.
                Some(before) => {
                    let mut params = filter.params().limit(size + 1).after(before);
                    params.descending = false;
                    app.client.job_list(params).await
                }
                None => {
                    let mut params = filter.params().limit(size);
                    if let Some(after) = after {
                        params = params.after(after);
                    }
                    app.client.job_list(params).await
                }
            }
        },
        app.client.job_count_capped(filter.params(), MATCH_CAP),
    )?;
    // Whether jobs newer than this page match: always past an `after` cursor; before a
    // `before` cursor, when the extra row came back.
    let mut newer = after.is_some();
    if before.is_some() {
        let rows = page.jobs.len() + page.undecodable.len();
        if rows as i64 > size {
            newer = true;
            // Drop the newest row, the one past the page.
            let newest_job = page.jobs.iter().map(|j| j.id.0).max();
            let newest_bad = page.undecodable.iter().map(|u| u.id.0).max();
            if newest_job > newest_bad {
                page.jobs.retain(|j| Some(j.id.0) != newest_job);
            } else {
                page.undecodable.retain(|u| Some(u.id.0) != newest_bad);
            }
            page.jobs.reverse();
            page.undecodable.reverse();
        } else {
            // Fewer than a page of newer jobs: the newest page is the one to show, full.
            page = app.client.job_list(filter.params().limit(size)).await?;
        }
    }
    // The keyset cursors of this page's ends, over decoded and undecodable rows alike.
    let ids = || {
        page.jobs
            .iter()
            .map(|j| j.id.0)
            .chain(page.undecodable.iter().map(|u| u.id.0))
    };
    let (newest, oldest) = (ids().max(), ids().min());
    // Older jobs follow this page when it came back full.
    let older = match before {
        Some(_) if newer => oldest,
        _ => page.next.as_ref().and_then(|n| n.after).map(|id| id.0),
    };
    let now = jiff::Timestamp::now();
    let actions: Vec<Action> = [Action::Retry, Action::Cancel, Action::Delete]
        .into_iter()
        .filter(|a| app.allowed(&ctx.actor, *a))
        .collect();
    let jobs_path = app.path("/jobs");

    Ok(html! {
        h1 { "Jobs" }
        form.filters #filter-form method="get" action=(jobs_path) {
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[filter.states == [s]] { (s.as_str()) }
                    }
                }
            }
            label { "Kind " input type="text" name="kind" value=(filter.text("kind")); }
            label { "Queue " input type="text" name="queue" value=(filter.text("queue")); }
            label { "Id " input type="text" name="id" inputmode="numeric" value=(filter.text("id")); }
            label { "Args contain " input type="text" name="args" placeholder="{\"customer_id\": 7}" value=(filter.text("args")); }
            label { "Metadata contains " input type="text" name="metadata" placeholder="{\"tenant\": \"acme\"}" value=(filter.text("metadata")); }
            button type="submit" { "Filter" }
            @if !filter.is_empty() { " " a href=(jobs_path) { "Clear" } }
        }
        p #match-count { (capped(matching, MATCH_CAP)) " matching" }
        form #bulk-form method="post" action=(app.path("/jobs/bulk")) {
            (layout::csrf_field(ctx))
            (filter.hidden())
            @if !actions.is_empty() {
                div.bulk {
                    "Selected: "
                    @for a in &actions {
                        button type="submit" name="action" value=(a.as_str()) data-needs-selection="1" { (a.as_str()) }
                    }
                    span.sep { "|" }
                    "Every matching job: "
                    @for a in &actions {
                        button type="submit" name="all" value=(a.as_str()) { (a.as_str()) " all " (capped(matching, MATCH_CAP)) "…" }
                    }
                }
            }
            table #jobs {
                thead { tr {
                    @if !actions.is_empty() { th { input #select-all type="checkbox" aria-label="Select all"; } }
                    th.num { "Id" } th { "State" } th { "Kind" } th { "Queue" } th.num { "Attempt" }
                    th { "Created" } th { "Args" }
                } }
                tbody {
                    @for job in &page.jobs {
                        tr data-job-id=(job.id.0) {
                            @if !actions.is_empty() {
                                td { input type="checkbox" name="id" value=(job.id.0) aria-label={ "Select job " (job.id.0) }; }
                            }
                            td.num { a href=(app.path(&format!("/jobs/{}", job.id.0))) { (job.id.0) } }
                            td { (state_badge(job.state)) }
                            td.kind { (job.kind) }
                            td { (job.queue) }
                            td.num { (job.attempt) "/" (job.max_attempts) }
                            td { (layout::time(job.created_at, now)) }
                            td.args { code { (truncate(&job.args.to_string(), 80)) } }
                        }
                    }
                    @for bad in &page.undecodable {
                        tr.undecodable {
                            @if !actions.is_empty() { td {} }
                            td.num { (bad.id.0) } td colspan="6" { "undecodable row: " (bad.error) }
                        }
                    }
                    @if page.jobs.is_empty() && page.undecodable.is_empty() {
                        tr { td colspan="8" { span.muted { "No jobs match." } } }
                    }
                }
            }
        }
        nav.pager {
            @if newer {
                a #first-page href={ (jobs_path) "?" (filter.query(&[])) } { "« Newest" }
                @if let Some(newest) = newest {
                    " " a #prev-page href={ (jobs_path) "?" (filter.query(&[("before", newest.to_string())])) } { "‹ Newer" }
                }
            }
            @if let Some(cursor) = older {
                " " a #next-page href={ (jobs_path) "?" (filter.query(&[("after", cursor.to_string())])) } { "Older »" }
            }
        }
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}
