//! [`Dashboard`]: the settings, and the router they build.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use millrace::{Client, Driver};
use tokio::sync::broadcast;

use crate::app::{App, AppState, Settings};
use crate::audit::{Action, Actor, AuditEvent};
use crate::auth::Auth;
use crate::{actions, assets, pages, security};

/// How many audit events a slow receiver may fall behind before it misses some.
const AUDIT_CAPACITY: usize = 1024;

/// The dashboard for one client's database: build it, then mount [`Dashboard::router`] in an
/// axum app, or serve it alone (`millrace ui` does).
///
/// Every page is rendered on the server from the client's inspection verbs; the only script
/// is the embedded live-update and select-all helper, and nothing is loaded from elsewhere.
/// Links and forms carry the path the router is mounted at, so set
/// [`Dashboard::base_path`] when nesting it.
///
/// ```no_run
/// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> std::io::Result<()> {
/// let dashboard = millrace_web::Dashboard::new(client).base_path("/jobs-ui");
/// let app = axum::Router::new().nest("/jobs-ui", dashboard.router());
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub struct Dashboard<D: Driver> {
    client: Client<D>,
    settings: Settings,
    audit: broadcast::Sender<AuditEvent>,
}

impl<D: Driver> Dashboard<D> {
    /// A dashboard over `client`'s database: writable, without authentication of its own
    /// (the host app's layers, or loopback, protect it), mounted at the root.
    ///
    /// The client need not be started: an insert-only client reads and acts on the jobs
    /// just as well.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let router = millrace_web::Dashboard::new(client).read_only(true).router();
    /// # }
    /// ```
    pub fn new(client: Client<D>) -> Self {
        let (audit, _) = broadcast::channel(AUDIT_CAPACITY);
        Dashboard {
            client,
            settings: Settings {
                base_path: String::new(),
                read_only: false,
                auth: Auth::default(),
                permissions: None,
                poll_interval: Duration::from_secs(3),
                page_size: 50,
            },
            audit,
        }
    }

    /// The path the router is nested at (`/jobs-ui`), so links and forms reach it. Defaults to
    /// the root. A trailing `/` is dropped.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let app = axum::Router::new()
    ///     .nest("/admin/jobs", millrace_web::Dashboard::new(client).base_path("/admin/jobs").router());
    /// # }
    /// ```
    #[must_use]
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.settings.base_path = path.trim_end_matches('/').to_owned();
        self
    }

    /// Read-only mode: every action is hidden from the pages and refused (403) when posted
    /// anyway. Defaults to off.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let dashboard = millrace_web::Dashboard::new(client).read_only(true);
    /// # }
    /// ```
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.settings.read_only = read_only;
        self
    }

    /// Requires this bearer token on every request: an `Authorization: Bearer` header, or
    /// once `?token=…` in a browser's address bar, which the dashboard swaps for a
    /// `SameSite=Strict`, `HttpOnly` cookie. Requests without it get 401.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let dashboard = millrace_web::Dashboard::new(client).bearer_token("s3cret-token");
    /// # }
    /// ```
    #[must_use]
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.settings.auth = self.settings.auth.with_token(token.into());
        self
    }

    /// Requires HTTP basic authentication with this user and password (browsers ask for it).
    /// Can be combined with [`Dashboard::bearer_token`]: either then passes.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let dashboard = millrace_web::Dashboard::new(client).basic_auth("ops", "correct horse");
    /// # }
    /// ```
    #[must_use]
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.settings.auth = self.settings.auth.with_basic(user.into(), password.into());
        self
    }

    /// Lets the host decide, per actor and action, what may be done; a refused action is
    /// hidden from the pages and answered 403 when posted. Without a callback every action is
    /// allowed (unless read-only).
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// use millrace_web::{Action, Dashboard};
    /// let dashboard = Dashboard::new(client)
    ///     .permissions(|actor, action| action != Action::Delete || actor.name() == "admin");
    /// # }
    /// ```
    #[must_use]
    pub fn permissions(
        mut self,
        allow: impl Fn(&Actor, Action) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.permissions = Some(Arc::new(allow));
        self
    }

    /// How often the pages with live updates refresh. Defaults to 3 seconds.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let dashboard = millrace_web::Dashboard::new(client)
    ///     .poll_interval(std::time::Duration::from_secs(10));
    /// # }
    /// ```
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval.max(Duration::from_millis(250));
        self
    }

    /// How many jobs a page of the jobs list shows, 1 to 1,000. Defaults to 50.
    ///
    /// ```no_run
    /// # fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let dashboard = millrace_web::Dashboard::new(client).page_size(100);
    /// # }
    /// ```
    #[must_use]
    pub fn page_size(mut self, size: i64) -> Self {
        self.settings.page_size = size.clamp(1, 1_000);
        self
    }

    /// A receiver of every action taken through this dashboard's router, from now on.
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) {
    /// let dashboard = millrace_web::Dashboard::new(client);
    /// let mut audit = dashboard.subscribe();
    /// let router = dashboard.router();
    /// while let Ok(event) = audit.recv().await {
    ///     eprintln!("audit: {event:?}");
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.audit.subscribe()
    }

    /// The router: every page and action, the embedded assets, and the security layers
    /// (authentication, CSRF, headers). Nest it at [`Dashboard::base_path`].
    ///
    /// ```no_run
    /// # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> std::io::Result<()> {
    /// let app = millrace_web::Dashboard::new(client).router();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    pub fn router(self) -> Router {
        let state: AppState<D> = Arc::new(App {
            client: self.client,
            settings: self.settings,
            audit: self.audit,
            counts: Arc::default(),
        });
        Router::new()
            .route("/", get(pages::overview::page::<D>))
            .route("/jobs", get(pages::jobs::page::<D>))
            .route(
                "/jobs/new",
                get(pages::insert::form::<D>).post(actions::insert::<D>),
            )
            .route("/jobs/bulk", post(actions::bulk::<D>))
            .route("/jobs/{id}", get(pages::job::page::<D>))
            .route("/jobs/{id}/{action}", post(actions::one::<D>))
            .route("/queues", get(pages::queues::page::<D>))
            .route("/queues/{name}/{action}", post(actions::queue::<D>))
            .route("/periodic", get(pages::periodic::page::<D>))
            .route("/persistent", get(pages::persistent::page::<D>))
            .route("/fleet", get(pages::fleet::page::<D>))
            .route("/assets/{file}", get(assets::serve))
            .fallback(pages::not_found::<D>)
            .layer(from_fn_with_state(state.clone(), security::guard::<D>))
            .with_state(state)
    }
}

impl<D: Driver> std::fmt::Debug for Dashboard<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("base_path", &self.settings.base_path)
            .field("read_only", &self.settings.read_only)
            .finish_non_exhaustive()
    }
}
