//! One job: its fields, args and metadata pretty-printed, its output, each attempt's error
//! and trace, a timeline, and the actions its state allows.

use axum::extract::{Extension, Path, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::{Driver, JobId, JobRow, JobState};

use super::state_badge;
use crate::app::{App, AppState, Ctx};
use crate::audit::Action;
use crate::error::PageError;
use crate::layout::{self, Nav, Page};

pub(crate) async fn page<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let id = parse_id(&id)?;
        let job = app.client.job_get(id).await?;
        Ok::<_, PageError>((job.id, body(&app, &ctx, &job)))
    }
    .await;
    match result {
        Ok((id, body)) => layout::respond(
            &app,
            &ctx,
            Page {
                title: format!("Job {id}"),
                nav: Nav::Jobs,
                live: true,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

/// A job id from the path; anything else is a 404, as no job has it.
pub(crate) fn parse_id(s: &str) -> Result<JobId, PageError> {
    s.parse::<i64>()
        .map(JobId)
        .map_err(|_| PageError::NotFound(format!("no job has the id {s:?}")))
}

fn body<D: Driver>(app: &App<D>, ctx: &Ctx, job: &JobRow) -> Markup {
    let now = jiff::Timestamp::now();
    let finalized = job.state.is_finalized();
    let can = |a: Action| app.allowed(&ctx.actor, a);
    let actions = [
        (
            Action::Retry,
            job.state != JobState::Running && job.state != JobState::Available,
        ),
        (Action::Cancel, !finalized),
        (Action::Delete, job.state != JobState::Running),
    ];
    let output = job.metadata.get("output");
    let mut timeline: Vec<(&str, jiff::Timestamp)> =
        vec![("created", job.created_at), ("scheduled", job.scheduled_at)];
    if let Some(at) = job.attempted_at {
        timeline.push(("last attempted", at));
    }
    for e in &job.errors {
        timeline.push(("attempt failed", e.at));
    }
    if let Some(at) = job.finalized_at {
        timeline.push(("finalized", at));
    }
    timeline.sort_by_key(|(_, at)| *at);

    html! {
        h1 { "Job " (job.id.0) " " span #job-state { (state_badge(job.state)) } }
        div.actions #job-actions {
            @for (action, applies) in actions {
                @if applies && can(action) {
                    form method="post" action=(app.path(&format!("/jobs/{}/{}", job.id.0, action.as_str()))) {
                        (layout::csrf_field(ctx))
                        button type="submit" id={ "action-" (action.as_str()) } { (action.as_str()) }
                    }
                }
            }
        }
        dl.fields {
            dt { "Kind" } dd.kind { (job.kind) }
            dt { "Queue" } dd { (job.queue) }
            dt { "Attempt" } dd { (job.attempt) " of " (job.max_attempts) }
            dt { "Priority" } dd { (job.priority) }
            dt { "Tags" } dd { @if job.tags.is_empty() { span.muted { "none" } } @else { (job.tags.join(", ")) } }
            dt { "Attempted by" } dd { @if let Some(c) = job.attempted_by.last() { (c) } @else { span.muted { "nobody yet" } } }
        }
        h2 { "Args" }
        pre #job-args { (layout::json(&job.args)) }
        h2 { "Metadata" }
        pre #job-metadata { (layout::json(&job.metadata)) }
        @if let Some(output) = output {
            h2 { "Output" }
            pre #job-output { (layout::json(output)) }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for (what, at) in &timeline {
                li { strong { (what) } " " (layout::time(*at, now)) }
            }
        }
        h2 { "Errors" }
        @if job.errors.is_empty() {
            p.muted { "No failed attempts." }
        } @else {
            @for e in job.errors.iter().rev() {
                article.attempt-error {
                    h3 { "Attempt " (e.attempt) " " (layout::time(e.at, now)) }
                    pre.error-message { (e.error) }
                    @if !e.trace.is_empty() {
                        details { summary { "Trace" } pre.trace { (e.trace) } }
                    }
                }
            }
        }
    }
}
