//! The audit trail: who did what, when, and how it ended — in the hub's database (for
//! `/api/audit`) and as JSON lines in `DATA_DIR/audit.log` (append-only, for log shipping).
//!
//! Both are bounded, so noise can't push real entries out or fill the disk: the table keeps
//! the newest `keep_rows` entries; `audit.log` is rotated to `audit.log.1` (one previous file
//! kept) once it passes `log_max_bytes`. Repeated failures (failed logins, agents with a wrong
//! secret) are aggregated by [`Audit::record_failure`]: one entry per action, source address and
//! [`FAILURE_WINDOW`], whose `count` grows in place.

use crate::store::{now_rfc3339, AuditRecord, Db, StoreError, AUDIT_KEEP_ROWS};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one action from one source within this window share one audit entry.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sources whose failures are tallied at once; past it, new sources share one tally (under
/// the unspecified address), so a flood from many addresses can't grow memory.
const MAX_TALLIES: usize = 10_000;
/// The first this many failures of a window update its entry each; later ones at most once a
/// second (and when the audit is read), so a flood costs few writes.
const EXACT_UPDATES: u64 = 64;

/// One aggregated failure entry in progress.
struct Tally {
    started: Instant,
    count: u64,
    last_write: Instant,
    dirty: bool,
    /// Its row and record, once written.
    entry: Option<(i64, AuditRecord)>,
}

/// An audit write that a failure calls for, done outside the tally lock.
enum TallyWrite {
    First { key: (&'static str, IpAddr), rec: AuditRecord },
    Update { seq: i64, rec: AuditRecord, to_log: bool },
}

pub struct Audit {
    db: Db,
    log: Mutex<std::fs::File>,
    log_path: PathBuf,
    log_bytes: Mutex<u64>,
    keep_rows: i64,
    log_max_bytes: u64,
    tallies: Mutex<HashMap<(&'static str, IpAddr), Tally>>,
}

impl Audit {
    pub fn open(db: Db, data_dir: &Path) -> std::io::Result<Self> {
        // 0600: the audit trail names operators, apps and artifacts (issue 11, finding 3).
        let log = crate::private_files::append_private(&data_dir.join("audit.log"))?;
        Ok(Self {
            log_bytes: Mutex::new(log.metadata().map(|m| m.len()).unwrap_or(0)),
            db,
            log: Mutex::new(log),
            log_path: data_dir.join("audit.log"),
            keep_rows: AUDIT_KEEP_ROWS,
            log_max_bytes: 64 << 20,
            tallies: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the bounds: rows kept in the table, size at which `audit.log` is rotated.
    pub fn with_retention(mut self, keep_rows: i64, log_max_bytes: u64) -> Self {
        self.keep_rows = keep_rows.max(1);
        self.log_max_bytes = log_max_bytes.max(1);
        self
    }

    /// Records one action. Failures to record are logged, never returned: an action must not
    /// fail because its audit line could not be written, but the operator log says so.
    pub async fn record(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value, result: &str) {
        self.insert(entry(actor, action, target, detail, result)).await;
    }

    /// Records a failure of `action` from `source` (actor `{actor_kind}@{source}`), aggregated:
    /// the first of a [`FAILURE_WINDOW`] writes an entry (with `target` and `detail` of that
    /// first attempt), later ones raise its `detail.count`. `audit.log` gets the first and the
    /// final state of each window.
    pub async fn record_failure(
        &self,
        actor_kind: &str,
        action: &'static str,
        source: IpAddr,
        target: &str,
        detail: serde_json::Value,
    ) {
        let writes = {
            let Ok(mut tallies) = self.tallies.lock() else { return };
            let mut writes = Vec::new();
            let key = tally_key(&mut tallies, action, source, &mut writes);
            if let Some(old) = tallies.get(&key).filter(|t| t.started.elapsed() >= FAILURE_WINDOW) {
                writes.extend(final_write(old));
                tallies.remove(&key);
            }
            let now = Instant::now();
            let t = tallies.entry(key).or_insert_with(|| Tally {
                started: now,
                count: 0,
                last_write: now,
                dirty: false,
                entry: None,
            });
            t.count += 1;
            match &t.entry {
                None if t.count == 1 => {
                    let mut detail = detail;
                    set_count(&mut detail, 1);
                    let actor = format!("{actor_kind}@{}", key.1);
                    writes.push(TallyWrite::First { key, rec: entry(&actor, action, target, detail, "denied") });
                }
                Some(_) if t.count <= EXACT_UPDATES || t.last_write.elapsed() >= Duration::from_secs(1) => {
                    writes.extend(update_write(t, false));
                }
                _ => t.dirty = true,
            }
            writes
        };
        for w in writes {
            self.apply(w).await;
        }
    }

    /// Writes the counts of tallies that changed since their last write (before the audit is read).
    async fn flush_tallies(&self) {
        let writes: Vec<TallyWrite> = match self.tallies.lock() {
            Ok(mut tallies) => {
                tallies.values_mut().filter(|t| t.dirty).filter_map(|t| update_write(t, false)).collect()
            }
            Err(_) => return,
        };
        for w in writes {
            self.apply(w).await;
        }
    }

    async fn apply(&self, w: TallyWrite) {
        match w {
            TallyWrite::First { key, rec } => {
                let Some(seq) = self.insert(rec.clone()).await else { return };
                if let Ok(mut tallies) = self.tallies.lock() {
                    if let Some(t) = tallies.get_mut(&key).filter(|t| t.entry.is_none()) {
                        t.entry = Some((seq, rec));
                        t.dirty = t.count > 1;
                    }
                }
            }
            TallyWrite::Update { seq, rec, to_log } => {
                if to_log {
                    self.append_line(&rec);
                }
                if let Err(e) = self.db.run(move |s| s.update_audit(seq, &rec)).await {
                    tracing::error!(error = %e, "audit: store update failed");
                }
            }
        }
    }

    async fn insert(&self, rec: AuditRecord) -> Option<i64> {
        tracing::info!(actor = rec.actor, action = rec.action, target = rec.target, result = rec.result, "audit");
        self.append_line(&rec);
        let keep = self.keep_rows;
        match self.db.run(move |s| s.insert_audit_keeping(&rec, keep)).await {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(error = %e, "audit: store write failed");
                None
            }
        }
    }

    fn append_line(&self, rec: &AuditRecord) {
        let Ok(line) = serde_json::to_string(rec) else { return };
        let (Ok(mut log), Ok(mut bytes)) = (self.log.lock(), self.log_bytes.lock()) else { return };
        if *bytes + line.len() as u64 + 1 > self.log_max_bytes {
            match self.rotate() {
                Ok(f) => {
                    *log = f;
                    *bytes = 0;
                }
                Err(e) => tracing::error!(error = %e, "audit: log rotation failed"),
            }
        }
        match writeln!(log, "{line}") {
            Ok(()) => *bytes += line.len() as u64 + 1,
            Err(e) => tracing::error!(error = %e, "audit: log write failed"),
        }
    }

    /// `audit.log` → `audit.log.1` (replacing the previous one); a fresh `audit.log`.
    fn rotate(&self) -> std::io::Result<std::fs::File> {
        std::fs::rename(&self.log_path, self.log_path.with_extension("log.1"))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(&self.log_path)
    }

    /// The newest `limit` entries, newest first.
    pub async fn list(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.flush_tallies().await;
        self.db.run(move |s| s.list_audit(limit)).await
    }

    /// Entries older than `before_seq`, newest first, with their sequence numbers (cursors).
    pub async fn page(&self, before_seq: Option<i64>, limit: u32) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.flush_tallies().await;
        self.db.run(move |s| s.list_audit_page(before_seq, limit)).await
    }
}

/// The tally `source` counts under: its own, or — when [`MAX_TALLIES`] are kept and none has
/// expired — the shared one. Expired tallies dropped here get their final write.
fn tally_key(
    tallies: &mut HashMap<(&'static str, IpAddr), Tally>,
    action: &'static str,
    source: IpAddr,
    writes: &mut Vec<TallyWrite>,
) -> (&'static str, IpAddr) {
    let key = (action, source);
    if tallies.contains_key(&key) || tallies.len() < MAX_TALLIES {
        return key;
    }
    tallies.retain(|_, t| {
        let live = t.started.elapsed() < FAILURE_WINDOW;
        if !live {
            writes.extend(final_write(t));
        }
        live
    });
    if tallies.len() < MAX_TALLIES {
        key
    } else {
        (action, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

fn set_count(detail: &mut serde_json::Value, count: u64) {
    if !detail.is_object() {
        *detail = serde_json::json!({});
    }
    detail["count"] = serde_json::json!(count);
    detail["window_secs"] = serde_json::json!(FAILURE_WINDOW.as_secs());
}

/// The entry of `t` with its current count (and when the last failure was).
fn update_write(t: &mut Tally, to_log: bool) -> Option<TallyWrite> {
    let (seq, rec) = t.entry.as_ref()?;
    let mut rec = rec.clone();
    set_count(&mut rec.detail, t.count);
    rec.detail["last"] = serde_json::json!(now_rfc3339());
    t.dirty = false;
    t.last_write = Instant::now();
    Some(TallyWrite::Update { seq: *seq, rec, to_log })
}

/// A window is over: its final count, also to `audit.log`.
fn final_write(t: &Tally) -> Option<TallyWrite> {
    let (seq, rec) = t.entry.as_ref()?;
    let mut rec = rec.clone();
    set_count(&mut rec.detail, t.count);
    Some(TallyWrite::Update { seq: *seq, rec, to_log: t.count > 1 })
}

fn entry(actor: &str, action: &str, target: &str, detail: serde_json::Value, result: &str) -> AuditRecord {
    AuditRecord {
        ts: now_rfc3339(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail,
        result: result.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn the_table_and_the_log_stay_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::new(Store::open(&dir.path().join("hub.db")).expect("store"));
        let audit = Audit::open(db, dir.path()).expect("audit").with_retention(150, 4096);
        for i in 0..1000 {
            audit.record("op", &format!("a{i}"), "t", serde_json::json!({}), "ok").await;
        }
        let all = audit.list(10_000).await.expect("list");
        assert!(all.len() <= 250, "table bounded: {}", all.len());
        assert_eq!(all[0].action, "a999", "the newest are kept");
        let log = std::fs::metadata(dir.path().join("audit.log")).expect("log").len();
        let old = std::fs::metadata(dir.path().join("audit.log.1")).expect("rotated").len();
        assert!(log <= 4096 && old <= 4096, "{log} {old}");
    }

    #[tokio::test]
    async fn repeated_failures_are_one_entry_per_source_with_an_exact_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::new(Store::open(&dir.path().join("hub.db")).expect("store"));
        let audit = Audit::open(db, dir.path()).expect("audit");
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        audit.record("op", "command.request", "p1", serde_json::json!({}), "accepted").await;
        for _ in 0..500 {
            audit.record_failure("agent", "agent.auth_failed", a, "orders", serde_json::json!({"pid": 1})).await;
        }
        audit.record_failure("agent", "agent.auth_failed", b, "orders", serde_json::json!({})).await;
        let all = audit.list(100).await.expect("list");
        assert_eq!(all.len(), 3, "{all:?}");
        let of_a = all.iter().find(|e| e.actor == "agent@10.0.0.1").expect("entry of a");
        assert_eq!(of_a.detail["count"], 500, "exact once read");
        assert_eq!(of_a.detail["pid"], 1, "the first attempt's detail");
        assert!(all.iter().any(|e| e.action == "command.request"), "the real entry is kept");
        let lines = std::fs::read_to_string(dir.path().join("audit.log")).expect("log").lines().count();
        assert!(lines <= 4, "{lines} log lines");
    }
}
