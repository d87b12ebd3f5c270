//! `millrace ui`: serves the dashboard (crates/millrace-web) for the database the connection
//! flags name, on loopback unless authentication is set.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use millrace::{Client, Driver};
use millrace_web::Dashboard;

use crate::admin::{AdminArgs, Needs, with_client};
use crate::output::errln;
use crate::signals::Signals;

/// `millrace ui`'s flags.
#[derive(Debug, Args)]
pub(crate) struct UiArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The address to listen on. Anything but a loopback address needs --token or
    /// --basic-auth.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Require this bearer token (an `Authorization: Bearer` header, or `?token=` once in the
    /// browser's address bar).
    #[arg(
        long,
        env = "MILLRACE_UI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Require HTTP basic authentication with this user and password.
    #[arg(
        long,
        env = "MILLRACE_UI_BASIC_AUTH",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    basic_auth: Option<String>,
    /// Hide and refuse every action (retry, cancel, delete, insert, pause, resume).
    #[arg(long)]
    read_only: bool,
}

impl UiArgs {
    /// Checks the flags, connects, and serves until SIGINT or SIGTERM.
    ///
    /// # Errors
    ///
    /// A non-loopback address without authentication, an empty token, a malformed
    /// `--basic-auth`, a database that cannot be reached, or an address already in use.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let basic = match self.basic_auth.as_deref() {
            None => None,
            Some(s) => match s.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Some((user.to_owned(), password.to_owned()))
                }
                _ => bail!("--basic-auth must be USER:PASSWORD, both non-empty"),
            },
        };
        if self.token.as_deref().is_some_and(str::is_empty) {
            bail!("--token must not be empty");
        }
        let authenticated = self.token.is_some() || basic.is_some();
        if !self.listen.ip().is_loopback() && !authenticated {
            bail!(
                "refusing to listen on {} without authentication: it is not a loopback \
                 address, so anyone who reaches it could act on the jobs; pass --token or \
                 --basic-auth (or listen on 127.0.0.1)",
                self.listen
            );
        }
        let mut signals = Signals::new()?;
        let admin = self.admin.connect("millrace ui", Needs::River).await?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("could not listen on {}", self.listen))?;
        let addr = listener
            .local_addr()
            .context("the listener has no address")?;
        with_client!(admin, |client| {
            let router = dashboard(client, &self, basic.clone()).router();
            errln!("millrace ui: listening on http://{addr}/");
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    signals.recv().await;
                })
                .await
                .context("the dashboard's server failed")?;
        });
        Ok(ExitCode::SUCCESS)
    }
}

fn dashboard<D: Driver>(
    client: Client<D>,
    args: &UiArgs,
    basic: Option<(String, String)>,
) -> Dashboard<D> {
    let mut dashboard = Dashboard::new(client).read_only(args.read_only);
    if let Some(token) = &args.token {
        dashboard = dashboard.bearer_token(token.clone());
    }
    if let Some((user, password)) = basic {
        dashboard = dashboard.basic_auth(user, password);
    }
    dashboard
}
