//! Processes: the record of every process an agent runs in, its live control link, and the
//! rendezvous where an operator's command waits for the agent's ack.
//!
//! A record's `state` moves between [`ProcessState`]s: `running` and `blocked` while a link is
//! live, `disconnected` once it is gone. Only this module writes process records.
//!
//! A process id belongs to the app that registered it first ([`Owners`]), for as long as the
//! process is listed: an agent of another app can't take it (nor its commands and upload
//! tokens) over by sending a hello with that id, and each app has at most a configured number of
//! processes listed.

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

/// The RFC 3339 time before which a disconnected process is forgotten, `ttl_ms` before `now`.
/// A TTL reaching before the epoch (e.g. `--process-ttl-secs 3000000000`) gives the epoch:
/// nothing is that old. (humantime panics on a time before the epoch, which `checked_sub`
/// happily returns on Linux.)
pub fn ttl_cutoff(now: std::time::SystemTime, ttl_ms: u64) -> String {
    let epoch = std::time::UNIX_EPOCH;
    let cutoff = now.checked_sub(std::time::Duration::from_millis(ttl_ms)).filter(|t| *t >= epoch).unwrap_or(epoch);
    humantime::format_rfc3339_millis(cutoff).to_string()
}

/// Why a hello may not take a process id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("process id {id} belongs to another app")]
    OwnedByOtherApp { id: String, owner: String },
    #[error("app {app} already has {limit} processes listed (the hub's limit per app)")]
    TooManyProcesses { app: String, limit: usize },
}

/// Which app owns each listed process id, and how many each app has: kept in memory (loaded
/// from the records at start) so a hello is checked without a scan of the store.
#[derive(Default)]
struct Owners {
    by_id: HashMap<String, String>,
    per_app: HashMap<String, usize>,
}

impl Owners {
    fn claim(&mut self, id: &str, app: &str, limit: usize) -> Result<(), ClaimError> {
        match self.by_id.get(id) {
            Some(owner) if owner == app => Ok(()),
            Some(owner) => Err(ClaimError::OwnedByOtherApp { id: id.to_string(), owner: owner.clone() }),
            None => {
                let count = self.per_app.get(app).copied().unwrap_or(0);
                if count >= limit {
                    return Err(ClaimError::TooManyProcesses { app: app.to_string(), limit });
                }
                self.insert(id, app);
                Ok(())
            }
        }
    }

    fn insert(&mut self, id: &str, app: &str) {
        if self.by_id.insert(id.to_string(), app.to_string()).is_none() {
            *self.per_app.entry(app.to_string()).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(app) = self.by_id.remove(id) {
            if let Some(n) = self.per_app.get_mut(&app) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_app.remove(&app);
                }
            }
        }
    }
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
    owners: Mutex<Owners>,
    generation: AtomicU64,
}

impl Processes {
    /// After a (re)start no link is live: every stored process shows as disconnected.
    pub fn open(db: Db) -> Result<Self, StoreError> {
        let store = db.blocking();
        let mut owners = Owners::default();
        for mut p in store.list_processes()? {
            owners.insert(&p.id, &p.app);
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
            owners: Mutex::new(owners),
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

    /// Binds process `id` to `app` (its first app keeps it), unless `app` already has `limit`
    /// processes listed. Called for every authenticated hello before its link is registered.
    pub fn claim(&self, id: &str, app: &str, limit: usize) -> Result<(), ClaimError> {
        match self.owners.lock() {
            Ok(mut o) => o.claim(id, app, limit),
            // A poisoned map can't say who owns what: refuse rather than risk a takeover.
            Err(_) => Err(ClaimError::OwnedByOtherApp { id: id.to_string(), owner: "unknown".into() }),
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
        let gone = self.db.run(move |s| s.delete_stale_processes(&cutoff, &live)).await?;
        if let (Ok(links), Ok(mut owners)) = (self.links.lock(), self.owners.lock()) {
            // A process that came back meanwhile keeps its owner.
            gone.iter().filter(|id| !links.contains_key(*id)).for_each(|id| owners.remove(id));
        }
        Ok(gone)
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

    /// Registers a freshly authenticated link, replacing the process's previous link (its own
    /// app's: [`Processes::claim`] came first); returns its generation (to unregister only itself).
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

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn a_ttl_before_the_epoch_ages_nothing_out_and_does_not_panic() {
        let now = std::time::SystemTime::now();
        assert_eq!(ttl_cutoff(now, 3_000_000_000 * 1000), "1970-01-01T00:00:00.000Z");
        assert_eq!(ttl_cutoff(now, u64::MAX), "1970-01-01T00:00:00.000Z");
        assert!(ttl_cutoff(now, 1000).as_str() > "2020");
    }

    #[test]
    fn an_id_stays_with_its_first_app_and_apps_are_capped() {
        let mut o = Owners::default();
        assert_eq!(o.claim("p1", "a", 2), Ok(()));
        assert_eq!(o.claim("p1", "a", 2), Ok(()), "the same app reconnects");
        assert!(matches!(o.claim("p1", "b", 2), Err(ClaimError::OwnedByOtherApp { .. })));
        assert_eq!(o.claim("p2", "a", 2), Ok(()));
        assert!(matches!(o.claim("p3", "a", 2), Err(ClaimError::TooManyProcesses { limit: 2, .. })));
        o.remove("p1");
        assert_eq!(o.claim("p1", "b", 2), Ok(()), "an aged-out id is free again");
        assert_eq!(o.claim("p3", "a", 2), Ok(()));
    }
}
