//! The dashboard's own credentials: a bearer token (also as a cookie after a `?token=`
//! login) and basic auth, compared in constant time. The layer that asks for them is
//! `security`; this module only knows what passes.

use axum::http::header::{self, HeaderMap};
use base64::Engine as _;

use crate::audit::Actor;

/// The cookie a `?token=` login leaves, so a browser need not send the header.
pub(crate) const AUTH_COOKIE: &str = "millrace_auth";

/// The dashboard's own authentication: none, a bearer token, basic auth, or either of both.
#[derive(Default)]
pub(crate) struct Auth {
    token: Option<String>,
    basic: Option<(String, String)>,
}

impl Auth {
    pub(crate) fn with_token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    pub(crate) fn with_basic(mut self, user: String, password: String) -> Self {
        self.basic = Some((user, password));
        self
    }

    /// The bearer token, when one is set.
    pub(crate) fn token(&self) -> Option<&String> {
        self.token.as_ref()
    }

    /// Whether basic auth is set (the 401's challenge names it).
    pub(crate) fn has_basic(&self) -> bool {
        self.basic.is_some()
    }

    pub(crate) fn required(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }

    /// The actor the credentials name, or `None` when they do not pass.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Option<Actor> {
        if let Some(token) = &self.token {
            if let Some(given) = bearer(headers) {
                if same(given.as_bytes(), token.as_bytes()) {
                    return Some(Actor::new("token"));
                }
            }
            if let Some(given) = cookie(headers, AUTH_COOKIE) {
                if same(given.as_bytes(), token.as_bytes()) {
                    return Some(Actor::new("token"));
                }
            }
        }
        if let Some((user, password)) = &self.basic {
            if let Some((u, p)) = basic(headers) {
                // Both compared, whatever the first gave, so timing tells nothing.
                let ok =
                    same(u.as_bytes(), user.as_bytes()) & same(p.as_bytes(), password.as_bytes());
                if ok {
                    return Some(Actor::new(u));
                }
            }
        }
        None
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The value of cookie `name`, when the request carries it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares in time that depends on the lengths only, not on where the first difference is.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_compares_whole_values() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
