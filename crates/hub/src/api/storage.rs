//! Artifact bytes through the API: downloads (streamed from the artifact's store, with `Range`
//! so a browser or curl can resume), pins and deletes.
//!
//! - `GET /api/artifacts/{id}/download` (operator; a raw heap snapshot: admin) → `200` the
//!   whole artifact or `206` one byte range (`Content-Range`), `416` for a range outside it;
//!   every download is audited.
//! - `POST`/`DELETE /api/artifacts/{id}/pin` (operator): retention keeps a pinned artifact.
//! - `DELETE /api/artifacts/{id}[?reason=…]` (admin): the bytes go, the record stays as
//!   `deleted` with `deleted_by` and `deleted_reason`.
//!
//! Each answers the artifact's record; `409` when its state doesn't allow it. All audited.

use super::{auth, conflict, gone, visible_artifact, ApiError};
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::store::ArtifactStatus;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// The storage routes, each behind the role it needs (merged into [`super::router`] before
/// authentication).
pub fn router() -> Router<Arc<Hub>> {
    let operator = Router::new()
        .route("/api/artifacts/{id}/download", get(download_artifact))
        .route("/api/artifacts/{id}/pin", delete(unpin).post(pin))
        .route_layer(middleware::from_fn_with_state(Role::Operator, auth::require_role));
    let admin = Router::new()
        .route("/api/artifacts/{id}", delete(delete_artifact))
        .route_layer(middleware::from_fn_with_state(Role::Admin, auth::require_role));
    operator.merge(admin)
}

impl From<crate::artifacts::TransitionError> for ApiError {
    fn from(e: crate::artifacts::TransitionError) -> Self {
        use crate::artifacts::TransitionError as E;
        match e {
            E::NotFound | E::WrongProcess => ApiError::NotFound(e.to_string()),
            E::NotAllowed { .. } => ApiError::Conflict(e.to_string()),
            E::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

async fn pin(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_pin(&hub, &p, remote, &id, true).await
}

async fn unpin(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_pin(&hub, &p, remote, &id, false).await
}

async fn set_pin(
    hub: &Hub,
    p: &Principal,
    remote: SocketAddr,
    id: &str,
    pinned: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible_artifact(hub, p, id).await?;
    let action = if pinned { "artifact.pin" } else { "artifact.unpin" };
    let result = hub.artifacts.transition(id, None, crate::artifacts::Transition::Pin { pinned }).await;
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    hub.audit.record(&p.actor(remote.ip()), action, id, json!({}), outcome).await;
    Ok(Json(serde_json::to_value(result?)?))
}

#[derive(serde::Deserialize)]
struct DeleteQuery {
    reason: Option<String>,
}

/// Longest reason kept with a deleted artifact.
const MAX_REASON_LEN: usize = 500;

async fn delete_artifact(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    visible_artifact(&hub, &p, &id).await?;
    let reason: String =
        q.reason.unwrap_or_else(|| "deleted by an admin".into()).chars().take(MAX_REASON_LEN).collect();
    let result = hub.artifacts.delete(&id, &p.name, &reason).await;
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    hub.audit.record(&p.actor(remote.ip()), "artifact.delete", &id, json!({"reason": reason}), outcome).await;
    Ok(Json(serde_json::to_value(result?)?))
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

async fn download_artifact(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = visible_artifact(&hub, &p, &id).await?;
    // Heap snapshots hold the app's secrets (passwords, keys): admins only.
    if a.kind == "heap_snapshot" {
        if let Err(e) = auth::require(&p, Role::Admin, "downloading a raw heap snapshot") {
            let detail = json!({"kind": a.kind});
            hub.audit.record(&p.actor(remote.ip()), "artifact.download", &id, detail, "forbidden").await;
            return Err(e);
        }
    }
    if a.status != ArtifactStatus::Ready {
        return Err(conflict(format!("artifact is {}, not ready", a.status.as_str())));
    }
    let storage = hub.artifacts.storage();
    let size = match a.size {
        Some(s) => s,
        None => storage.size(&a.file_name).await.map_err(|e| gone(format!("artifact data missing: {e}")))?,
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Ok(range) = crate::storage::parse_range(range, size) else {
        let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Ok(resp);
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    let body = storage.read(&a.file_name, start, len).await.map_err(|e| gone(format!("artifact data missing: {e}")))?;
    // Heap snapshots can hold secrets: every download is on the audit trail.
    let detail = json!({"kind": a.kind, "size": a.size, "range": range.map(|(s, e)| format!("{s}-{e}"))});
    hub.audit.record(&p.actor(remote.ip()), "artifact.download", &id, detail, "ok").await;
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    let disposition = format!(
        "attachment; filename=\"{}-{}\"",
        a.app.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        a.file_name
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
