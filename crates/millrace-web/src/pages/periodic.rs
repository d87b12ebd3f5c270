//! Periodic jobs: each named schedule (as the dashboard's client registered it), its next run,
//! its last run and that job's state.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::Driver;

use super::state_badge;
use crate::app::{App, AppState, Ctx};
use crate::error::PageError;
use crate::layout::{self, Nav, Page};

pub(crate) async fn page<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    match build(&app).await {
        Ok(body) => layout::respond(
            &app,
            &ctx,
            Page {
                title: "Periodic jobs".to_owned(),
                nav: Nav::Periodic,
                live: true,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

async fn build<D: Driver>(app: &App<D>) -> Result<Markup, PageError> {
    let schedules = app.client.periodic_schedules().await?;
    // The schedule itself is code on the scheduling client, not stored: this client's
    // registry says it for the periodic jobs it registered.
    let registered = app.client.periodic_jobs().schedules();
    let now = jiff::Timestamp::now();
    Ok(html! {
        h1 { "Periodic jobs" }
        p.muted { "Named periodic jobs keep their next run in the database, so a change of scheduling client neither skips nor repeats a run." }
        table #periodic {
            thead { tr { th { "Id" } th { "Schedule" } th { "Next run" } th { "Overdue" } th { "Last run" } th { "Last job" } } }
            tbody {
                @for s in &schedules {
                    tr data-periodic=(s.id) {
                        td { (s.id) }
                        td.schedule {
                            @if let Some((_, schedule)) = registered.iter().find(|(id, _)| *id == s.id) {
                                (schedule.to_string())
                            } @else {
                                span.muted title="The schedule is set in the scheduling client's code; this dashboard's client did not register this job." { "not registered here" }
                            }
                        }
                        td { (layout::time(s.next_run_at, now)) }
                        td { @if s.overdue.is_zero() { span.muted { "no" } } @else { strong.warn { (layout::human(s.overdue)) } } }
                        td { @if let Some(at) = s.last_run_at { (layout::time(at, now)) } @else { span.muted { "never" } } }
                        td {
                            @if let Some(id) = s.last_job_id {
                                a href=(app.path(&format!("/jobs/{}", id.0))) { (id.0) }
                                @if let Some(state) = s.last_job_state { " " (state_badge(state)) }
                            }
                        }
                    }
                }
                @if schedules.is_empty() { tr { td colspan="6" { span.muted { "No named periodic jobs." } } } }
            }
        }
    })
}
