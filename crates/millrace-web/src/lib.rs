//! The Millrace dashboard: an axum [`Router`](axum::Router) with server-rendered pages for
//! jobs, queues, periodic schedules, persistent workers and the fleet, on PostgreSQL or
//! SQLite, to mount in your own service or run with `millrace ui`.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn example(client: millrace::Client<millrace_postgres::PgDriver>) -> std::io::Result<()> {
//! let dashboard = millrace_web::Dashboard::new(client).base_path("/jobs-ui");
//! let app = axum::Router::new().nest("/jobs-ui", dashboard.router());
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await
//! # }
//! ```
//!
//! # Pages
//!
//! | path | shows |
//! |---|---|
//! | `/` | jobs by state and queue, the last hour's throughput and failure rate, each queue's oldest available job |
//! | `/jobs` | the jobs list: filters, keyset pagination, bulk actions on a selection or every match |
//! | `/jobs/{id}` | one job: args, metadata, output, errors with traces, timeline, actions |
//! | `/jobs/new` | insert a job |
//! | `/queues` | counts, running jobs, oldest available, pause and resume |
//! | `/periodic` | durable periodic schedules |
//! | `/persistent` | persistent worker instances |
//! | `/fleet` | River's and Millrace's leaders, the clients |
//!
//! # Security
//!
//! - Authentication: none of its own by default (bring your own layers, or rely on a
//!   loopback listener), or [`Dashboard::bearer_token`] and [`Dashboard::basic_auth`].
//! - CSRF: every POST must carry the token of a `SameSite=Strict` cookie in a form field,
//!   and cross-site `Sec-Fetch-Site` or a foreign `Origin` is refused.
//! - A strict Content-Security-Policy (no inline script or style, nothing from another
//!   origin), `X-Frame-Options: DENY` and `frame-ancestors 'none'`, `nosniff`.
//! - Every value from the database reaches the page through maud's escaping.
//! - [`Dashboard::read_only`] hides and refuses every action; [`Dashboard::permissions`]
//!   decides per actor and action; [`Dashboard::subscribe`] reports each action taken.
//!
//! docs/dashboard.md in the repository describes the pages, the security model and the
//! behaviour on bad input in full.

mod actions;
mod app;
mod assets;
mod audit;
mod auth;
mod cache;
mod dashboard;
mod error;
mod filter;
mod layout;
mod pages;
mod security;

pub use audit::{Action, Actor, AuditEvent};
pub use dashboard::Dashboard;
