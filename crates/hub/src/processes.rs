//! Processes: the record of every process an agent runs in, its live control link, and the
//! rendezvous where an operator's command waits for the agent's ack.
//!
//! A record's `state` moves between [`ProcessState`]s: `running` and `blocked` while a link is
//! live, `disconnected` once it is gone. Only this module writes process records.

use crate::store::{now_rfc3339, Db, ProcessRecord, StoreError};
use perf_protocol::{Ack, Message};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Where a process stands, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    Running,
    /// The JS main thread has not beaten for longer than the stall threshold.
    Blocked {
        for_ms: u64,
    },
    Disconnected,
}

impl ProcessState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Running => "running",
            ProcessState::Blocked { .. } => "blocked",
            ProcessState::Disconnected => "disconnected",
        }
    }

    fn apply(self, p: &mut ProcessRecord) {
        p.state = self.as_str().into();
        p.connected = self != ProcessState::Disconnected;
        p.blocked_ms = match self {
            ProcessState::Blocked { for_ms } => for_ms,
            _ => 0,
        };
    }
}

/// Why a message could not be sent to a process.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("process is not connected")]
    NotConnected,
    #[error("process link is congested or closing")]
    LinkClosed,
}

/// An agent's live control link: a queue into its writer task, and what changes too often to
/// be a database write each time (last heartbeat, stall state) — written on state changes and
/// when the link goes.
struct LiveLink {
    generation: u64,
    tx: mpsc::Sender<Message>,
    last_seen: String,
    state: ProcessState,
}

pub struct Processes {
    db: Db,
    links: Mutex<HashMap<String, LiveLink>>,
    acks: Mutex<HashMap<String, oneshot::Sender<Ack>>>,
    generation: AtomicU64,
}

impl Processes {
    /// After a (re)start no link is live: every stored process shows as disconnected.
    pub fn open(db: Db) -> Result<Self, StoreError> {
        let store = db.blocking();
        for mut p in store.list_processes()? {
            if p.connected {
                // Alive until the hub went down; heartbeats were kept in memory only.
                ProcessState::Disconnected.apply(&mut p);
                p.last_seen = now_rfc3339();
                store.upsert_process(&p)?;
            }
        }
        Ok(Self {
            db,
            links: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
        })
    }

    // ---- records ----

    pub async fn get(&self, id: &str) -> Result<Option<ProcessRecord>, StoreError> {
        let key = id.to_string();
        let mut p = self.db.run(move |s| s.get_process(&key)).await?;
        if let Some(p) = p.as_mut() {
            self.overlay_live(std::slice::from_mut(p));
        }
        Ok(p)
    }

    /// All processes, newest seen first.
    pub async fn list(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        let mut all = self.db.run(|s| s.list_processes()).await?;
        self.overlay_live(&mut all);
        all.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
        Ok(all)
    }

    /// A page of processes in id order after `after_id`, only of `apps` when given (the API's
    /// keyset pagination and app scope).
    pub async fn page(
        &self,
        apps: Option<Vec<String>>,
        after_id: Option<String>,
        limit: u32,
    ) -> Result<Vec<ProcessRecord>, StoreError> {
        let mut page = self.db.run(move |s| s.list_processes_page(apps.as_deref(), after_id.as_deref(), limit)).await?;
        self.overlay_live(&mut page);
        Ok(page)
    }

    /// A live link knows better than the stored record: it is connected, in the state and with
    /// the heartbeat it last reported (also if a stale write raced its registration).
    fn overlay_live(&self, records: &mut [ProcessRecord]) {
        let Ok(links) = self.links.lock() else { return };
        for p in records.iter_mut() {
            if let Some(l) = links.get(&p.id) {
                l.state.apply(p);
                p.last_seen.clone_from(&l.last_seen);
            }
        }
    }

    /// A freshly authenticated agent: its record as the hello describes it, connected.
    pub async fn connected(&self, record: ProcessRecord) {
        self.save(record).await;
    }

    /// The link is gone: the process shows as disconnected, with when it was last seen.
    pub async fn disconnected(&self, id: &str) {
        self.update(id, |p| ProcessState::Disconnected.apply(p)).await;
    }

    /// A heartbeat: the process is alive (kept in memory; no database write).
    pub fn seen(&self, id: &str) {
        if let Ok(mut links) = self.links.lock() {
            if let Some(l) = links.get_mut(id) {
                l.last_seen = now_rfc3339();
            }
        }
    }

    /// A metrics sample said whether the JS thread is running or blocked: written when it
    /// changed (or a blocked process's duration grew), not for every sample.
    pub async fn observed(&self, id: &str, state: ProcessState) {
        self.seen(id);
        let changed = match self.links.lock() {
            Ok(mut links) => match links.get_mut(id) {
                Some(l) if l.state == state && state == ProcessState::Running => false,
                Some(l) => {
                    l.state = state;
                    true
                }
                None => false,
            },
            Err(_) => false,
        };
        if changed {
            self.update(id, move |p| state.apply(p)).await;
        }
    }

    /// Forgets processes disconnected since before `cutoff` (RFC 3339) — never one with a live
    /// link — and returns their ids.
    pub async fn age_out(&self, cutoff: String) -> Result<Vec<String>, StoreError> {
        let live: std::collections::HashSet<String> =
            self.links.lock().map(|l| l.keys().cloned().collect()).unwrap_or_default();
        self.db.run(move |s| s.delete_stale_processes(&cutoff, &live)).await
    }

    async fn update(&self, id: &str, f: impl FnOnce(&mut ProcessRecord) + Send + 'static) {
        let id = id.to_string();
        let result = self
            .db
            .run(move |s| {
                let Some(mut p) = s.get_process(&id)? else { return Ok(()) };
                f(&mut p);
                p.last_seen = now_rfc3339();
                s.upsert_process(&p)
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "store: process update failed");
        }
    }

    async fn save(&self, p: ProcessRecord) {
        if let Err(e) = self.db.run(move |s| s.upsert_process(&p)).await {
            tracing::error!(error = %e, "store: process write failed");
        }
    }

    // ---- live links ----

    /// Registers a freshly authenticated link; returns its generation (to unregister only itself).
    pub fn register_link(&self, process_id: &str, tx: mpsc::Sender<Message>) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut links) = self.links.lock() {
            let link = LiveLink { generation, tx, last_seen: now_rfc3339(), state: ProcessState::Running };
            links.insert(process_id.to_string(), link);
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

    /// Queues a message on the process's link (never waits: a full queue is an error).
    pub fn send(&self, process_id: &str, msg: Message) -> Result<(), SendError> {
        let tx = {
            let links = self.links.lock().map_err(|_| SendError::LinkClosed)?;
            links.get(process_id).map(|l| l.tx.clone()).ok_or(SendError::NotConnected)?
        };
        tx.try_send(msg).map_err(|_| SendError::LinkClosed)
    }

    // ---- ack rendezvous ----

    /// Where the ack of `command_id` will arrive.
    pub fn await_ack(&self, command_id: &str) -> oneshot::Receiver<Ack> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.acks.lock() {
            w.insert(command_id.to_string(), tx);
        }
        rx
    }

    pub fn forget_ack(&self, command_id: &str) {
        if let Ok(mut w) = self.acks.lock() {
            w.remove(command_id);
        }
    }

    /// Hands an ack to the operator request waiting for it (the caller checked its sender).
    pub fn deliver_ack(&self, ack: Ack) {
        let waiter = self.acks.lock().ok().and_then(|mut w| w.remove(&ack.command_id));
        if let Some(tx) = waiter {
            let _ = tx.send(ack);
        }
    }
}
