//! The state-changing handlers: retry, cancel or delete one job, a selection, or every job a
//! filter matches (after a confirmation page that shows the count); insert a job; pause and
//! resume a queue. Each runs only past the CSRF check (in the security layer), read-only mode
//! and the host's permissions, and is reported as an audit event.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use maud::html;
use millrace::{Driver, InsertManyParams, InsertOpts, JobBatchAction, JobId, JobListParams};

use crate::app::{App, AppState, Ctx};
use crate::audit::{Action, Actor};
use crate::error::PageError;
use crate::filter::{JobFilter, borrow, decode, first};
use crate::layout::{self, Nav, Page};
use crate::pages::capped;
use crate::pages::insert::{InsertForm, render};
use crate::pages::job::parse_id;
use crate::pages::jobs::CONFIRM_CAP;

/// How many jobs one statement of a bulk action takes.
const BATCH: i64 = 1_000;

fn see_other(location: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn permit<D: Driver>(app: &App<D>, actor: &Actor, action: Action) -> Result<(), PageError> {
    if app.settings.read_only {
        return Err(PageError::Forbidden(
            "this dashboard is read-only".to_owned(),
        ));
    }
    if !app.allowed(actor, action) {
        return Err(PageError::Forbidden(format!(
            "{} is not allowed for {}",
            action,
            actor.name()
        )));
    }
    Ok(())
}

/// `POST /jobs/{id}/{retry|cancel|delete}`.
pub(crate) async fn one<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let result = async {
        let action = Action::job_action(&action)
            .ok_or_else(|| PageError::NotFound(format!("no job action {action:?}")))?;
        permit(&app, &ctx.actor, action)?;
        let id = parse_id(&id)?;
        let row = match action {
            Action::Retry => app.client.job_retry(id).await?,
            Action::Cancel => app.client.job_cancel(id).await?,
            _ => app.client.job_delete(id).await?,
        };
        app.record(&ctx.actor, action, format!("job {}", row.id), 1);
        Ok::<_, PageError>(if action == Action::Delete {
            see_other(app.path("/jobs"))
        } else {
            see_other(app.path(&format!("/jobs/{}", id.0)))
        })
    }
    .await;
    result.unwrap_or_else(|err| layout::error(&app, &ctx, err))
}

