//! One module per page. Each handler gathers what it shows through the client's verbs, then
//! renders it with maud (every value escaped); failures become [`PageError`] pages.

pub(crate) mod fleet;
pub(crate) mod insert;
pub(crate) mod job;
pub(crate) mod jobs;
pub(crate) mod overview;
pub(crate) mod periodic;
pub(crate) mod persistent;
pub(crate) mod queues;

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::{Driver, JobState};

use crate::app::{AppState, Ctx};
use crate::error::PageError;
use crate::layout;

/// Any path the router does not know: a 404 page in the dashboard's frame.
pub(crate) async fn not_found<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    layout::error(&app, &ctx, PageError::NotFound("no such page".to_owned()))
}

/// A job state as a coloured label.
pub(crate) fn state_badge(state: JobState) -> Markup {
    html! { span class={ "state state-" (state.as_str()) } { (state.as_str()) } }
}

/// A capped count: `100,000+` when the count reached its cap.
pub(crate) fn capped(n: i64, cap: i64) -> String {
    if n >= cap {
        format!("{}+", layout::count(cap))
    } else {
        layout::count(n)
    }
}
