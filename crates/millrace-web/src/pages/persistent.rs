//! Persistent workers: each instance's holder, lease age, restarts and last errors.

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
                title: "Persistent workers".to_owned(),
                nav: Nav::Persistent,
                live: true,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

async fn build<D: Driver>(app: &App<D>) -> Result<Markup, PageError> {
    let (instances, undecodable) = app.client.persistent_instances().await?;
    let now = jiff::Timestamp::now();
    Ok(html! {
        h1 { "Persistent workers" }
        table #persistent {
            thead { tr {
                th { "Name" } th { "State" } th { "Holder" } th { "Lease age" } th.num { "Restarts" }
                th { "Last failover or error" } th { "Job" }
            } }
            tbody {
                @for i in &instances {
                    tr data-persistent=(i.name) {
                        td { (i.name) }
                        td { (state_badge(i.state)) }
                        td.holder { @if let Some(h) = &i.holder { (h) } @else { span.muted { "none" } } }
                        td.lease-age { @if let Some(age) = i.lease_age { (layout::human(age)) } }
                        td.num.restarts { (i.restarts) }
                        td.failover {
                            @if let Some(e) = i.errors.last() {
                                (layout::time(e.at, now)) ": " span.error-message { (e.error) }
                            } @else { span.muted { "none" } }
                        }
                        td { a href=(app.path(&format!("/jobs/{}", i.job_id.0))) { (i.job_id.0) } }
                    }
                }
                @for bad in &undecodable {
                    tr.undecodable { td colspan="6" { "undecodable instance row: " (bad.error) } td { (bad.id.0) } }
                }
                @if instances.is_empty() && undecodable.is_empty() {
                    tr { td colspan="7" { span.muted { "No persistent workers." } } }
                }
            }
        }
    })
}
