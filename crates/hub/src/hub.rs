//! The hub's shared state: metadata store, artifact files, live agent links, waiting acks and
//! the audit trail. The gateway (agents) and the API (operators) both work through it.

use crate::artifacts::{self, Transition};
use crate::blobs::BlobStore;
use crate::config::HubConfig;
use crate::ids;
use crate::store::{now_rfc3339, ArtifactRecord, ArtifactStatus, AuditRecord, ProcessRecord, Store};
use perf_protocol::{Ack, Command, CommandKind, Message};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// An agent's live control link: a queue into its writer task.
struct LiveLink {
    generation: u64,
    tx: mpsc::Sender<Message>,
}

pub struct Hub {
    pub config: HubConfig,
    pub store: Store,
    pub blobs: BlobStore,
    links: Mutex<HashMap<String, LiveLink>>,
    ack_waiters: Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    generation: AtomicU64,
    audit_log: Mutex<Option<std::fs::File>>,
    /// Serializes flame graph renders (CPU-heavy, cached on disk).
    pub render_lock: tokio::sync::Mutex<()>,
    /// Prometheus counters accumulated from per-interval samples.
    pub counters: crate::prometheus::Counters,
    /// Heap analysis jobs in flight (results are cached on disk).
    pub analyses: crate::analysis::Analyses,
    /// Upload streams in progress, one per artifact.
    pub uploads: artifacts::UploadSlots,
}

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

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("process is not connected")]
    NotConnected,
    #[error("process link is congested or closing")]
    LinkClosed,
}

