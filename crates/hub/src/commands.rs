//! An operator's capture command, from the API request to the agent's ack: checks the process
//! can run it, creates the artifact, sends the command on the process's link and waits (bounded)
//! for the ack; every request is on the audit trail.

use crate::hub::Hub;
use crate::ids;
use crate::processes::SendError;
use crate::store::{ArtifactRecord, ArtifactTrigger, ProcessRecord};
use perf_protocol::{Command, CommandKind, Message};
use std::time::Duration;

/// Why a command could not be sent to a process.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no such process")]
    NoSuchProcess,
    #[error("{0}")]
    Unsupported(String),
    #[error("process is not connected")]
    NotConnected,
    #[error("process link is congested or closing")]
    LinkClosed,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Who asks for a capture: an operator's token, or an autopilot rule (see [`crate::rules`]).
pub struct Requester {
    /// The audit actor and the artifact's `requested_by`: `token:NAME@IP` or `rule:NAME`.
    pub actor: String,
    /// The audit action: `command.request` or `rule.capture`.
    pub action: &'static str,
    /// Set for a rule's capture: shown on the artifact.
    pub trigger: Option<ArtifactTrigger>,
    /// More audit detail (a rule's figures).
    pub detail: serde_json::Value,
}

impl Requester {
    pub fn operator(actor: &str) -> Self {
        Self { actor: actor.to_string(), action: "command.request", trigger: None, detail: serde_json::json!({}) }
    }
}

impl Hub {
    /// Creates the artifact, sends the command and waits (bounded) for the agent's ack.
    /// Returns the artifact as it stands and, if the agent refused, why.
    pub async fn request_command(
        &self,
        process_id: &str,
        kind: CommandKind,
        force: bool,
        actor: &str,
    ) -> Result<(ArtifactRecord, Option<String>), CommandError> {
        self.request_command_as(process_id, kind, force, Requester::operator(actor)).await
    }

    /// [`Hub::request_command`] for any requester.
    pub async fn request_command_as(
        &self,
        process_id: &str,
        kind: CommandKind,
        force: bool,
        who: Requester,
    ) -> Result<(ArtifactRecord, Option<String>), CommandError> {
        let internal = |e: &dyn std::fmt::Display| CommandError::Internal(e.to_string());
        let process =
            self.processes.get(process_id).await.map_err(|e| internal(&e))?.ok_or(CommandError::NoSuchProcess)?;
        let mut detail = who.detail.clone();
        detail["kind"] = serde_json::json!(kind.name());
        detail["force"] = serde_json::json!(force);
        let (actor, action) = (who.actor.as_str(), who.action);
        if !process.capabilities.iter().any(|c| c == kind.name()) {
            self.audit.record(actor, action, process_id, detail, "unsupported").await;
            return Err(CommandError::Unsupported(format!(
                "process does not support {} (capabilities: {})",
                kind.name(),
                process.capabilities.join(", ")
            )));
        }
        // The token goes to the agent only; the record keeps its hash.
        let upload_token = ids::new_secret().map_err(|e| internal(&e))?;
        let id = ids::new_id().map_err(|e| internal(&e))?;
        let artifact = new_artifact(&id, &process, &kind, force, &who, &upload_token);
        self.artifacts.create(artifact.clone()).await.map_err(|e| internal(&e))?;
        detail["artifact"] = serde_json::json!(artifact.id);
        // Storage (issue 12): a capture the store can't take is refused before it starts.
        if let Some(why) = self.capacity_refusal(None).await {
            self.audit.record(actor, action, process_id, detail, &why).await;
            return Ok(self.refuse_for_capacity(artifact, why).await);
        }
        let command = Command { id: artifact.id.clone(), kind, upload_token, force };
        let ack = self.processes.await_ack(&artifact.id);
        if let Err(e) = self.processes.send(process_id, Message::Command(command)) {
            self.processes.forget_ack(&artifact.id);
            self.artifacts.fail(&artifact.id, &e.to_string()).await;
            self.audit.record(actor, action, process_id, detail, &e.to_string()).await;
            return Err(match e {
                SendError::NotConnected => CommandError::NotConnected,
                SendError::LinkClosed => CommandError::LinkClosed,
            });
        }
        let outcome = tokio::time::timeout(Duration::from_millis(self.config.ack_timeout_ms), ack).await;
        self.processes.forget_ack(&artifact.id);
        // An accepted heap snapshot's estimate says how big its file will be: one the store
        // can't take is refused now rather than failing halfway through its upload.
        let mut too_big = None;
        let (refusal, result) = match outcome {
            Ok(Ok(a)) if !a.accepted => {
                let why = a.error.unwrap_or_else(|| "refused by the agent".into());
                (Some(why.clone()), why)
            }
            Ok(Ok(a)) => {
                too_big = self.capacity_refusal(a.estimate.as_ref().map(|e| e.file_bytes)).await;
                (too_big.clone(), too_big.clone().unwrap_or_else(|| "accepted".to_string()))
            }
            _ => (None, "sent (no ack yet)".to_string()),
        };
        self.audit.record(actor, action, process_id, detail, &result).await;
        if let Some(why) = too_big {
            self.cancel_on_agent(&process, &artifact.id, &why);
            return Ok(self.refuse_for_capacity(artifact, why).await);
        }
        let current = self.artifacts.get(&artifact.id).await.ok().flatten().unwrap_or(artifact);
        Ok((current, refusal))
    }

    /// Why the store can't take a capture of about `bytes` now (see
    /// [`crate::artifacts::Artifacts::capacity_refusal`]).
    async fn capacity_refusal(&self, bytes: Option<u64>) -> Option<String> {
        let c = &self.config;
        self.artifacts.capacity_refusal(bytes, c.min_free_bytes, c.retain_max_bytes).await
    }

    /// Tells the agent to drop a capture it accepted (its spool and upload), if it understands
    /// `cancel`: an older agent would take the unknown message as a protocol error.
    fn cancel_on_agent(&self, process: &ProcessRecord, command_id: &str, why: &str) {
        if process.capabilities.iter().any(|c| c == perf_protocol::RULES_CAPABILITY) {
            let _ = self.processes.send(&process.id, crate::rules::fire::cancel(command_id, why.to_string()));
        }
    }

    /// Fails `artifact` with `why` (its upload, if the agent still sends one, is refused).
    async fn refuse_for_capacity(&self, artifact: ArtifactRecord, why: String) -> (ArtifactRecord, Option<String>) {
        self.artifacts.fail(&artifact.id, &why).await;
        let current = self.artifacts.get(&artifact.id).await.ok().flatten().unwrap_or(artifact);
        (current, Some(why))
    }
}

/// The record of a capture about to be sent (or, for an agent-initiated one, just started).
pub(crate) fn new_artifact(
    id: &str,
    process: &ProcessRecord,
    kind: &CommandKind,
    force: bool,
    who: &Requester,
    upload_token: &str,
) -> ArtifactRecord {
    let mut a = ArtifactRecord::pending(
        id,
        (&process.id, &process.app),
        kind.name(),
        kind.file_extension(),
        &who.actor,
        crate::artifacts::hash_upload_token(upload_token),
    );
    a.params = serde_json::to_value(kind).unwrap_or_default();
    a.params["force"] = serde_json::json!(force);
    a.trigger = who.trigger.clone();
    a
}
