//! `POST/GET /api/rules`, `DELETE /api/rules/{name}` (operator): the autopilot's capture rules
//! ([`crate::rules`]).
//!
//! App scope: a token limited to some apps sees and deletes only rules limited to those apps
//! (a rule for every app, or naming another app, doesn't exist for it); a rule it creates
//! without `apps` is limited to its apps, one naming another app is refused (`403`). Every
//! change is on the audit trail with the token's name, refused attempts too.

use super::{bad_request, not_found, ApiError};
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::rules::{Rule, RuleError, RuleSource, RuleSpec};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/rules", get(list_rules).post(create_rule))
        .route("/api/rules/{name}", delete(delete_rule))
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

async fn list_rules(State(hub): State<Arc<Hub>>, Extension(p): Extension<Principal>) -> Json<Vec<Rule>> {
    Json(hub.rules.all().iter().filter(|r| sees(&p, r)).cloned().collect())
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