/// `POST /jobs/bulk`: `action` with the selected `id`s, or `all` with the filter's fields
/// (first answered with a confirmation page, then acted on with `confirm=yes`).
pub(crate) async fn bulk<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    let pairs = decode(&body);
    let result = async {
        if let Some(name) = first(&pairs, "all") {
            let action = Action::job_action(name)
                .ok_or_else(|| PageError::BadRequest(format!("unknown action {name:?}")))?;
            permit(&app, &ctx.actor, action)?;
            let filter = JobFilter::parse(borrow(&pairs))?;
            if first(&pairs, "confirm") != Some("yes") {
                return confirm(&app, &ctx, action, &filter).await;
            }
            let count = act_on_filter(&app, action, &filter).await?;
            let target = if filter.is_empty() {
                "every job".to_owned()
            } else {
                filter.query(&[])
            };
            app.record(&ctx.actor, action, target, count);
            return Ok(see_other(format!(
                "{}?{}",
                app.path("/jobs"),
                filter.query(&[])
            )));
        }
        let name = first(&pairs, "action").unwrap_or("");
        let action = Action::job_action(name)
            .ok_or_else(|| PageError::BadRequest(format!("unknown action {name:?}")))?;
        permit(&app, &ctx.actor, action)?;
        let ids = pairs
            .iter()
            .filter(|(k, _)| k == "id")
            .map(|(_, v)| {
                v.parse::<i64>().map(JobId).map_err(|_| {
                    PageError::BadRequest(format!("job id {v:?} is not a whole number"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(PageError::BadRequest("no job was selected".to_owned()));
        }
        let params = JobListParams::new()
            .ids(ids.iter().copied())
            .limit(ids.len() as i64);
        let result = app
            .client
            .job_act_many(batch_action(action), params)
            .await?;
        let count = result.applied.len() as u64;
        app.record(
            &ctx.actor,
            action,
            format!("selection of {}", ids.len()),
            count,
        );
        // Back to the list the selection was made on.
        let filter = JobFilter::parse(borrow(&pairs))?;
        Ok(see_other(format!(
            "{}?{}",
            app.path("/jobs"),
            filter.query(&[])
        )))
    }
    .await;
    result.unwrap_or_else(|err| layout::error(&app, &ctx, err))
}

fn batch_action(action: Action) -> JobBatchAction {
    match action {
        Action::Retry => JobBatchAction::Retry,
        Action::Cancel => JobBatchAction::Cancel,
        _ => JobBatchAction::Delete,
    }
}

async fn confirm<D: Driver>(
    app: &App<D>,
    ctx: &Ctx,
    action: Action,
    filter: &JobFilter,
) -> Result<Response, PageError> {
    let matching = app
        .client
        .job_count_capped(filter.params(), CONFIRM_CAP)
        .await?;
    let body = html! {
        h1 { "Confirm: " (action.as_str()) " every matching job" }
        p #confirm-count {
            "This will " (action.as_str()) " " strong { (capped(matching, CONFIRM_CAP)) } " jobs matching "
            @if filter.is_empty() { strong { "no filter at all (every job)" } } @else { code { (filter.query(&[])) } }
            ". Running jobs are never retried or deleted; finalized jobs are not cancelled."
        }
        form method="post" action=(app.path("/jobs/bulk")) {
            (layout::csrf_field(ctx))
            (filter.hidden())
            input type="hidden" name="all" value=(action.as_str());
            input type="hidden" name="confirm" value="yes";
            button #confirm-button type="submit" { "Yes, " (action.as_str()) " them" }
            " " a href={ (app.path("/jobs")) "?" (filter.query(&[])) } { "Cancel" }
        }
    };
    Ok(layout::respond(
        app,
        ctx,
        Page {
            title: "Confirm".to_owned(),
            nav: Nav::Jobs,
            live: false,
            body,
        },
    ))
}

/// Acts on every job the filter matches, a batch at a time, and counts the jobs acted on.
async fn act_on_filter<D: Driver>(
    app: &App<D>,
    action: Action,
    filter: &JobFilter,
) -> Result<u64, PageError> {
    let mut params = filter.params().limit(BATCH);
    if filter.is_empty() {
        params = params.unfiltered();
    }
    let mut next = Some(params);
    let mut count = 0u64;
    while let Some(params) = next {
        let batch = app
            .client
            .job_act_many(batch_action(action), params)
            .await?;
        count += batch.applied.len() as u64;
        next = batch.next;
    }
    Ok(count)
}

/// `POST /jobs/new`: inserts a job from the form.
pub(crate) async fn insert<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    if let Err(err) = permit(&app, &ctx.actor, Action::Insert) {
        return layout::error(&app, &ctx, err);
    }
    let pairs = decode(&body);
    let field = |k: &str| first(&pairs, k).unwrap_or("").trim().to_owned();
    let form = InsertForm {
        kind: field("kind"),
        queue: field("queue"),
        args: field("args"),
        priority: field("priority"),
        max_attempts: field("max_attempts"),
    };
    let params = match parse_insert(&form) {
        Ok(params) => params,
        Err(problem) => return render(&app, &ctx, &form, Some(&problem)),
    };
    match app.client.insert_many(vec![params]).await {
        Ok(mut results) if !results.is_empty() => {
            let job = results.remove(0).job;
            app.record(&ctx.actor, Action::Insert, format!("job {}", job.id), 1);
            see_other(app.path(&format!("/jobs/{}", job.id.0)))
        }
        Ok(_) => render(&app, &ctx, &form, Some("the insert returned no job")),
        Err(err @ (millrace::Error::InvalidInsert(_) | millrace::Error::InvalidArgument(_))) => {
            render(&app, &ctx, &form, Some(&err.to_string()))
        }
        Err(err) => layout::error(&app, &ctx, err.into()),
    }
}

fn parse_insert(form: &InsertForm) -> Result<InsertManyParams, String> {
    if form.kind.is_empty() {
        return Err("a job needs a kind".to_owned());
    }
    let args: serde_json::Value = serde_json::from_str(if form.args.is_empty() {
        "{}"
    } else {
        &form.args
    })
    .map_err(|err| format!("the args are not valid JSON: {err}"))?;
    if !args.is_object() {
        return Err("the args must be a JSON object".to_owned());
    }
    let mut opts = InsertOpts::new();
    if !form.queue.is_empty() {
        opts = opts.queue(form.queue.clone());
    }
    if !form.priority.is_empty() {
        let p = form
            .priority
            .parse::<i16>()
            .map_err(|_| format!("priority {:?} is not a whole number", form.priority))?;
        opts = opts.priority(p);
    }
    if !form.max_attempts.is_empty() {
        let m = form
            .max_attempts
            .parse::<i32>()
            .map_err(|_| format!("max attempts {:?} is not a whole number", form.max_attempts))?;
        opts = opts.max_attempts(m);
    }
    Ok(InsertManyParams::from_json(form.kind.clone(), &args).opts(opts))
}

/// `POST /queues/{name}/{pause|resume}`.
pub(crate) async fn queue<D: Driver>(
    State(app): State<AppState<D>>,
    Extension(ctx): Extension<Ctx>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let result = async {
        let action = match action.as_str() {
            "pause" => Action::PauseQueue,
            "resume" => Action::ResumeQueue,
            other => return Err(PageError::NotFound(format!("no queue action {other:?}"))),
        };
        permit(&app, &ctx.actor, action)?;
        if action == Action::PauseQueue {
            app.client.queue_pause(&name).await?;
        } else {
            app.client.queue_resume(&name).await?;
        }
        app.record(&ctx.actor, action, name.clone(), 1);
        Ok(see_other(app.path("/queues")))
    }
    .await;
    result.unwrap_or_else(|err| layout::error(&app, &ctx, err))
}
