//! Who did what: the actions the dashboard can take, the actor behind a request, and the audit
//! events the host application subscribes to.

use std::fmt;

/// A state-changing action the dashboard offers. Each is checked against read-only mode and
/// the host's permission callback before it runs, and reported as an [`AuditEvent`] after.
///
/// ```
/// use millrace_web::Action;
/// assert_eq!(Action::Retry.as_str(), "retry");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Retry jobs (make them available again).
    Retry,
    /// Cancel jobs.
    Cancel,
    /// Delete jobs.
    Delete,
    /// Insert a job.
    Insert,
    /// Pause a queue.
    PauseQueue,
    /// Resume a queue.
    ResumeQueue,
}

impl Action {
    /// The action's name, as it appears in forms and audit events.
    ///
    /// ```
    /// assert_eq!(millrace_web::Action::PauseQueue.as_str(), "pause_queue");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Delete => "delete",
            Action::Insert => "insert",
            Action::PauseQueue => "pause_queue",
            Action::ResumeQueue => "resume_queue",
        }
    }

    /// The job actions, parsed from a form's `action` field.
    pub(crate) fn job_action(name: &str) -> Option<Action> {
        match name {
            "retry" => Some(Action::Retry),
            "cancel" => Some(Action::Cancel),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who makes a request: what the audit events and the permission callback see.
///
/// The host application names its users by inserting an `Actor` into the request's extensions
/// in its own authentication layer; otherwise the dashboard's own authentication names them
/// (the basic-auth user, or `token` for a bearer token), and `anonymous` is left.
///
/// ```
/// use axum::{Router, middleware::{self, Next}, extract::Request};
/// use millrace_web::Actor;
///
/// async fn name_the_user(mut req: Request, next: Next) -> axum::response::Response {
///     // A real app reads its own session here.
///     req.extensions_mut().insert(Actor::new("alice"));
///     next.run(req).await
/// }
/// # fn mount(dashboard: Router) -> Router {
/// let app = Router::new()
///     .nest("/jobs-ui", dashboard)
///     .layer(middleware::from_fn(name_the_user));
/// # app }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    name: String,
}

impl Actor {
    /// An actor with this name.
    ///
    /// ```
    /// assert_eq!(millrace_web::Actor::new("alice").name(), "alice");
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Actor { name: name.into() }
    }

    /// The actor's name.
    ///
    /// ```
    /// assert_eq!(millrace_web::Actor::new("ops").name(), "ops");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One action taken through the dashboard, sent to every receiver from
/// [`Dashboard::subscribe`](crate::Dashboard::subscribe) after the action ran.
///
/// ```no_run
/// # async fn example(dashboard: &millrace_web::Dashboard<millrace_postgres::PgDriver>) {
/// let mut events = dashboard.subscribe();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         println!("{} did {} on {}: {} jobs", event.actor, event.action, event.target, event.count);
///     }
/// });
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: Action,
    /// What it was done to: a job id, `selection of N`, the filter as a query string, or a
    /// queue name.
    pub target: String,
    /// How many jobs or queues it changed.
    pub count: u64,
    /// When it finished.
    pub at: jiff::Timestamp,
}
