//! The hub's shared state: metadata store, artifact files, live agent links, waiting acks and
//! the audit trail. The gateway (agents) and the API (operators) both work through it.

use crate::blobs::BlobStore;
use crate::config::HubConfig;
use crate::store::{now_rfc3339, ArtifactRecord, ArtifactStatus, AuditRecord, ProcessRecord, Store};
use perf_protocol::{Ack, Message};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
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
        let audit_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.data_dir.join("audit.log"))?;
        let hub = Self {
            config,
            store,
            blobs,
            links: Mutex::new(HashMap::new()),
            ack_waiters: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            audit_log: Mutex::new(Some(audit_log)),
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
            p.last_seen = now_rfc3339();
            if let Err(e) = self.store.upsert_process(&p) {
                tracing::error!(error = %e, "store: process update failed");
            }
        }
        self.fail_unfinished(process_id, &format!("process disconnected during capture ({reason})"), |_| true);
    }

    /// Fails the unfinished artifacts of a process that `keep` doesn't spare.
    pub fn fail_unfinished(&self, process_id: &str, error: &str, keep_if: impl Fn(&ArtifactRecord) -> bool) {
        let Ok(open) = self.store.list_artifacts(Some(process_id), true, 1000) else { return };
        for a in open.into_iter().filter(|a| keep_if(a)) {
            let _ = self.store.update_artifact(&a.id, |a| {
                if !a.status.is_final() {
                    a.status = ArtifactStatus::Failed;
                    a.error = Some(error.to_string());
                }
            });
            tracing::warn!(artifact = %a.id, error, "artifact failed");
        }
    }

    pub fn save_process(&self, p: &ProcessRecord) {
        if let Err(e) = self.store.upsert_process(p) {
            tracing::error!(error = %e, "store: process write failed");
        }
    }
}
