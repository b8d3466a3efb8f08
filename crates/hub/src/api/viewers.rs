//! Interactive profile viewers: the bundled speedscope (served from this hub, so its
//! `#profileURL=` can point at a profile route the console's session cookie unlocks — no token in
//! a URL), the raw profile it loads, and comparing two profiles of the same app (a differential
//! flame graph and the functions that got hotter, hottest first).
//!
//! - `GET /speedscope/{file}` (no auth: static files, no data);
//! - `GET /api/artifacts/{id}/profile/{file_name}` (viewer): a profile artifact's bytes, for
//!   speedscope. Only profile kinds (the same data a viewer sees as a flame graph); never a heap
//!   snapshot. The file name in the path is the artifact's own: speedscope picks the format
//!   by its extension;
//! - `GET /api/artifacts/{a}/diff-flamegraph/{b}.svg` and `GET /api/artifacts/{a}/diff-functions/{b}`
//!   (viewer): `a` is the before, `b` the after profile.

use super::{unprocessable, visible_artifact, ApiError};
use crate::hub::Hub;
use crate::operators::Principal;
use crate::store::{ArtifactRecord, ArtifactStatus};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use perf_flamegraph::FoldOutput;
use std::sync::Arc;

/// Routes that need no token (static files).
pub fn public_routes() -> Router<Arc<Hub>> {
    Router::new().route("/speedscope/{file}", get(speedscope_asset))
}

/// Routes for any signed-in role (viewer and up).
pub fn viewer_routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/artifacts/{id}/profile/{file}", get(profile))
        .route("/api/artifacts/{a}/diff-flamegraph/{b}", get(diff_flamegraph))
        .route("/api/artifacts/{a}/diff-functions/{b}", get(diff_functions))
}

/// speedscope's policy: its own script; its styles are injected at run time (so inline styles);
/// it fetches the profile from this hub only. Framing only by this hub.
const SPEEDSCOPE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     font-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'self'";

macro_rules! vendored {
    ($($name:literal => $ty:literal),* $(,)?) => {
        fn speedscope_file(name: &str) -> Option<(&'static [u8], &'static str)> {
            match name {
                $($name => Some((include_bytes!(concat!("../../../../console/vendor/speedscope/", $name)), $ty)),)*
                _ => None,
            }
        }
    };
}

// speedscope 1.25.0's `dist/release` (MIT, console/vendor/speedscope/LICENSE), less its
// example profile and the JFR importer's wasm.
vendored! {
    "index.html" => "text/html; charset=utf-8",
    "speedscope-Y2522XSH.js" => "text/javascript",
    "speedscope-GHPHNKXC.css" => "text/css",
    "SourceCodePro-Regular.ttf-ILST5JV6.woff2" => "font/woff2",
    "favicon-16x16-VSI62OPJ.png" => "image/png",
    "favicon-32x32-3EB2YCUY.png" => "image/png",
    "favicon-FOKUP5Y5.ico" => "image/x-icon",
    "LICENSE" => "text/plain; charset=utf-8",
    "source-code-pro.LICENSE.md" => "text/plain; charset=utf-8",
    "release.txt" => "text/plain; charset=utf-8",
}

async fn speedscope_asset(Path(file): Path<String>) -> Response {
    let Some((body, ty)) = speedscope_file(&file) else {
        return super::not_found("no such file").into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, ty),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, SPEEDSCOPE_CSP),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
    ];
    (headers, body).into_response()
}

/// A ready artifact of a kind that has a flame graph (a profile), visible to `p`.
async fn profile_artifact(hub: &Hub, p: &Principal, id: &str) -> Result<ArtifactRecord, ApiError> {
    let a = visible_artifact(hub, p, id).await?;
    if !perf_protocol::capture_kind(&a.kind).is_some_and(|k| k.flamegraph) {
        return Err(unprocessable(format!("a {} is not a profile", a.kind)));
    }
    if a.status != ArtifactStatus::Ready {
        return Err(super::conflict(format!("artifact is {}, not ready", a.status.as_str())));
    }
    Ok(a)
}

/// A file with a stored artifact's bytes, for the folders that read files (the stored file on
/// local disk, a private temporary copy from S3, removed on drop).
async fn artifact_file(hub: &Hub, a: &ArtifactRecord) -> Result<crate::storage::LocalFile, ApiError> {
    hub.artifacts.storage().local_file(&a.file_name).await.map_err(|e| super::gone(e.reason()))
}

async fn profile(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let a = profile_artifact(&hub, &p, &id).await?;
    if file != a.file_name {
        return Err(super::not_found(format!("artifact {id} has no file {file}")));
    }
    let size = a.size.unwrap_or(0);
    let stream = hub.artifacts.storage().read(&a.file_name, 0, size).await.map_err(|e| super::gone(e.reason()))?;
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Some(size) = a.size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok(resp)
}

/// Folding is CPU-heavy: one comparison at a time across the hub.
static FOLD_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Both profiles, folded (off the async threads). They must be of the same app and kind.
async fn fold_pair(
    hub: &Hub,
    p: &Principal,
    a: &str,
    b: &str,
) -> Result<(ArtifactRecord, FoldOutput, FoldOutput), ApiError> {
    let (a, b) = (profile_artifact(hub, p, a).await?, profile_artifact(hub, p, b).await?);
    if a.app != b.app || a.kind != b.kind {
        return Err(unprocessable(format!(
            "compare two profiles of one kind of the same app (got a {} of {} and a {} of {})",
            a.kind, a.app, b.kind, b.app
        )));
    }
    let _slot = FOLD_SLOTS.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let (fa, fb) = (artifact_file(hub, &a).await?, artifact_file(hub, &b).await?);
    let folded = tokio::task::spawn_blocking(move || {
        let (pa, pb) = (fa.path(), fb.path());
        Ok::<_, perf_flamegraph::FlameError>((perf_flamegraph::fold_file(pa)?, perf_flamegraph::fold_file(pb)?))
    })
    .await?;
    let (before, after) = folded.map_err(|e| unprocessable(e.to_string()))?;
    Ok((b, before, after))
}

async fn diff_flamegraph(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let b = b.strip_suffix(".svg").unwrap_or(&b);
    let (after_rec, before, after) = fold_pair(&hub, &p, &a, b).await?;
    let title = format!("{} of {}: {} → {}", after_rec.kind.replace('_', " "), after_rec.app, a, after_rec.id);
    let svg = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        perf_flamegraph::render_differential_svg(&before, &after, &title, &mut out).map(|_| out)
    })
    .await?
    .map_err(|e| unprocessable(e.to_string()))?;
    let headers = [
        (header::CONTENT_TYPE, "image/svg+xml"),
        (header::CONTENT_SECURITY_POLICY, super::FLAMEGRAPH_CSP),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
    ];
    Ok((headers, svg).into_response())
}

/// How many functions the comparison lists.
const MAX_FUNCTIONS: usize = 200;

async fn diff_functions(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Json<Vec<perf_flamegraph::FunctionDelta>>, ApiError> {
    let (_, before, after) = fold_pair(&hub, &p, &a, &b).await?;
    Ok(Json(perf_flamegraph::hotter_functions(&before, &after, MAX_FUNCTIONS)))
}
