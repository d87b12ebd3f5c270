//! The form that inserts a job from the dashboard. A rejected insert shows the form again with
//! every value as it was typed and the reason, so nothing is lost.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::{Markup, html};
use millrace::Driver;

use crate::app::{App, AppState, Ctx};
use crate::audit::Action;
use crate::error::PageError;
use crate::layout::{self, Nav, Page};

/// What the form holds.
#[derive(Debug, Clone)]
pub(crate) struct InsertForm {
    pub(crate) kind: String,
    pub(crate) queue: String,
    pub(crate) args: String,
    pub(crate) priority: String,
    pub(crate) max_attempts: String,
}

impl Default for InsertForm {
    fn default() -> Self {
        InsertForm {
            kind: String::new(),
            queue: "default".to_owned(),
            args: "{}".to_owned(),
            priority: "1".to_owned(),
            max_attempts: "25".to_owned(),
        }
    }
}

pub(crate) async fn form<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    if !app.allowed(&ctx.actor, Action::Insert) {
        return layout::error(
            &app,
            &ctx,
            PageError::Forbidden("inserting jobs is not allowed here".to_owned()),
        );
    }
    render(&app, &ctx, &InsertForm::default(), None)
}

/// The form page, with the reason the last try failed when there is one.
pub(crate) fn render<D: Driver>(
    app: &App<D>,
    ctx: &Ctx,
    form: &InsertForm,
    problem: Option<&str>,
) -> Response {
    let mut response = layout::respond(
        app,
        ctx,
        Page {
            title: "Insert a job".to_owned(),
            nav: Nav::Jobs,
            live: false,
            body: body(app, ctx, form, problem),
        },
    );
    if problem.is_some() {
        *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    response
}

fn body<D: Driver>(app: &App<D>, ctx: &Ctx, form: &InsertForm, problem: Option<&str>) -> Markup {
    html! {
        h1 { "Insert a job" }
        @if let Some(problem) = problem {
            div.banner.error role="alert" #insert-error { strong { "Not inserted: " } (problem) }
        }
        form.stacked #insert-form method="post" action=(app.path("/jobs/new")) {
            (layout::csrf_field(ctx))
            label { "Kind " input type="text" name="kind" required value=(form.kind); }
            label { "Queue " input type="text" name="queue" value=(form.queue); }
            label { "Args (a JSON object) " textarea name="args" rows="6" { (form.args) } }
            label { "Priority (1 to 4) " input type="number" name="priority" min="1" max="4" value=(form.priority); }
            label { "Max attempts " input type="number" name="max_attempts" min="1" value=(form.max_attempts); }
            button type="submit" { "Insert" }
        }
    }
}