impl Hub {
    pub fn open(config: HubConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join("hub.db"))?;
        let blobs = BlobStore::open(&config.data_dir)?;
        let audit_log =
            std::fs::OpenOptions::new().create(true).append(true).open(config.data_dir.join("audit.log"))?;
        let hub = Self {
            config,
            store,
            blobs,
            links: Mutex::new(HashMap::new()),
            ack_waiters: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            audit_log: Mutex::new(Some(audit_log)),
            render_lock: tokio::sync::Mutex::new(()),
            counters: Default::default(),
            analyses: crate::analysis::Analyses::new(),
            uploads: Default::default(),
        };
        hub.mark_all_disconnected()?;
        Ok(hub)
    }

    /// After a restart no link is live: show every process as disconnected until it returns.
    fn mark_all_disconnected(&self) -> anyhow::Result<()> {
        for mut p in self.store.list_processes()? {
            if p.connected {
                p.connected = false;
                p.state = "disconnected".into();
                self.store.upsert_process(&p)?;
            }
        }
        Ok(())
    }

    /// Registers a freshly authenticated link; returns its generation (to unregister only itself).
    pub fn register_link(&self, process_id: &str, tx: mpsc::Sender<Message>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut links) = self.links.lock() {
            links.insert(process_id.to_string(), LiveLink { generation, tx });
        }
        generation
    }

    /// Removes a link if it is still the current one for the process. Returns whether it was.
    pub fn unregister_link(&self, process_id: &str, generation: u64) -> bool {
        let Ok(mut links) = self.links.lock() else { return false };
        match links.get(process_id) {
            Some(l) if l.generation == generation => {
                links.remove(process_id);
                true
            }
            _ => false,
        }
    }

    pub fn is_connected(&self, process_id: &str) -> bool {
        self.links.lock().map(|l| l.contains_key(process_id)).unwrap_or(false)
    }

    pub fn send_to(&self, process_id: &str, msg: Message) -> Result<(), SendError> {
        let tx = {
            let links = self.links.lock().map_err(|_| SendError::LinkClosed)?;
            links.get(process_id).map(|l| l.tx.clone()).ok_or(SendError::NotConnected)?
        };
        tx.try_send(msg).map_err(|_| SendError::LinkClosed)
    }

    pub fn wait_for_ack(&self, command_id: &str) -> oneshot::Receiver<Ack> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.ack_waiters.lock() {
            w.insert(command_id.to_string(), tx);
        }
        rx
    }

    pub fn forget_ack(&self, command_id: &str) {
        if let Ok(mut w) = self.ack_waiters.lock() {
            w.remove(command_id);
        }
    }

    pub fn deliver_ack(&self, ack: Ack) {
        let waiter = self.ack_waiters.lock().ok().and_then(|mut w| w.remove(&ack.command_id));
        if let Some(tx) = waiter {
            let _ = tx.send(ack);
        }
    }

    /// Records an action in the audit table and the append-only `audit.log` (JSON lines).
    pub fn audit(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value, result: &str) {
        let rec = AuditRecord {
            ts: now_rfc3339(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail,
            result: result.to_string(),
        };
        tracing::info!(actor, action, target, result, "audit");
        if let Err(e) = self.store.insert_audit(&rec) {
            tracing::error!(error = %e, "audit: store write failed");
        }
        if let (Ok(mut guard), Ok(line)) = (self.audit_log.lock(), serde_json::to_string(&rec)) {
            if let Some(f) = guard.as_mut() {
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::error!(error = %e, "audit: log write failed");
                }
            }
        }
    }

    /// Marks a process disconnected and fails what it was capturing: its link is gone.
    pub fn process_disconnected(&self, process_id: &str, reason: &str) {
        if let Ok(Some(mut p)) = self.store.get_process(process_id) {
            p.connected = false;
            p.state = "disconnected".into();
            p.blocked_ms = 0;
            p.last_seen = now_rfc3339();
            if let Err(e) = self.store.upsert_process(&p) {
                tracing::error!(error = %e, "store: process update failed");
            }
        }
        self.fail_unfinished(process_id, &format!("process disconnected during capture ({reason})"), |_| true);
    }

    /// Fails the unfinished artifacts of a process that `which` selects.
    pub fn fail_unfinished(&self, process_id: &str, error: &str, which: impl Fn(&ArtifactRecord) -> bool) {
        let Ok(open) = self.store.list_artifacts(Some(process_id), true, 1000) else { return };
        for a in open.iter().filter(|a| which(a)) {
            self.fail_artifact(&a.id, error);
        }
    }

    /// Fails one artifact with `error`, unless it has already ended.
    pub fn fail_artifact(&self, id: &str, error: &str) {
        let failed = Transition::Failed { error: error.to_string() };
        if artifacts::transition_or_log(&self.store, id, None, failed).is_some() {
            tracing::warn!(artifact = %id, error, "artifact failed");
        }
    }

    pub fn save_process(&self, p: &ProcessRecord) {
        if let Err(e) = self.store.upsert_process(p) {
            tracing::error!(error = %e, "store: process write failed");
        }
    }

    /// Creates the artifact, sends the command and waits (bounded) for the agent's ack.
    /// Returns the artifact as it stands and, if the agent refused, why.
    pub async fn request_command(
        &self,
        process_id: &str,
        kind: CommandKind,
        force: bool,
        actor: &str,
    ) -> Result<(ArtifactRecord, Option<String>), CommandError> {
        let internal = |e: &dyn std::fmt::Display| CommandError::Internal(e.to_string());
        let process =
            self.store.get_process(process_id).map_err(|e| internal(&e))?.ok_or(CommandError::NoSuchProcess)?;
        let audit_detail = serde_json::json!({"kind": kind.name(), "force": force});
        if !process.capabilities.iter().any(|c| c == kind.name()) {
            self.audit(actor, "command.request", process_id, audit_detail, "unsupported");
            return Err(CommandError::Unsupported(format!(
                "process does not support {} (capabilities: {})",
                kind.name(),
                process.capabilities.join(", ")
            )));
        }
        let artifact = new_artifact(&process, &kind, force, actor).map_err(|e| internal(&e))?;
        self.store.insert_artifact(&artifact).map_err(|e| internal(&e))?;
        let detail = serde_json::json!({"kind": kind.name(), "force": force, "artifact": artifact.id});
        let command = Command { id: artifact.id.clone(), kind, upload_token: artifact.upload_token.clone(), force };
        let ack = self.wait_for_ack(&artifact.id);
        if let Err(e) = self.send_to(process_id, Message::Command(command)) {
            self.forget_ack(&artifact.id);
            self.fail_artifact(&artifact.id, &e.to_string());
            self.audit(actor, "command.request", process_id, detail, &e.to_string());
            return Err(match e {
                SendError::NotConnected => CommandError::NotConnected,
                SendError::LinkClosed => CommandError::LinkClosed,
            });
        }
        let outcome = tokio::time::timeout(Duration::from_millis(self.config.ack_timeout_ms), ack).await;
        self.forget_ack(&artifact.id);
        let (refusal, result) = match outcome {
            Ok(Ok(a)) if !a.accepted => {
                let why = a.error.unwrap_or_else(|| "refused by the agent".into());
                (Some(why.clone()), why)
            }
            Ok(Ok(_)) => (None, "accepted".to_string()),
            _ => (None, "sent (no ack yet)".to_string()),
        };
        self.audit(actor, "command.request", process_id, detail, &result);
        let current = self.store.get_artifact(&artifact.id).ok().flatten().unwrap_or(artifact);
        Ok((current, refusal))
    }
}

fn new_artifact(
    process: &ProcessRecord,
    kind: &CommandKind,
    force: bool,
    actor: &str,
) -> Result<ArtifactRecord, getrandom::Error> {
    let id = ids::new_id()?;
    let now = now_rfc3339();
    let mut params = serde_json::to_value(kind).unwrap_or_default();
    params["force"] = serde_json::json!(force);
    Ok(ArtifactRecord {
        file_name: format!("{id}.{}", kind.file_extension()),
        id,
        process_id: process.id.clone(),
        app: process.app.clone(),
        kind: kind.name().to_string(),
        params,
        status: ArtifactStatus::Pending,
        error: None,
        size: None,
        sha256: None,
        created_at: now.clone(),
        updated_at: now,
        requested_by: actor.to_string(),
        estimate: None,
        progress: None,
        notes: vec![],
        uploaded_bytes: 0,
        upload_token: ids::new_secret()?,
    })
}
