//! The frame every page shares (head, navigation, banners) and the small formatting helpers
//! the pages use. Every value goes through maud's escaping; nothing here writes raw HTML.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse as _, Response};
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use millrace::Driver;

use crate::app::{App, CSRF_FIELD, Ctx};
use crate::error::PageError;

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Jobs,
    Queues,
    Periodic,
    Persistent,
    Fleet,
    None,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Jobs, "/jobs", "Jobs"),
    (Nav::Queues, "/queues", "Queues"),
    (Nav::Periodic, "/periodic", "Periodic"),
    (Nav::Persistent, "/persistent", "Persistent workers"),
    (Nav::Fleet, "/fleet", "Leader & clients"),
];

/// A page to render: its title, section, whether it refreshes itself, and its content.
pub(crate) struct Page {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) live: bool,
    pub(crate) body: Markup,
}

/// Renders a page, or only its content for the live-update script.
pub(crate) fn respond<D: Driver>(app: &App<D>, ctx: &Ctx, page: Page) -> Response {
    if ctx.fragment {
        return Html(page.body.into_string()).into_response();
    }
    Html(frame(app, ctx, &page.title, page.nav, page.live, None, page.body).into_string())
        .into_response()
}

/// Renders an error as a page of its own with the status it calls for. A database error keeps
/// polling, and the page reloads itself once the database answers again.
pub(crate) fn error<D: Driver>(app: &App<D>, ctx: &Ctx, err: PageError) -> Response {
    let status = err.status();
    let (title, message) = (err.title(), err.message());
    if ctx.fragment {
        return (status, Html(html! { p.error { (message) } }.into_string())).into_response();
    }
    let banner = html! {
        div.banner.error role="alert" {
            strong { (title) ": " } (message)
            @if status == StatusCode::SERVICE_UNAVAILABLE {
                " This page retries by itself and reloads when the database is back."
            }
        }
    };
    let body = html! {
        h1 { (title) }
        @if status == StatusCode::NOT_FOUND {
            p { a href=(app.path("/jobs")) { "Back to the jobs" } }
        }
    };
    let reload = status == StatusCode::SERVICE_UNAVAILABLE;
    let markup = frame(app, ctx, title, Nav::None, reload, Some(banner), body);
    (status, Html(markup.into_string())).into_response()
}

fn frame<D: Driver>(
    app: &App<D>,
    ctx: &Ctx,
    title: &str,
    nav: Nav,
    live: bool,
    banner: Option<Markup>,
    body: Markup,
) -> Markup {
    let interval = app.settings.poll_interval.as_millis().to_string();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // The same token the forms carry, for scripts of the same origin.
                meta name="csrf-token" content=(ctx.csrf);
                title { (title) " · Millrace" }
                link rel="stylesheet" href=(app.path("/assets/app.css"));
                script src=(app.path("/assets/app.js")) defer {}
            }
            body {
                header.top {
                    a.brand href=(app.path("/")) { "Millrace" }
                    nav {
                        @for (key, path, label) in NAV {
                            a href=(app.path(path)) class=[(key == nav).then_some("active")] { (label) }
                        }
                    }
                    @if app.settings.read_only {
                        span.badge { "read-only" }
                    }
                    @if live {
                        button #live-toggle type="button" { "Pause updates" }
                    }
                }
                div #live-error.banner.error.hidden role="alert" {}
                @if let Some(banner) = &banner { (banner) }
                main #content data-live=[live.then_some(interval.as_str())]
                     data-reload=[banner.is_some().then_some("1")] {
                    (body)
                }
            }
        }
    }
}

/// A page with no navigation, for refusals made before the request reaches a handler.
pub(crate) fn bare(status: StatusCode, title: &str, message: &str) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) " · Millrace" } }
            body { h1 { (title) } p { (message) } }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf); }
}

/// A time as UTC to the second, with how long ago (or ahead) it is.
pub(crate) fn time(at: Timestamp, now: Timestamp) -> Markup {
    let text = at.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
    let rel = relative(at, now);
    html! { time datetime=(at.to_string()) title=(text) { (text) " " span.muted { "(" (rel) ")" } } }
}

/// `3m ago` or `in 2h`.
pub(crate) fn relative(at: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - at.as_second();
    let span = human(Duration::from_secs(secs.unsigned_abs()));
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A duration in its largest whole unit: `45s`, `12m`, `3h`, `2d`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A count with thousands separators: `1,234,567`.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Pretty-printed JSON, for a `<pre>`.
pub(crate) fn json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(4_700_000), "4,700,000");
        assert_eq!(count(-12_345), "-12,345");
    }

    #[test]
    fn durations_use_their_largest_unit() {
        assert_eq!(human(Duration::from_secs(59)), "59s");
        assert_eq!(human(Duration::from_secs(61)), "1m");
        assert_eq!(human(Duration::from_secs(7_200)), "2h");
        assert_eq!(human(Duration::from_secs(200_000)), "2d");
    }
}
