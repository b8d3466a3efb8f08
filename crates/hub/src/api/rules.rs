//! The autopilot's routes (operator): `POST/GET /api/rules`, `DELETE /api/rules/{name}` — the
//! capture rules ([`crate::rules`]) — and the leak hunt's: `{"kind": "leak_hunt"}` on
//! `POST /api/processes/{id}/commands` (dispatched here from the command route) and
//! `POST /api/artifacts/{id}/cancel` for a hunt's report ([`crate::leak_hunt`]).
//!
//! App scope: a token limited to some apps sees and deletes only rules limited to those apps
//! (a rule for every app, or naming another app, doesn't exist for it); a rule it creates
//! without `apps` is limited to its apps, one naming another app is refused (`403`). Every
//! change is on the audit trail with the token's name, refused attempts too.

use super::{bad_request, not_found, ApiError};
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::rules::{Rule, RuleError, RuleSource, RuleSpec, RuleView};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/rules", get(list_rules).post(create_rule))
        .route("/api/rules/{name}", delete(delete_rule))
        .route("/api/artifacts/{id}/cancel", post(cancel_hunt))
        .route_layer(middleware::from_fn_with_state(Role::Operator, super::auth::require_role))
}

/// A scoped token sees a rule only if every app it applies to is one of the token's.
fn sees(p: &Principal, r: &Rule) -> bool {
    p.apps.is_none() || (!r.apps.is_empty() && r.apps.iter().all(|a| p.sees_app(a)))
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Invalid(m) => ApiError::BadRequest(m),
            RuleError::Exists(_) | RuleError::FromConfig(_) => ApiError::Conflict(e.to_string()),
            RuleError::TooMany(_) => ApiError::Unprocessable(e.to_string()),
            RuleError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RuleError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Each rule with `last_fired` (its last capture, `null` if none since the rule was made).
async fn list_rules(State(hub): State<Arc<Hub>>, Extension(p): Extension<Principal>) -> Json<Vec<RuleView>> {
    Json(hub.rules.views().into_iter().filter(|v| sees(&p, &v.rule)).collect())
}

async fn create_rule(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    body: Result<Json<RuleSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = p.actor(remote.ip());
    let result = make_rule(&hub, &p, body).await;
    let (target, detail, outcome) = match &result {
        Ok(r) => (r.name.clone(), serde_json::to_value(r).unwrap_or_default(), "created".to_string()),
        Err(e) => (String::new(), json!({}), format!("rejected: {e}")),
    };
    hub.audit.record(&actor, "rule.create", &target, detail, &outcome).await;
    let rule = result?;
    crate::rules::fire::push_to_agents(&hub).await;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

async fn make_rule(
    hub: &Hub,
    p: &Principal,
    body: Result<Json<RuleSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<Rule, ApiError> {
    let Json(mut spec) = body.map_err(|e| bad_request(e.body_text()))?;
    if let Some(scope) = &p.apps {
        match &spec.apps {
            Some(apps) if !apps.is_empty() => {
                if let Some(other) = apps.iter().find(|a| !scope.contains(*a)) {
                    return Err(ApiError::Forbidden(format!("this token may not make rules for app '{other}'")));
                }
            }
            // A scoped token's rule applies to its own apps, never to every app.
            _ => spec.apps = Some(scope.iter().cloned().collect()),
        }
    }
    let rule =
        spec.validate(hub.config.autopilot_default_cooldown_secs, &p.name, RuleSource::Api).map_err(bad_request)?;
    Ok(hub.rules.add(rule).await?)
}

async fn delete_rule(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::rules::spec::valid_name(&name).map_err(bad_request)?;
    let actor = p.actor(remote.ip());
    let visible = hub.rules.all().iter().any(|r| r.name == name && sees(&p, r));
    let result = match visible {
        true => hub.rules.remove(&name).await.map_err(ApiError::from),
        false => Err(not_found(format!("no such rule '{name}'"))),
    };
    let outcome = match &result {
        Ok(_) => "deleted".to_string(),
        Err(e) => format!("rejected: {e}"),
    };
    hub.audit.record(&actor, "rule.delete", &name, json!({}), &outcome).await;
    let rule = result?;
    crate::rules::fire::push_to_agents(&hub).await;
    Ok(Json(json!({ "deleted": rule })))
}

/// `{"kind": "leak_hunt", "snapshots": N, "interval_secs": S}`: answers `202 {"artifact": report}`.
pub(super) async fn leak_hunt(
    hub: &Arc<Hub>,
    id: &str,
    req: &super::CommandRequest,
    actor: &str,
) -> Result<Response, ApiError> {
    let others = [req.seconds, req.interval_us, req.frequency, req.interval_bytes];
    let params = match (
        others.iter().any(Option::is_some) || req.force,
        crate::leak_hunt::validate(req.snapshots, req.interval_secs),
    ) {
        (true, _) => Err("a leak hunt takes only snapshots and interval_secs".to_string()),
        (false, v) => v,
    };
    let (n, s) = match params {
        Ok(v) => v,
        Err(msg) => {
            hub.audit
                .record(actor, "command.request", id, json!({"kind": "leak_hunt"}), &format!("rejected: {msg}"))
                .await;
            return Err(bad_request(msg));
        }
    };
    let report = hub.start_leak_hunt(id, n, s, actor).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "artifact": report }))).into_response())
}

/// Cancels a running leak hunt: its report ends `failed` ("cancelled"), the snapshots taken stay.
async fn cancel_hunt(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let a = super::visible_artifact(&hub, &p, &id).await?;
    if a.kind != "leak_report" {
        return Err(bad_request(format!("artifact {id} is a {}, not a leak hunt's report", a.kind)));
    }
    if a.status != crate::store::ArtifactStatus::Running {
        return Err(ApiError::Conflict(format!("the hunt is {} already", a.status.as_str())));
    }
    let actor = p.actor(remote.ip());
    hub.artifacts.fail(&id, &format!("cancelled by {}", p.name)).await;
    hub.audit.record(&actor, "leak_hunt.cancel", &id, json!({}), "cancelled").await;
    let a = super::visible_artifact(&hub, &p, &id).await?;
    Ok(Json(json!({ "artifact": a })))
}
