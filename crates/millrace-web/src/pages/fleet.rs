//! The leaders (River's and Millrace's leases) and the fleet's clients.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::Driver;

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
                title: "Leader & clients".to_owned(),
                nav: Nav::Fleet,
                live: true,
                body,
            },
        ),
        Err(err) => layout::error(&app, &ctx, err),
    }
}

async fn build<D: Driver>(app: &App<D>) -> Result<Markup, PageError> {
    let (leaders, clients) = tokio::try_join!(app.client.leaders(), app.client.fleet_clients())?;
    let now = leaders.now;
    let lease = |name: &str, row: &Option<millrace::LeaderRow>| {
        html! {
            tr {
                td { (name) }
                @if let Some(r) = row {
                    td { (r.leader_id) }
                    td { (layout::time(r.elected_at, now)) }
                    td { (layout::time(r.expires_at, now)) @if r.expires_at <= now { " " strong.warn { "expired" } } }
                } @else {
                    td colspan="3" { span.muted { "no leader" } }
                }
            }
        }
    };
    Ok(html! {
        h1 { "Leader & clients" }
        table #leaders {
            thead { tr { th { "Lease" } th { "Held by" } th { "Elected" } th { "Expires" } } }
            tbody {
                (lease("River maintenance (river_leader)", &leaders.river))
                (lease("Millrace fleet work (millrace_leader)", &leaders.millrace))
            }
        }
        h2 { "Clients" }
        table #clients {
            thead { tr { th { "Client" } th { "Live" } th { "Started" } th { "Heartbeat" } th { "Running" } } }
            tbody {
                @for c in &clients {
                    tr {
                        td { (c.id) }
                        td { @match c.live { Some(true) => "yes", Some(false) => strong.warn { "lease expired" }, None => span.muted { "unknown (no heartbeat row)" } } }
                        td { @if let Some(at) = c.started_at { (layout::time(at, now)) } }
                        td { @if let Some(at) = c.heartbeat_at { (layout::time(at, now)) } }
                        td {
                            @for r in &c.running { div { (r.count) " × " (r.kind) " in " (r.queue) } }
                        }
                    }
                }
                @if clients.is_empty() { tr { td colspan="5" { span.muted { "No clients." } } } }
            }
        }
    })
}
