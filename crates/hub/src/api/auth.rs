//! Who may call the API: authentication (a bearer token, or the console's session cookie),
//! authorization by [`Role`] per route group, the console's sign-in/out (`/api/session`), and
//! the failed-authentication limit in front of it all.
//!
//! - `401` for a missing, unknown, revoked or expired token (or an ended session), counted per
//!   source address ([`FailedAuth`]); `429` once a source failed too often.
//! - `403 {"error": "… needs role X"}` for a role too low.
//! - A cookie is sent by the browser on its own, so writes (anything but GET/HEAD) that rely on
//!   it must come from a page of this hub: their `Origin` must name the host they were sent to.

use super::failures::FailedAuth;
use super::ApiError;
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::sessions::{Sessions, IDLE_TIMEOUT};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "perf_hub_session";

/// What authentication needs besides the hub: sessions and the failure counts.
pub struct AuthState {
    pub hub: Arc<Hub>,
    pub sessions: Sessions,
    pub failures: FailedAuth,
}

impl AuthState {
    pub fn new(hub: Arc<Hub>) -> Arc<Self> {
        let c = &hub.config;
        let failures = FailedAuth::new(c.auth_failures_per_window, Duration::from_millis(c.auth_failure_window_ms));
        Arc::new(Self { hub, sessions: Sessions::default(), failures })
    }

    /// The principal of a bearer token or a session, `None` if neither is (still) valid.
    async fn principal(&self, cred: &Credential) -> Result<Option<Principal>, ApiError> {
        let ops = &self.hub.operators;
        Ok(match cred {
            Credential::Bearer(t) => ops.verify(t).await?,
            Credential::Session(id) => match self.sessions.token_hash(id) {
                Some(hash) => ops.verify_hash(&hash).await?,
                None => None,
            },
            Credential::None => None,
        })
    }

    /// 401, counted against the source.
    async fn unauthorized(&self, remote: SocketAddr) -> Response {
        self.failures.failed(remote.ip(), &self.hub.audit).await;
        ApiError::Unauthorized.into_response()
    }
}

enum Credential {
    Bearer(String),
    Session(String),
    None,
}

/// A bearer token wins over a cookie (it isn't sent by the browser on its own).
fn credential(headers: &HeaderMap) -> Credential {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(t) = bearer {
        return Credential::Bearer(t.to_string());
    }
    session_cookie(headers).map(Credential::Session).unwrap_or(Credential::None)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether `Origin` names the host the request was sent to (`Host`), any scheme.
fn origin_matches_host(headers: &HeaderMap) -> bool {
    let header_str = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    let (Some(origin), Some(host)) = (header_str(header::ORIGIN), header_str(header::HOST)) else { return false };
    let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host))
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn forbidden(msg: impl Into<String>) -> Response {
    (StatusCode::FORBIDDEN, Json(json!({ "error": msg.into() }))).into_response()
}

