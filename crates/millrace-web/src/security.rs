//! The layer in front of every route: authentication, CSRF checks on state-changing requests,
//! and the security headers on every response.
//!
//! CSRF uses a double-submitted token: a random value in a `SameSite=Strict`, `HttpOnly`
//! cookie, repeated in a hidden field of every form, and compared in constant time on every
//! request that is not a GET or HEAD. A cross-site page can neither read the cookie nor make
//! the browser send it, and the browser's own `Sec-Fetch-Site` and `Origin` headers are
//! checked as well, so a forged post fails on three counts.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use millrace::Driver;
use rand::RngCore as _;

use crate::app::{AppState, CSRF_FIELD, Ctx};
use crate::audit::Actor;
use crate::auth::{AUTH_COOKIE, cookie, same};
use crate::layout;

/// The cookie holding the CSRF token.
const CSRF_COOKIE: &str = "millrace_csrf";
/// The header the live-update script sends to get a page's content without its frame.
const FRAGMENT_HEADER: &str = "x-millrace-fragment";
/// The largest form body read (the insert form's args are the biggest part).
const MAX_FORM_BYTES: usize = 1 << 20;

/// The strict policy: only this origin's script, style and images, nothing inline, no frames,
/// forms posting only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Authenticates, checks CSRF on state-changing requests, and sets the security headers.
pub(crate) async fn guard<D: Driver>(
    State(app): State<AppState<D>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = check(&app, req, next).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        headers,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

async fn check<D: Driver>(app: &AppState<D>, mut req: Request, next: Next) -> Response {
    let cookie_path = if app.settings.base_path.is_empty() {
        "/".to_owned()
    } else {
        app.settings.base_path.clone()
    };

    // Authentication first: nothing, not even an error page naming a job, before it.
    let mut actor = req.extensions().get::<Actor>().cloned();
    if app.settings.auth.required() {
        let from_credentials = app.settings.auth.check(req.headers());
        match from_credentials {
            Some(who) => {
                actor.get_or_insert(who);
            }
            None => {
                if let Some(response) = token_login(app, &req, &cookie_path) {
                    return response;
                }
                let mut response = layout::bare(
                    StatusCode::UNAUTHORIZED,
                    "Authentication required",
                    "This dashboard needs a token or a user name and password.",
                );
                let challenge = if app.settings.auth.has_basic() {
                    "Basic realm=\"millrace\", charset=\"UTF-8\""
                } else {
                    "Bearer realm=\"millrace\""
                };
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                return response;
            }
        }
    }
    let actor = actor.unwrap_or_else(|| Actor::new("anonymous"));

    let existing = cookie(req.headers(), CSRF_COOKIE)
        .filter(|t| is_token(t))
        .map(str::to_owned);
    let fresh = existing.is_none();
    let csrf = existing.unwrap_or_else(new_token);

    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Err(why) = cross_site(req.headers()) {
            return refuse(why);
        }
        if fresh {
            return refuse("the CSRF cookie is missing: reload the page and try again");
        }
        // The body is read here to check its token, and handed on as it was.
        let (parts, body) = req.into_parts();
        let bytes: Bytes = match to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return layout::bare(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request too large",
                    "The form is larger than 1 MiB.",
                );
            }
        };
        let given = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned());
        match given {
            Some(given) if same(given.as_bytes(), csrf.as_bytes()) => {}
            _ => {
                return refuse(
                    "the form's CSRF token does not match: reload the page and try again",
                );
            }
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }

    let fragment = req.headers().contains_key(FRAGMENT_HEADER);
    req.extensions_mut().insert(Ctx {
        actor,
        csrf: csrf.clone(),
        fragment,
    });
    let mut response = next.run(req).await;
    if fresh {
        let value = format!("{CSRF_COOKIE}={csrf}; Path={cookie_path}; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A `GET …?token=…` with the right token: the token moves into a cookie and the browser is
/// sent to the same page without it, so it stays out of the history and the logs.
fn token_login<D: Driver>(app: &AppState<D>, req: &Request, cookie_path: &str) -> Option<Response> {
    let token = app.settings.auth.token()?;
    if req.method() != Method::GET {
        return None;
    }
    let query = req.uri().query()?;
    let given = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())?;
    if !same(given.as_bytes(), token.as_bytes()) {
        return None;
    }
    let rest: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "token"))
        .finish();
    let path = req.uri().path();
    // The router sees the path without the mount point; the browser needs it back.
    let mut location = format!("{}{path}", app.settings.base_path);
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest);
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    let cookie = format!("{AUTH_COOKIE}={given}; Path={cookie_path}; HttpOnly; SameSite=Strict");
    let value = HeaderValue::from_str(&cookie).ok()?;
    response.headers_mut().append(header::SET_COOKIE, value);
    Some(response)
}

/// Refuses a request the browser itself marks as coming from another site.
fn cross_site(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err("the request came from another site");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, host)| host.as_bytes());
        if origin_host.is_none() || origin_host != host {
            return Err("the request's Origin is not this dashboard");
        }
    }
    Ok(())
}

fn refuse(why: &str) -> Response {
    layout::bare(StatusCode::FORBIDDEN, "Request refused", why)
}

/// 32 random bytes in hex, from the thread's generator (a CSPRNG seeded by the operating
/// system).
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9090"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9090"),
        );
        assert!(cross_site(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h).is_err());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(cross_site(&h).is_ok());
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert!(is_token(&a) && is_token(&b));
        assert_ne!(a, b);
    }
}
