//! Operator tokens from the console (admin, without an app scope: a token can grant any app):
//! `GET /api/tokens` (never a token or its hash), `POST /api/tokens` `{"name", "role", "apps"?,
//! "expires_days"?}` → `201 {"token", …}` (the only time the token is shown), and
//! `DELETE /api/tokens/{name}` (revoke; it takes effect at once). The same as `perf-hub token …`,
//! on the audit trail with the acting token's name.

use super::{auth, ApiError};
use crate::hub::Hub;
use crate::operators::{expiry_in_days, NewToken, OperatorError, Principal, Role};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{middleware, Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn admin_routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/tokens", get(list).post(create))
        .route("/api/tokens/{name}", delete(revoke))
        .route_layer(middleware::from_fn_with_state(Role::Admin, auth::require_role))
}

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            OperatorError::Exists(_) => ApiError::Conflict(e.to_string()),
            OperatorError::NoSuchToken(_) => ApiError::NotFound(e.to_string()),
            OperatorError::Rng(_) | OperatorError::Store(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Tokens grant apps: an app-scoped admin could otherwise mint a token for any app.
fn unscoped(p: &Principal) -> Result<(), ApiError> {
    match p.apps {
        None => Ok(()),
        Some(_) => Err(ApiError::Forbidden("managing tokens needs role admin without an app scope".into())),
    }
}

async fn list(Extension(p): Extension<Principal>, State(hub): State<Arc<Hub>>) -> Result<Response, ApiError> {
    unscoped(&p)?;
    Ok(Json(hub.operators.list_tokens().await?).into_response())
}

/// Body of `POST /api/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub apps: Vec<String>,
    pub expires_days: Option<u64>,
}

async fn create(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    unscoped(&p)?;
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::BadRequest(format!("role '{}' must be viewer, operator or admin", req.role)))?;
    if req.apps.len() > 100 {
        return Err(ApiError::BadRequest("at most 100 apps per token".into()));
    }
    let expires_at = req.expires_days.map(expiry_in_days).transpose()?;
    let new = NewToken { name: req.name.clone(), role, apps: req.apps.clone(), expires_at };
    let actor = p.actor(remote.ip());
    let detail = json!({"role": role, "apps": req.apps, "expires_days": req.expires_days});
    match hub.operators.create_token(new).await {
        Ok(token) => {
            hub.audit.record(&actor, "token.create", &req.name, detail, "ok").await;
            let body = json!({"name": req.name, "role": role, "apps": req.apps, "token": token});
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(e) => {
            hub.audit.record(&actor, "token.create", &req.name, detail, &format!("rejected: {e}")).await;
            Err(e.into())
        }
    }
}

async fn revoke(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    unscoped(&p)?;
    let result = hub.operators.revoke_token(&name).await;
    let outcome = match &result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("rejected: {e}"),
    };
    hub.audit.record(&p.actor(remote.ip()), "token.revoke", &name, json!({}), &outcome).await;
    result?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