fn too_many(retry_after: u64) -> Response {
    let body = json!({ "error": format!(
        "too many failed authentications from this address: retry in {retry_after} s") });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

/// Middleware on every API route: the request's [`Principal`] goes into its extensions.
pub async fn authenticate(
    State(auth): State<Arc<AuthState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(retry) = auth.failures.refused(remote.ip(), &auth.hub.audit).await {
        return too_many(retry);
    }
    let cred = credential(req.headers());
    let principal = match auth.principal(&cred).await {
        Ok(Some(p)) => p,
        // No credential at all guesses nothing (the console asks `GET /api/session` on every
        // load before anyone signed in): 401, not counted against the source.
        Ok(None) if matches!(cred, Credential::None) => return ApiError::Unauthorized.into_response(),
        Ok(None) => return auth.unauthorized(remote).await,
        Err(e) => return e.into_response(),
    };
    if matches!(cred, Credential::Session(_)) && is_write(req.method()) && !origin_matches_host(req.headers()) {
        return forbidden("a write with the session cookie must come from the hub's console (Origin does not match)");
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Route-group layer: the authenticated principal needs at least `role`.
pub async fn require_role(State(role): State<Role>, req: Request, next: Next) -> Response {
    match req.extensions().get::<Principal>() {
        Some(p) if p.role >= role => next.run(req).await,
        Some(p) => {
            forbidden(format!("{} {} needs role {role} (this token is {})", req.method(), req.uri().path(), p.role))
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// `403` unless `p` has `role` (for checks that depend on the resource, e.g. the artifact kind).
pub fn require(p: &Principal, role: Role, what: &str) -> Result<(), ApiError> {
    if p.role >= role {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("{what} needs role {role} (this token is {})", p.role)))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub token: Option<String>,
}

fn whoami(p: &Principal) -> serde_json::Value {
    json!({ "name": p.name, "role": p.role, "apps": p.app_scope() })
}

fn cookie(value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// `POST /api/session` with `{"token": "…"}` (or the bearer header): starts a session and sets
/// its cookie. Counts as an authentication (401s are limited like any other).
pub async fn sign_in(
    Extension(auth): Extension<Arc<AuthState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(retry) = auth.failures.refused(remote.ip(), &auth.hub.audit).await {
        return too_many(retry);
    }
    if headers.contains_key(header::ORIGIN) && !origin_matches_host(&headers) {
        return forbidden("sign-in must come from the hub's console (Origin does not match)");
    }
    let from_body = match serde_json::from_slice::<SignIn>(&body) {
        _ if body.is_empty() => None,
        Ok(b) => b.token,
        Err(e) => return ApiError::BadRequest(format!("body must be {{\"token\": \"…\"}}: {e}")).into_response(),
    };
    let cred = match from_body {
        Some(t) => Credential::Bearer(t.trim().to_string()),
        None => match credential(&headers) {
            Credential::Bearer(t) => Credential::Bearer(t),
            _ => Credential::None,
        },
    };
    let principal = match auth.principal(&cred).await {
        Ok(Some(p)) => p,
        Ok(None) => return auth.unauthorized(remote).await,
        Err(e) => return e.into_response(),
    };
    let id = match auth.sessions.create(&principal.token_hash) {
        Ok(id) => id,
        Err(e) => return ApiError::Internal(format!("rng: {e}")).into_response(),
    };
    auth.hub.audit.record(&principal.actor(remote.ip()), "session.start", "", json!({}), "ok").await;
    let mut resp = Json(whoami(&principal)).into_response();
    if let Some(c) = cookie(&id, IDLE_TIMEOUT.as_secs(), secure_cookies(&auth.hub.config)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// `GET /api/session`: who the caller is (the console asks on load).
pub async fn session_info(Extension(p): Extension<Principal>) -> Json<serde_json::Value> {
    Json(whoami(&p))
}

/// `DELETE /api/session`: ends the caller's session (sign-out) and clears the cookie.
pub async fn sign_out(
    Extension(auth): Extension<Arc<AuthState>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = session_cookie(&headers) {
        auth.sessions.end(&id);
        auth.hub.audit.record(&p.actor(remote.ip()), "session.end", "", json!({}), "ok").await;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = cookie("", 0, secure_cookies(&auth.hub.config)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// Cookies carry `Secure` whenever the HTTP port serves TLS (or the config asks for it, e.g.
/// behind a TLS-terminating proxy).
fn secure_cookies(config: &crate::HubConfig) -> bool {
    config.secure_cookies || config.tls_cert.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn origin_must_name_the_host() {
        let ok = headers(&[(header::ORIGIN, "http://127.0.0.1:7080"), (header::HOST, "127.0.0.1:7080")]);
        assert!(origin_matches_host(&ok));
        let other = headers(&[(header::ORIGIN, "http://evil.example"), (header::HOST, "127.0.0.1:7080")]);
        assert!(!origin_matches_host(&other));
        assert!(!origin_matches_host(&headers(&[(header::HOST, "127.0.0.1:7080")])));
        assert!(!origin_matches_host(&headers(&[(header::ORIGIN, "null"), (header::HOST, "h")])));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[(header::COOKIE, "a=1; perf_hub_session=abc; b=2")]);
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        assert!(matches!(credential(&h), Credential::Session(_)));
        let both = headers(&[(header::COOKIE, "perf_hub_session=abc"), (header::AUTHORIZATION, "Bearer t")]);
        assert!(matches!(credential(&both), Credential::Bearer(_)));
    }
}
