//! The operators' HTTP API (JSON; a bearer token or the console's session cookie on everything
//! but the console's static files) and the Prometheus endpoint.
//!
//! - [`auth`]: authentication, roles, sessions, the failed-login limit ([`failures`]);
//! - [`paging`]: the list routes' `limit`/`cursor` pagination;
//! - here: the routes, each translating a request into domain calls. An app-scoped token sees
//!   only its apps: anything of another app answers 404, as if it did not exist.

pub mod auth;
pub mod devtools;
pub mod failures;
pub mod heap;
pub mod paging;
pub mod redact;
pub mod rules;
pub mod storage;
pub mod tokens;
pub mod viewers;

use crate::hub::{CommandError, Hub};
use crate::ids;
use crate::operators::{Principal, Role};
use crate::renders::RenderError;
use crate::store::{ArtifactCursor, ArtifactRecord, MetricCursor, ProcessRecord};
use auth::AuthState;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use perf_protocol::CommandKind;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Bounds on the capture length operators may ask for.
pub const MAX_SECONDS: u32 = 600;
/// `step` of the metrics route: from a second to a day.
const METRIC_STEP_MS: std::ops::RangeInclusive<u64> = 1000..=86_400_000;

pub fn router(hub: Arc<Hub>) -> Router {
    let auth_state = AuthState::new(hub.clone());
    let viewer = Router::new()
        .route("/api/session", get(auth::session_info).delete(auth::sign_out))
        .route("/api/processes", get(list_processes))
        .route("/api/processes/{id}", get(get_process))
        .route("/api/processes/{id}/metrics", get(process_metrics))
        .route("/api/artifacts", get(list_artifacts))
        .route("/api/artifacts/{id}", get(get_artifact))
        .route("/api/artifacts/{id}/flamegraph.svg", get(artifact_flamegraph))
        .route("/api/artifacts/{id}/analysis", get(artifact_analysis))
        .route("/api/artifacts/{a}/diff/{b}", get(artifacts_diff))
        .route("/api/capture-kinds", get(capture_kinds))
        .route("/metrics", get(prometheus))
        .merge(viewers::viewer_routes())
        .merge(heap::viewer_routes(hub.config.heap_index_budget_bytes));
    // Commands: operator. Downloads, pins and deletes: `storage::router`.
    let operator = Router::new()
        .route("/api/processes/{id}/commands", post(post_command))
        .route_layer(middleware::from_fn_with_state(Role::Operator, auth::require_role));
    let admin = Router::new()
        .route("/api/audit", get(list_audit))
        .route_layer(middleware::from_fn_with_state(Role::Admin, auth::require_role));
    let devtools = devtools::routes();
    let api = viewer
        .merge(operator)
        .merge(admin)
        .merge(storage::router())
        .merge(rules::router())
        .merge(devtools.admin)
        .merge(tokens::admin_routes())
        .layer(middleware::from_fn_with_state(auth_state.clone(), auth::authenticate));
    Router::new()
        .route("/", get(console))
        .route("/console/{file}", get(console_asset))
        .route("/api/session", post(auth::sign_in))
        .merge(viewers::public_routes())
        .merge(devtools.public)
        .merge(api)
        .layer(Extension(auth_state))
        .layer(middleware::from_fn(security_headers))
        .with_state(hub)
}

/// The console's policy: its own scripts, styles and API only; flame graphs in a frame of
/// this hub; nothing may frame the console.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every response; a route that sets its own (the flame graph) keeps them.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    resp
}

/// An API error: a status code and `{"error": "..."}` a person can act on. Internal failures
/// (store, I/O, tasks) are logged with their detail and answered with a generic message, so
/// paths and database errors never reach a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing, unknown, revoked or expired token (or an ended session)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error (see the hub's log)")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "api: internal error");
        }
        let mut resp = (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

macro_rules! internal_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::Internal(e.to_string())
            }
        }
    )*};
}
internal_from!(crate::store::StoreError, serde_json::Error, std::io::Error, tokio::task::JoinError);

fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}
fn not_found(m: impl Into<String>) -> ApiError {
    ApiError::NotFound(m.into())
}
fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::Conflict(m.into())
}
fn gone(m: impl Into<String>) -> ApiError {
    ApiError::Gone(m.into())
}
fn unprocessable(m: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(m.into())
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::NoFlamegraph(_) | RenderError::Render(_) => ApiError::Unprocessable(e.to_string()),
            RenderError::NotReady(_) => ApiError::Conflict(e.to_string()),
            RenderError::Io(e) => ApiError::Internal(e.to_string()),
            RenderError::Storage(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NoSuchProcess => ApiError::NotFound(e.to_string()),
            CommandError::Unsupported(m) => ApiError::Unprocessable(m),
            CommandError::NotConnected => ApiError::Conflict(e.to_string()),
            CommandError::LinkClosed => ApiError::Unavailable(e.to_string()),
            CommandError::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// The processes and artifacts of other apps don't exist for an app-scoped token.
fn visible(p: &Principal, app: &str, what: &str) -> Result<(), ApiError> {
    if p.sees_app(app) {
        Ok(())
    } else {
        Err(not_found(format!("no such {what}")))
    }
}

async fn visible_process(hub: &Hub, p: &Principal, id: &str) -> Result<ProcessRecord, ApiError> {
    valid_id(id)?;
    let proc = hub.processes.get(id).await?.ok_or_else(|| not_found("no such process"))?;
    visible(p, &proc.app, "process")?;
    Ok(proc)
}

async fn visible_artifact(hub: &Hub, p: &Principal, id: &str) -> Result<ArtifactRecord, ApiError> {
    valid_id(id)?;
    let a = hub.artifacts.get(id).await?.ok_or_else(|| not_found(format!("no such artifact {id}")))?;
    visible(p, &a.app, "artifact")?;
    Ok(a)
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if ids::is_valid_id(id) {
        Ok(())
    } else {
        Err(bad_request("malformed id"))
    }
}

async fn console() -> Html<&'static str> {
    Html(include_str!("../../../../console/index.html"))
}

/// The console's static files, compiled into the binary (no token needed: no data in them).
async fn console_asset(Path(file): Path<String>) -> Response {
    let (body, ty): (&'static str, &'static str) = match file.as_str() {
        "app.js" => (include_str!("../../../../console/app.js"), "text/javascript"),
        "heap.js" => (include_str!("../../../../console/heap.js"), "text/javascript"),
        "style.css" => (include_str!("../../../../console/style.css"), "text/css"),
        "uPlot.iife.min.js" => (include_str!("../../../../console/vendor/uPlot.iife.min.js"), "text/javascript"),
        "uPlot.min.css" => (include_str!("../../../../console/vendor/uPlot.min.css"), "text/css"),
        _ => return not_found("no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, ty), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ProcessQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Processes in id order (stable while they change, so pages never repeat one).
async fn list_processes(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ProcessQuery>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(q.limit)?;
    let after: Option<String> = paging::decode_cursor(q.cursor.as_deref())?;
    let rows = hub.processes.page(p.app_scope(), after, limit + 1).await?;
    paging::page(rows, limit, |r| r.id.clone(), |r| r, "/api/processes?")
}

async fn get_process(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(visible_process(&hub, &p, &id).await?)?))
}

#[derive(Debug, Deserialize)]
pub struct MetricsQuery {
    /// Milliseconds since the epoch; default: the last hour.
    pub since: Option<u64>,
    /// Milliseconds since the epoch, included; default: now (the console's time-range picker
    /// looks at a window of the stored history with `since` and `until`).
    pub until: Option<u64>,
    /// Milliseconds: only the first sample of each step (a chart of days needs no more points
    /// than it has pixels); absent: every sample.
    pub step: Option<u64>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Samples from `since` to `until`, oldest first.
async fn process_metrics(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Response, ApiError> {
    visible_process(&hub, &p, &id).await?;
    let limit = paging::limit(q.limit)?;
    let after: Option<MetricCursor> = paging::decode_cursor(q.cursor.as_deref())?;
    let since = q.since.unwrap_or_else(|| perf_protocol::unix_ms().saturating_sub(3_600_000));
    let until = q.until.unwrap_or(u64::MAX);
    if until < since {
        return Err(bad_request(format!("until ({until}) is before since ({since})")));
    }
    let step = q.step.unwrap_or(0);
    if q.step.is_some() && !METRIC_STEP_MS.contains(&step) {
        let (lo, hi) = (METRIC_STEP_MS.start(), METRIC_STEP_MS.end());
        return Err(bad_request(format!("step must be between {lo} and {hi} ms, got {step}")));
    }
    let range = crate::store::MetricRange { since_ms: since, until_ms: until, step_ms: step };
    let rows = hub.metrics.history_page(&id, range, after, limit + 1).await?;
    // The next page's URL keeps the window and the step.
    let mut base = format!("/api/processes/{id}/metrics?since={since}&");
    if let Some(until) = q.until {
        base.push_str(&format!("until={until}&"));
    }
    if let Some(step) = q.step {
        base.push_str(&format!("step={step}&"));
    }
    paging::page(rows, limit, |(k, _)| *k, |(_, sample)| sample, &base)
}

/// Body of `POST /api/processes/{id}/commands`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    pub kind: String,
    pub seconds: Option<u32>,
    pub interval_us: Option<u32>,
    pub frequency: Option<u32>,
    pub interval_bytes: Option<u32>,
    #[serde(default)]
    pub force: bool,
    /// `leak_hunt` only (see [`crate::leak_hunt`]).
    pub snapshots: Option<u32>,
    pub interval_secs: Option<u32>,
}

/// CPU profiler sampling interval (µs): V8 takes any positive value; below 10 µs the profiler
/// costs more than the program, above 1 s a profile has almost no samples.
pub const INTERVAL_US: std::ops::RangeInclusive<u32> = 10..=1_000_000;
/// Heap sampling interval (bytes): V8's default is 32 KiB; 1 byte would record every allocation.
pub const INTERVAL_BYTES: std::ops::RangeInclusive<u32> = 1024..=(1 << 30);
/// `perf record -F` frequency (Hz).
pub const FREQUENCY: std::ops::RangeInclusive<u32> = 1..=10_000;

/// `value` if absent or within `range`, else a message naming the parameter and its bounds.
fn bounded(name: &str, value: Option<u32>, range: std::ops::RangeInclusive<u32>) -> Result<Option<u32>, String> {
    match value {
        Some(v) if !range.contains(&v) => {
            Err(format!("{name} must be between {} and {}, got {v}", range.start(), range.end()))
        }
        v => Ok(v),
    }
}

/// Validates a request into a protocol command kind, with a message a human can act on.
pub fn command_kind(req: &CommandRequest) -> Result<CommandKind, String> {
    let seconds = || -> Result<u32, String> {
        let s = req.seconds.unwrap_or(10);
        if (1..=MAX_SECONDS).contains(&s) {
            Ok(s)
        } else {
            Err(format!("seconds must be between 1 and {MAX_SECONDS}, got {s}"))
        }
    };
    match req.kind.as_str() {
        "heap_snapshot" => Ok(CommandKind::HeapSnapshot),
        "cpu_profile" => Ok(CommandKind::CpuProfile {
            seconds: seconds()?,
            interval_us: bounded("interval_us", req.interval_us, INTERVAL_US)?,
        }),
        "perf_flamegraph" => Ok(CommandKind::PerfFlamegraph {
            seconds: seconds()?,
            frequency: bounded("frequency", req.frequency, FREQUENCY)?,
        }),
        "heap_sampling" => Ok(CommandKind::HeapSampling {
            seconds: seconds()?,
            interval_bytes: bounded("interval_bytes", req.interval_bytes, INTERVAL_BYTES)?,
        }),
        other => Err(format!(
            "unknown command kind '{other}' (expected heap_snapshot, cpu_profile, perf_flamegraph or heap_sampling)"
        )),
    }
}

async fn post_command(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    body: Result<Json<CommandRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    visible_process(&hub, &p, &id).await?;
    let actor = p.actor(remote.ip());
    let body = match body {
        Ok(Json(req)) if req.kind == "leak_hunt" => return rules::leak_hunt(&hub, &id, &req, &actor).await,
        other => other,
    };
    // Refused requests are on the audit trail too: someone tried.
    let parsed = body.map_err(|e| e.body_text()).and_then(|Json(req)| Ok((command_kind(&req)?, req.force)));
    let (kind, force) = match parsed {
        Ok(v) => v,
        Err(msg) => {
            hub.audit.record(&actor, "command.request", &id, json!({}), &format!("rejected: {msg}")).await;
            return Err(bad_request(msg));
        }
    };
    match hub.request_command(&id, kind, force, &actor).await {
        Ok((artifact, None)) => Ok((StatusCode::ACCEPTED, Json(json!({ "artifact": artifact }))).into_response()),
        Ok((artifact, Some(refusal))) => {
            Ok((StatusCode::CONFLICT, Json(json!({ "error": refusal, "artifact": artifact }))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct ArtifactQuery {
    pub process_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Artifacts newest first.
async fn list_artifacts(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ArtifactQuery>,
) -> Result<Response, ApiError> {
    if let Some(id) = &q.process_id {
        valid_id(id)?;
    }
    let limit = paging::limit(q.limit)?;
    let after: Option<ArtifactCursor> = paging::decode_cursor(q.cursor.as_deref())?;
    let rows = hub.artifacts.page(q.process_id.clone(), p.app_scope(), after, limit + 1).await?;
    let base = match &q.process_id {
        Some(id) => format!("/api/artifacts?process_id={id}&"),
        None => "/api/artifacts?".to_string(),
    };
    paging::page(rows, limit, |a| (a.created_at.clone(), a.id.clone()), |a| a, &base)
}

async fn get_artifact(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::to_value(visible_artifact(&hub, &p, &id).await?)?))
}

async fn snapshot_artifact(hub: &Hub, p: &Principal, id: &str) -> Result<ArtifactRecord, ApiError> {
    let a = visible_artifact(hub, p, id).await?;
    crate::analysis::check_snapshot(&a).map_err(unprocessable)?;
    Ok(a)
}

/// A cached report as the caller may see it: string values only for admins (they are heap
/// contents, see [`redact`]).
fn lookup_response(l: crate::analysis::Lookup, p: &Principal) -> Response {
    use crate::analysis::Lookup;
    match l {
        Lookup::Ready(bytes) if p.role < Role::Admin => match redact::hide_string_values(&bytes) {
            Ok(hidden) => ([(header::CONTENT_TYPE, "application/json")], hidden).into_response(),
            Err(e) => ApiError::Internal(format!("cached report is not JSON: {e}")).into_response(),
        },
        Lookup::Ready(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Lookup::Pending(state) => (StatusCode::ACCEPTED, Json(state)).into_response(),
        Lookup::Failed(e) => unprocessable(format!("analysis failed: {e}")).into_response(),
    }
}

/// Summary by constructor, largest objects with retainer paths, leak suspects. `202` with
/// progress while the background job runs; the result is cached per artifact.
async fn artifact_analysis(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = snapshot_artifact(&hub, &p, &id).await?;
    Ok(lookup_response(crate::analysis::analysis(&hub, &a).await, &p))
}

/// What grew between snapshot `a` and a later snapshot `b` of the same process.
async fn artifacts_diff(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (a, b) = (snapshot_artifact(&hub, &p, &a).await?, snapshot_artifact(&hub, &p, &b).await?);
    if a.process_id != b.process_id {
        return Err(unprocessable(
            "the snapshots are of different processes: object ids only match within one process",
        ));
    }
    Ok(lookup_response(crate::analysis::diff(&hub, &a, &b).await, &p))
}

/// The flame graph's own policy: it is a standalone document with inferno's inline script and
/// styles (zoom, search), shown in a frame of the console only, and sandboxed — an opaque
/// origin that can't reach the hub's API with the operator's cookie.
const FLAMEGRAPH_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     img-src data:; sandbox allow-scripts; frame-ancestors 'self'";

/// SVG flame graph of a profile artifact, rendered once (off the async threads) and cached.
async fn artifact_flamegraph(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let a = visible_artifact(&hub, &p, &id).await?;
    let svg = hub.renders.flamegraph_svg(hub.artifacts.storage(), &a).await?;
    let headers = [
        (header::CONTENT_TYPE, "image/svg+xml"),
        (header::CONTENT_SECURITY_POLICY, FLAMEGRAPH_CSP),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
    ];
    Ok((headers, svg).into_response())
}

/// The capture kinds and what the hub can show of each (the console builds its buttons from it).
async fn capture_kinds() -> Json<&'static [perf_protocol::CaptureKind]> {
    Json(&perf_protocol::CAPTURE_KINDS)
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The audit, newest first. Entries name processes and artifacts of every app: an app-scoped
/// admin token can't read it.
async fn list_audit(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    if p.apps.is_some() {
        return Err(ApiError::Forbidden("the audit needs role admin without an app scope".into()));
    }
    let limit = paging::limit(q.limit)?;
    let before: Option<i64> = paging::decode_cursor(q.cursor.as_deref())?;
    let rows = hub.audit.page(before, limit + 1).await?;
    paging::page(rows, limit, |(seq, _)| *seq, |(_, entry)| entry, "/api/audit?")
}

/// Prometheus text format: every process the token may see with its latest sample.
async fn prometheus(State(hub): State<Arc<Hub>>, Extension(p): Extension<Principal>) -> Result<Response, ApiError> {
    let out = hub.metrics.prometheus_text(|proc| p.sees_app(&proc.app)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, seconds: Option<u32>) -> CommandRequest {
        CommandRequest {
            kind: kind.into(),
            seconds,
            interval_us: None,
            frequency: None,
            interval_bytes: None,
            force: false,
            snapshots: None,
            interval_secs: None,
        }
    }

    #[tokio::test]
    async fn internal_errors_are_logged_not_sent() {
        let resp = ApiError::from(std::io::Error::other("open /srv/secret/hub.db failed")).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret") && text.contains("internal error"), "{text}");
        let resp = not_found("no such process").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn command_validation() {
        assert_eq!(command_kind(&req("heap_snapshot", None)), Ok(CommandKind::HeapSnapshot));
        assert!(matches!(command_kind(&req("cpu_profile", Some(3))), Ok(CommandKind::CpuProfile { seconds: 3, .. })));
        assert!(command_kind(&req("cpu_profile", Some(0))).is_err());
        assert!(command_kind(&req("perf_flamegraph", Some(601))).unwrap_err().contains("between 1 and 600"));
        assert!(command_kind(&req("rm -rf", None)).unwrap_err().contains("unknown command kind"));
    }

    #[test]
    fn sampling_parameters_are_bounded() {
        let with = |kind: &str, f: &dyn Fn(&mut CommandRequest)| {
            let mut r = req(kind, Some(1));
            f(&mut r);
            command_kind(&r)
        };
        assert!(with("heap_sampling", &|r| r.interval_bytes = Some(1)).unwrap_err().contains("interval_bytes"));
        assert!(with("heap_sampling", &|r| r.interval_bytes = Some(32768)).is_ok());
        assert!(with("cpu_profile", &|r| r.interval_us = Some(0)).unwrap_err().contains("interval_us"));
        assert!(with("cpu_profile", &|r| r.interval_us = Some(1_000_001)).is_err());
        assert!(with("cpu_profile", &|r| r.interval_us = Some(100)).is_ok());
        assert!(with("perf_flamegraph", &|r| r.frequency = Some(0)).unwrap_err().contains("frequency"));
        assert!(with("perf_flamegraph", &|r| r.frequency = Some(99)).is_ok());
    }
}
