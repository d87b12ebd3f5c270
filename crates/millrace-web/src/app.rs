//! What every handler gets: the dashboard's settings and client ([`App`], shared as
//! [`AppState`]), and what the security layer learned of the request ([`Ctx`]). A leaf of the
//! crate's modules, so the router, the layer and the pages all depend on it and it on none
//! of them.

use std::sync::Arc;
use std::time::Duration;

use millrace::{Client, Driver};
use tokio::sync::broadcast;

use crate::audit::{Action, Actor, AuditEvent};
use crate::auth::Auth;
use crate::cache::CountsCache;

/// The form field repeating the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// Decides whether an actor may take an action; see [`Dashboard::permissions`](crate::Dashboard::permissions).
pub(crate) type PermissionFn = dyn Fn(&Actor, Action) -> bool + Send + Sync;

/// What the handlers read of the dashboard's settings.
pub(crate) struct Settings {
    pub(crate) base_path: String,
    pub(crate) read_only: bool,
    pub(crate) auth: Auth,
    pub(crate) permissions: Option<Arc<PermissionFn>>,
    pub(crate) poll_interval: Duration,
    pub(crate) page_size: i64,
}

/// The state every handler gets.
pub(crate) struct App<D: Driver> {
    pub(crate) client: Client<D>,
    pub(crate) settings: Settings,
    pub(crate) audit: broadcast::Sender<AuditEvent>,
    /// The per-queue live counts the overview and the queues page share.
    pub(crate) counts: Arc<CountsCache>,
}

/// The shared handle the router's handlers hold.
pub(crate) type AppState<D> = Arc<App<D>>;

impl<D: Driver> App<D> {
    /// Whether `actor` may take `action`: never in read-only mode, else as the host decides
    /// (everything when it set no callback).
    pub(crate) fn allowed(&self, actor: &Actor, action: Action) -> bool {
        !self.settings.read_only
            && self
                .settings
                .permissions
                .as_ref()
                .is_none_or(|allow| allow(actor, action))
    }

    /// A path under the dashboard's mount point.
    pub(crate) fn path(&self, rest: &str) -> String {
        format!("{}{rest}", self.settings.base_path)
    }

    /// Reports an action to the subscribers and the log.
    pub(crate) fn record(&self, actor: &Actor, action: Action, target: String, count: u64) {
        // The action moved jobs or paused a queue: the next page counts afresh.
        self.counts.forget();
        tracing::info!(actor = actor.name(), action = action.as_str(), %target, count, "dashboard action");
        // No receiver is fine: the host did not subscribe.
        let _ = self.audit.send(AuditEvent {
            actor: actor.name().to_owned(),
            action,
            target,
            count,
            at: jiff::Timestamp::now(),
        });
    }
}

/// What the handlers know about the request beyond its own parts.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Who makes it.
    pub(crate) actor: Actor,
    /// The CSRF token the forms of the page must carry.
    pub(crate) csrf: String,
    /// Whether the live-update script asked for the content only.
    pub(crate) fragment: bool,
}
