//! A rule that fired becomes a capture: on the hub's side (from a metrics sample) it is sent as
//! a command like an operator's, as actor `rule:NAME`; on the agent's side (its stall watcher
//! started the capture itself) the hub records the artifact the agent announces.

use super::{Decision, Firing, RuleSource, Trigger};
use crate::commands::{new_artifact, Requester};
use crate::hub::Hub;
use crate::store::{ArtifactStatus, ArtifactTrigger, ProcessRecord};
use perf_protocol::{AutoCapture, Message, MetricsSample};
use std::sync::Arc;

fn requester(f: &Firing) -> Requester {
    let mut detail = serde_json::json!({"rule": f.rule.name, "reason": f.reason, "figures": f.figures});
    if f.rule.source == RuleSource::Config {
        detail["source"] = serde_json::json!("config");
    }
    Requester {
        actor: format!("rule:{}", f.rule.name),
        action: "rule.capture",
        trigger: Some(ArtifactTrigger { rule: f.rule.name.clone(), reason: f.reason.clone() }),
        detail,
    }
}

/// Evaluates a sample of `process` against the rules and starts what fired, off the caller's
/// task: the capture waits for the agent's ack, which arrives on the very link whose read loop
/// calls this.
pub fn on_sample(hub: &Arc<Hub>, process: &ProcessRecord, sample: &MetricsSample) {
    let agent_fires = process.capabilities.iter().any(|c| c == perf_protocol::RULES_CAPABILITY);
    let decisions = hub.rules.evaluate(&process.id, &process.app, &process.labels, sample, agent_fires);
    for decision in decisions {
        let (hub, process_id) = (hub.clone(), process.id.clone());
        tokio::spawn(async move {
            match decision {
                Decision::Capture(f) => capture(&hub, &process_id, f).await,
                Decision::Held(f, why) => {
                    let who = requester(&f);
                    hub.audit.record(&who.actor, who.action, &process_id, who.detail, &why).await;
                }
            }
        });
    }
}

async fn capture(hub: &Hub, process_id: &str, f: Firing) {
    let who = requester(&f);
    // One heavy command per process: a rule never queues behind a capture in flight.
    if let Some(busy) = capturing(hub, process_id).await {
        let why = format!("skipped: {} {} is still capturing on this process", busy.kind, busy.id);
        hub.audit.record(&who.actor, who.action, process_id, who.detail, &why).await;
        return;
    }
    let kind = f.rule.capture.clone();
    match hub.request_command_as(process_id, kind, false, who).await {
        Ok((a, refusal)) => {
            hub.rules.record_firing(&f.rule.name, &a);
            tracing::info!(rule = %f.rule.name, process = %process_id, artifact = %a.id, reason = %f.reason, refused = ?refusal, "rule fired")
        }
        Err(e) => {
            tracing::warn!(rule = %f.rule.name, process = %process_id, error = %e, "rule fired but no capture was sent")
        }
    }
}

/// A capture of the process still in its capture phase (uploads may overlap a new one).
async fn capturing(hub: &Hub, process_id: &str) -> Option<crate::store::ArtifactRecord> {
    let open = hub.artifacts.list(Some(process_id), true, 100).await.ok()?;
    // A leak hunt's report is `running` for the whole hunt; only its snapshots hold the slot.
    open.into_iter()
        .find(|a| matches!(a.status, ArtifactStatus::Pending | ArtifactStatus::Running) && a.kind != "leak_report")
}

/// Why the hub did not take an agent-initiated capture (sent back as a `cancel`).
pub async fn on_agent_capture(hub: &Hub, process: &ProcessRecord, a: AutoCapture) -> Result<(), String> {
    let rule = hub.rules.all().iter().find(|r| r.name == a.rule).cloned().ok_or("no such rule (deleted?)")?;
    if !rule.matches(&process.app, &process.labels) || !matches!(rule.trigger(), Trigger::BlockedMs(_)) {
        return Err("the rule does not apply to this process".into());
    }
    if !perf_protocol::is_valid_id(&a.command_id) || a.upload_token.len() < 32 || a.upload_token.len() > 128 {
        return Err("malformed command id or upload token".into());
    }
    if a.kind != rule.capture {
        return Err("the capture differs from the rule's".into());
    }
    let reason: String = a.reason.chars().take(512).collect();
    let firing = Firing { rule: rule.clone(), reason, figures: serde_json::json!({"blocked_ms": a.blocked_ms}) };
    let mut who = requester(&firing);
    who.detail["agent_initiated"] = serde_json::json!(true);
    who.detail["artifact"] = serde_json::json!(a.command_id);
    who.detail["kind"] = serde_json::json!(a.kind.name());
    if let Err(why) = hub.rules.admit_agent_firing(&rule, &process.id) {
        hub.audit.record(&who.actor, who.action, &process.id, who.detail, &why).await;
        return Err(why);
    }
    if hub.artifacts.get(&a.command_id).await.map_err(|e| e.to_string())?.is_some() {
        return Err("command id in use".into());
    }
    let artifact = new_artifact(&a.command_id, process, &a.kind, false, &who, &a.upload_token);
    hub.artifacts.create(artifact.clone()).await.map_err(|e| e.to_string())?;
    hub.rules.record_firing(&rule.name, &artifact);
    hub.audit.record(&who.actor, who.action, &process.id, who.detail, "started by the agent").await;
    Ok(())
}

/// The hub refused an agent-initiated capture: the agent drops it.
pub fn cancel(command_id: &str, reason: String) -> Message {
    Message::Cancel { command_id: command_id.to_string(), reason }
}

/// The `rules` message for a process's agent, if it understands one.
pub fn rules_message(hub: &Hub, process: &ProcessRecord) -> Option<Message> {
    if !process.capabilities.iter().any(|c| c == perf_protocol::RULES_CAPABILITY) {
        return None;
    }
    let mut rules = hub.rules.for_agent(&process.app, &process.labels);
    rules.truncate(perf_protocol::MAX_AGENT_RULES);
    Some(Message::Rules { rules })
}

/// After a change of rules: every connected agent that runs rules gets its new list.
pub async fn push_to_agents(hub: &Hub) {
    let Ok(all) = hub.processes.list().await else { return };
    for p in all.iter().filter(|p| p.connected) {
        if let Some(msg) = rules_message(hub, p) {
            if let Err(e) = hub.processes.send(&p.id, msg) {
                tracing::debug!(process = %p.id, error = %e, "rules not pushed");
            }
        }
    }
}
