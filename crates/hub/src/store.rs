//! Metadata store: processes, artifacts and the audit log in embedded SQLite.
//!
//! Records are kept as JSON documents with a few indexed columns; that keeps migrations cheap
//! while the schema of a record grows. Writes are small and serialized behind one mutex.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("bad record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("store lock poisoned")]
    Poisoned,
    #[error("the store thread is gone")]
    TaskFailed,
    #[error(
        "the hub database has schema version {found}, newer than this perf-hub knows ({known}): run the newer perf-hub"
    )]
    TooNew { found: u32, known: u32 },
}

/// A process an agent runs in, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessRecord {
    pub id: String,
    pub app: String,
    pub hostname: String,
    pub pid: u32,
    pub labels: BTreeMap<String, String>,
    pub node_version: String,
    pub agent_version: String,
    pub capabilities: Vec<String>,
    pub connected: bool,
    /// "running", "blocked" or "disconnected".
    pub state: String,
    /// How long the JS thread has been blocked, when `state` is "blocked".
    #[serde(default)]
    pub blocked_ms: u64,
    pub connected_at: String,
    pub last_seen: String,
    pub remote_addr: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStatus {
    Pending,
    Running,
    Uploading,
    Ready,
    Failed,
    /// Its bytes were deleted (by an admin or retention); the record stays, with who and why.
    Deleted,
}

impl ArtifactStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactStatus::Pending => "pending",
            ArtifactStatus::Running => "running",
            ArtifactStatus::Uploading => "uploading",
            ArtifactStatus::Ready => "ready",
            ArtifactStatus::Failed => "failed",
            ArtifactStatus::Deleted => "deleted",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, ArtifactStatus::Ready | ArtifactStatus::Failed | ArtifactStatus::Deleted)
    }
}

/// One requested capture and, once ready, its stored file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactRecord {
    pub id: String,
    pub process_id: String,
    pub app: String,
    pub kind: String,
    /// The command's parameters as requested (seconds, frequency, force...).
    pub params: serde_json::Value,
    pub status: ArtifactStatus,
    pub error: Option<String>,
    /// Bytes stored (or announced by the agent while uploading).
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub file_name: String,
    pub created_at: String,
    pub updated_at: String,
    pub requested_by: String,
    /// Cost estimate the agent computed before a heap snapshot.
    pub estimate: Option<serde_json::Value>,
    /// Latest progress report: `{stage, done, total}`.
    pub progress: Option<serde_json::Value>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Bytes received so far on the upload stream.
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// Authorises the upload stream; never shown by the API.
    #[serde(skip_serializing, default)]
    pub upload_token: String,
    /// Storage (issue 12): a pinned artifact is kept by retention however old; a deleted one
    /// says who deleted it (`token:NAME`, `retention`) and why.
    #[serde(default)]
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_reason: Option<String>,
    /// The autopilot rule that took this capture (see [`crate::rules`]); absent for operators'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<ArtifactTrigger>,
}

/// Why an autopilot rule took an artifact: `{"rule": NAME, "reason": "blocked_ms 1250 >= 1000"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactTrigger {
    pub rule: String,
    pub reason: String,
}

impl ArtifactRecord {
    /// A new `pending` capture of `kind` (its capture-table name) by `process`, stored as
    /// `<id>.<file_extension>`, with the command's `params` and the upload stream's token.
    pub fn pending(
        id: &str,
        process: (&str, &str),
        kind: &str,
        file_extension: &str,
        requested_by: &str,
        upload_token: String,
    ) -> Self {
        let now = now_rfc3339();
        ArtifactRecord {
            file_name: format!("{id}.{file_extension}"),
            id: id.to_string(),
            process_id: process.0.to_string(),
            app: process.1.to_string(),
            kind: kind.to_string(),
            params: serde_json::json!({}),
            status: ArtifactStatus::Pending,
            error: None,
            size: None,
            sha256: None,
            created_at: now.clone(),
            updated_at: now,
            requested_by: requested_by.to_string(),
            estimate: None,
            progress: None,
            notes: vec![],
            uploaded_bytes: 0,
            upload_token,
            pinned: false,
            deleted_by: None,
            deleted_reason: None,
            trigger: None,
        }
    }
}

/// Internal form that also persists the upload token (which the API form skips).
#[derive(Serialize, Deserialize)]
struct StoredArtifact {
    #[serde(flatten)]
    record: ArtifactRecord,
    upload_token: String,
}

/// Who did what, when, and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub ts: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub result: String,
}

/// The SQL layer: synchronous calls on one connection behind a mutex. Async code reaches it
/// only through [`Db`], which runs each call on tokio's blocking pool.
pub struct Store {
    conn: Mutex<Connection>,
}

/// The store as async code uses it: calls run one after another on the store's own thread, so
/// a slow disk or a long prune never stalls the runtime threads that serve agents and
/// operators — and, the connection being one, no pool of threads queues up on its mutex. The
/// queue is bounded: when the disk can't keep up, callers wait (backpressure) instead of
/// piling up work in memory.
#[derive(Clone)]
pub struct Db {
    store: std::sync::Arc<Store>,
    calls: tokio::sync::mpsc::Sender<StoreCall>,
}

type StoreCall = Box<dyn FnOnce(&Store) + Send>;

/// Calls waiting for the store thread at most.
const DB_QUEUE: usize = 4096;

impl Db {
    /// Starts the store's thread; it ends when the last `Db` clone is dropped.
    pub fn new(store: Store) -> Self {
        let store = std::sync::Arc::new(store);
        let (calls, mut rx) = tokio::sync::mpsc::channel::<StoreCall>(DB_QUEUE);
        let on_thread = store.clone();
        let spawned = std::thread::Builder::new().name("perf-hub-store".into()).spawn(move || {
            while let Some(call) = rx.blocking_recv() {
                // A panicking call loses its own answer (its caller sees TaskFailed), not the
                // thread: every later call still runs.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&on_thread))).is_err() {
                    tracing::error!("store: a call panicked");
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store thread: store calls will fail");
        }
        Db { store, calls }
    }

    /// Runs `f` against the store on its thread and waits for the result.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let call: StoreCall = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        self.calls.send(call).await.map_err(|_| StoreError::TaskFailed)?;
        rx.await.map_err(|_| StoreError::TaskFailed)?
    }

    /// The store itself, for synchronous start-up work (before the hub serves anything).
    pub fn blocking(&self) -> &Store {
        &self.store
    }
}

/// One forward step of the schema: SQL, or code for what SQL can't do (hashing).
enum Migration {
    Sql(&'static str),
    Code(fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>),
}
use Migration::{Code, Sql};

/// Forward migrations, oldest first. A database records the last one applied in
/// `schema_version`; opening applies the rest, each in its own transaction. Never edit a
/// released migration — add the next one.
const MIGRATIONS: &[(u32, Migration)] = &[
    // 1: the schema of perf-hub 0.1.0 (which had no version table). `IF NOT EXISTS` makes it
    // a no-op on such a database and the creation of a new one.
    (1, Sql(SCHEMA_V1)),
    // 2: operators' API tokens (only their SHA-256 is kept) and the keyset-pagination index of
    // the artifact list.
    (2, Sql(SCHEMA_V2)),
    // 3: autopilot capture rules (one JSON document per rule, keyed by its name).
    (3, Sql(SCHEMA_V3)),
    // 4: the hub's own settings (storage: when retention first ran, issue 12).
    (4, Sql(SCHEMA_V4)),
    // 5: upload tokens a hub older than 0.2 kept in plain text are replaced by their hash
    // (their uploads keep working: the agent still presents the token).
    (5, Code(hash_plain_upload_tokens)),
];

/// Migration 5: every artifact whose stored upload token is not yet a hash gets its hash.
fn hash_plain_upload_tokens(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let docs: Vec<(String, String)> = {
        let mut st = tx.prepare("SELECT id, doc FROM artifacts")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, doc) in docs {
        let mut a = parse_stored(&doc)?;
        if crate::upload_tokens::is_hashed(&a.upload_token) {
            continue;
        }
        a.upload_token = crate::upload_tokens::hash_upload_token(&a.upload_token);
        tx.execute("UPDATE artifacts SET doc = ?2 WHERE id = ?1", params![id, stored_doc(&a)?])?;
    }
    Ok(())
}

const SCHEMA_V4: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY, doc TEXT NOT NULL, last_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY, process_id TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS artifacts_by_process ON artifacts(process_id);
CREATE INDEX IF NOT EXISTS artifacts_by_status ON artifacts(status);
CREATE TABLE IF NOT EXISTS metrics (
    process_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_by_process ON metrics(process_id, ts_ms);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, doc TEXT NOT NULL);
";

const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, apps TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT);
CREATE INDEX IF NOT EXISTS artifacts_by_created ON artifacts(created_at, id);
";

const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS rules (
    name TEXT PRIMARY KEY, created_at TEXT NOT NULL, doc TEXT NOT NULL);
";

/// An operator API token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub role: String,
    /// The apps the token is limited to; empty: every app.
    pub apps: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// Where a page of artifacts starts: after this `(created_at, id)` (newest first).
pub type ArtifactCursor = (String, String);
/// Where a page of metric samples starts: after this `(ts_ms, rowid)` (oldest first).
pub type MetricCursor = (i64, i64);

/// Which samples of a process's history: from `since_ms` to `until_ms` (both included), every
/// sample (`step_ms` 0 or 1) or the first of each `step_ms` (a chart of a long window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricRange {
    pub since_ms: u64,
    pub until_ms: u64,
    pub step_ms: u64,
}

/// Audit rows kept in the table by default; older ones are deleted as new ones arrive.
pub const AUDIT_KEEP_ROWS: i64 = 100_000;

/// Parses a JSON document of a row, or logs it and says `None`: one damaged row (a bad write,
/// a downgrade) must not hide every other record or stop the hub.
fn parse_row<T: serde::de::DeserializeOwned>(table: &str, key: &str, doc: &str) -> Option<T> {
    match serde_json::from_str(doc) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(table, key, error = %e, "store: skipping a row that does not parse");
            None
        }
    }
}

/// `apps` as the JSON array the scoped queries compare against (`NULL`: no scope).
fn apps_json(apps: Option<&[String]>) -> Result<Option<String>, StoreError> {
    Ok(apps.map(serde_json::to_string).transpose()?)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        // WAL: readers don't block the writer; NORMAL sync is durable across process crashes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.with(|c| Ok(c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?))
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&conn)
    }

    pub fn upsert_process(&self, p: &ProcessRecord) -> Result<(), StoreError> {
        let doc = serde_json::to_string(p)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO processes (id, doc, last_seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, last_seen = excluded.last_seen",
                params![p.id, doc, p.last_seen],
            )?;
            Ok(())
        })
    }

    pub fn get_process(&self, id: &str) -> Result<Option<ProcessRecord>, StoreError> {
        self.with(|c| {
            let doc: Option<String> =
                c.query_row("SELECT doc FROM processes WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
            Ok(doc.and_then(|d| parse_row("processes", id, &d)))
        })
    }

    pub fn list_processes(&self) -> Result<Vec<ProcessRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, doc FROM processes ORDER BY last_seen DESC")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let rows = rows.collect::<Result<Vec<_>, _>>()?;
            Ok(rows.iter().filter_map(|(id, d)| parse_row("processes", id, d)).collect())
        })
    }

    pub fn insert_artifact(&self, a: &ArtifactRecord) -> Result<(), StoreError> {
        let doc = stored_doc(a)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO artifacts (id, process_id, status, created_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.id, a.process_id, a.status.as_str(), a.created_at, doc],
            )?;
            Ok(())
        })
    }

    /// A setting of the hub (table `settings`, v4), `None` if never set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
        })
    }

    /// The setting `key`, set to `value` first if it has none; returns the value it has.
    pub fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.with(|c| {
            c.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)", params![key, value])?;
            Ok(c.query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| r.get(0))?)
        })
    }

    pub fn get_artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        self.with(|c| get_artifact_in(c, id))
    }

    /// Read-modify-write of one artifact under the lock: `f` changes the record and says whether
    /// to write it. Returns the new record, `None` if there is no such artifact or `f` declined.
    /// Only the artifact lifecycle ([`crate::artifacts`]) calls this.
    pub(crate) fn update_artifact_if(
        &self,
        id: &str,
        f: impl FnOnce(&mut ArtifactRecord) -> bool,
    ) -> Result<Option<ArtifactRecord>, StoreError> {
        self.with(|c| {
            let Some(mut a) = get_artifact_in(c, id)? else {
                return Ok(None);
            };
            if !f(&mut a) {
                return Ok(None);
            }
            a.updated_at = now_rfc3339();
            c.execute(
                "UPDATE artifacts SET status = ?2, doc = ?3 WHERE id = ?1",
                params![a.id, a.status.as_str(), stored_doc(&a)?],
            )?;
            Ok(Some(a))
        })
    }

    /// Artifacts, newest first, optionally of one process or not yet final.
    pub fn list_artifacts(
        &self,
        process_id: Option<&str>,
        only_unfinished: bool,
        limit: u32,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, doc FROM artifacts
                 WHERE (?1 IS NULL OR process_id = ?1)
                   AND (?2 = 0 OR status NOT IN ('ready', 'failed', 'deleted'))
                 ORDER BY created_at DESC, id LIMIT ?3",
            )?;
            let rows = st
                .query_map(params![process_id, only_unfinished as i32, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows.iter().filter_map(|(id, d)| parse_stored_row(id, d)).collect())
        })
    }

    /// Stores one sample (a [`perf_protocol::MetricsSample`], or any JSON document) as JSON text.
    pub fn insert_metric(&self, process_id: &str, ts_ms: u64, doc: &impl serde::Serialize) -> Result<(), StoreError> {
        self.insert_metric_json(process_id, ts_ms, &serde_json::to_string(doc)?)
    }

    /// Stores many samples (process id, ts, JSON text) in one transaction: one fsync-able commit
    /// instead of one per sample.
    pub fn insert_metrics_batch(&self, rows: &[(String, u64, String)]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO metrics (process_id, ts_ms, doc) VALUES (?1, ?2, ?3)")?;
            for (id, ts, doc) in rows {
                st.execute(params![id, *ts as i64, doc])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores one sample already serialised as JSON text.
    pub fn insert_metric_json(&self, process_id: &str, ts_ms: u64, doc: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO metrics (process_id, ts_ms, doc) VALUES (?1, ?2, ?3)",
                params![process_id, ts_ms as i64, doc],
            )?;
            Ok(())
        })
    }

    /// Samples of a process since `since_ms`, oldest first, at most `limit` (the newest ones).
    pub fn list_metrics(
        &self,
        process_id: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT doc FROM (SELECT doc, ts_ms FROM metrics WHERE process_id = ?1 AND ts_ms >= ?2
                 ORDER BY ts_ms DESC LIMIT ?3) ORDER BY ts_ms",
            )?;
            let docs = st
                .query_map(params![process_id, since_ms as i64, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(docs.iter().filter_map(|d| parse_row("metrics", process_id, d)).collect())
        })
    }

    pub fn latest_metric(&self, process_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self.list_metrics(process_id, 0, 1)?.pop())
    }

    /// Every process with its latest sample (JSON text), newest seen first, in one query.
    pub fn processes_with_latest_metric(&self) -> Result<Vec<(ProcessRecord, Option<String>)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT p.doc, (SELECT m.doc FROM metrics m WHERE m.process_id = p.id ORDER BY m.ts_ms DESC LIMIT 1)
                 FROM processes p ORDER BY p.last_seen DESC",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows.into_iter().filter_map(|(p, m)| Some((parse_row("processes", "?", &p)?, m))).collect())
        })
    }

    /// Bounds metric history: drops samples older than `max_age_ms`, keeps one sample per
    /// minute for those older than `full_res_ms`, and at most `max_per_process` per process.
    pub fn prune_metrics(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        full_res_ms: u64,
        max_per_process: u32,
    ) -> Result<usize, StoreError> {
        let oldest = now_ms.saturating_sub(max_age_ms) as i64;
        let thin_before = now_ms.saturating_sub(full_res_ms) as i64;
        self.with(|c| {
            let mut n = c.execute("DELETE FROM metrics WHERE ts_ms < ?1", params![oldest])?;
            n += c.execute(
                "DELETE FROM metrics WHERE ts_ms < ?1 AND rowid NOT IN
                   (SELECT MIN(rowid) FROM metrics WHERE ts_ms < ?1 GROUP BY process_id, ts_ms / 60000)",
                params![thin_before],
            )?;
            n += c.execute(
                "DELETE FROM metrics WHERE rowid IN (
                   SELECT rowid FROM (SELECT rowid, ROW_NUMBER() OVER
                     (PARTITION BY process_id ORDER BY ts_ms DESC) AS rn FROM metrics) WHERE rn > ?1)",
                params![max_per_process],
            )?;
            Ok(n)
        })
    }

    /// Forgets processes that have been disconnected since before `cutoff` (RFC 3339), except
    /// those in `keep` (live links).
    pub fn delete_stale_processes(
        &self,
        cutoff: &str,
        keep: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let stale: Vec<String> = self
            .list_processes()?
            .into_iter()
            .filter(|p| !p.connected && p.last_seen.as_str() < cutoff && !keep.contains(&p.id))
            .map(|p| p.id)
            .collect();
        self.with(|c| {
            for id in &stale {
                c.execute("DELETE FROM processes WHERE id = ?1", params![id])?;
            }
            Ok(())
        })?;
        Ok(stale)
    }

    pub fn insert_audit(&self, a: &AuditRecord) -> Result<(), StoreError> {
        self.insert_audit_keeping(a, AUDIT_KEEP_ROWS).map(|_| ())
    }

    pub fn list_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.list_audit_page(None, limit)?.into_iter().map(|(_, a)| a).collect())
    }

    /// Inserts an audit entry and returns its sequence number; keeps the newest `keep` rows
    /// (the rest are deleted in batches, so a flood can't grow the table without bound).
    pub fn insert_audit_keeping(&self, a: &AuditRecord, keep: i64) -> Result<i64, StoreError> {
        let doc = serde_json::to_string(a)?;
        self.with(|c| {
            c.execute("INSERT INTO audit (ts, doc) VALUES (?1, ?2)", params![a.ts, doc])?;
            let seq = c.last_insert_rowid();
            // Every 100th insert trims: the cost of the DELETE is spread, and the table stays
            // within `keep + 100` rows.
            if seq % 100 == 0 {
                c.execute("DELETE FROM audit WHERE seq <= ?1", params![seq - keep.max(1)])?;
            }
            Ok(seq)
        })
    }

    /// Replaces the document of audit entry `seq` (an aggregated entry whose count grew).
    pub fn update_audit(&self, seq: i64, a: &AuditRecord) -> Result<(), StoreError> {
        let doc = serde_json::to_string(a)?;
        self.with(|c| {
            c.execute("UPDATE audit SET doc = ?2 WHERE seq = ?1", params![seq, doc])?;
            Ok(())
        })
    }

    /// Audit entries older than `before_seq` (all when `None`), newest first, with their
    /// sequence numbers (the pagination cursor).
    pub fn list_audit_page(&self, before_seq: Option<i64>, limit: u32) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT seq, doc FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2")?;
            let rows = st
                .query_map(params![before_seq.unwrap_or(i64::MAX), limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows.into_iter().filter_map(|(seq, d)| Some((seq, parse_row("audit", &seq.to_string(), &d)?))).collect())
        })
    }

    /// Processes in id order after `after_id`, at most `limit`, only of `apps` when given.
    /// Id order is stable while records change, so following pages never repeats or skips one.
    pub fn list_processes_page(
        &self,
        apps: Option<&[String]>,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProcessRecord>, StoreError> {
        let apps = apps_json(apps)?;
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, doc FROM processes WHERE id > ?1
                   AND (?2 IS NULL OR json_extract(doc, '$.app') IN (SELECT value FROM json_each(?2)))
                 ORDER BY id LIMIT ?3",
            )?;
            let rows = st
                .query_map(params![after_id.unwrap_or(""), apps, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows.iter().filter_map(|(id, d)| parse_row("processes", id, d)).collect())
        })
    }

    /// Artifacts newest first after `after` (a `(created_at, id)` of the previous page), at most
    /// `limit`, optionally of one process, only of `apps` when given.
    pub fn list_artifacts_page(
        &self,
        process_id: Option<&str>,
        apps: Option<&[String]>,
        after: Option<&ArtifactCursor>,
        limit: u32,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        let apps = apps_json(apps)?;
        // Without a cursor, start above every key: the comparison stays a range on the index.
        let (after_created, after_id) = after.map(|(c, i)| (c.as_str(), i.as_str())).unwrap_or(("\u{FFFF}", ""));
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, doc FROM artifacts
                 WHERE (?1 IS NULL OR process_id = ?1)
                   AND (?2 IS NULL OR json_extract(doc, '$.app') IN (SELECT value FROM json_each(?2)))
                   AND (created_at, id) < (?3, ?4)
                 ORDER BY created_at DESC, id DESC LIMIT ?5",
            )?;
            let rows = st
                .query_map(params![process_id, apps, after_created, after_id, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows.iter().filter_map(|(id, d)| parse_stored_row(id, d)).collect())
        })
    }

    /// Samples of a process in `range`, oldest first, after `after` (the `(ts_ms, rowid)` of the
    /// previous page's last sample), at most `limit`, each with its cursor.
    pub fn list_metrics_page(
        &self,
        process_id: &str,
        range: MetricRange,
        after: Option<MetricCursor>,
        limit: u32,
    ) -> Result<Vec<(MetricCursor, serde_json::Value)>, StoreError> {
        let (after_ts, after_row) = after.unwrap_or((i64::MIN, i64::MIN));
        // Both statements take the same parameters (`?7 = ?7`: the step, unused here).
        let every = "SELECT ts_ms, rowid, doc FROM metrics WHERE process_id = ?1 AND ts_ms >= ?2 AND ts_ms <= ?6
               AND (ts_ms, rowid) > (?3, ?4) AND ?7 = ?7
             ORDER BY ts_ms, rowid LIMIT ?5";
        // The first sample of each step (per-process history is bounded, so the inner scan is too).
        let stepped = "SELECT ts_ms, rowid, doc FROM metrics WHERE rowid IN (
                 SELECT MIN(rowid) FROM metrics WHERE process_id = ?1 AND ts_ms >= ?2 AND ts_ms <= ?6
                 GROUP BY ts_ms / ?7)
               AND (ts_ms, rowid) > (?3, ?4)
             ORDER BY ts_ms, rowid LIMIT ?5";
        let ms = |t: u64| t.min(i64::MAX as u64) as i64;
        self.with(|c| {
            let mut st = c.prepare(if range.step_ms > 1 { stepped } else { every })?;
            let rows = st
                .query_map(
                    params![
                        process_id,
                        ms(range.since_ms),
                        after_ts,
                        after_row,
                        limit,
                        ms(range.until_ms),
                        ms(range.step_ms.max(1))
                    ],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(ts, row, d)| Some(((ts, row), parse_row("metrics", process_id, &d)?)))
                .collect())
        })
    }

    // ---- operator tokens ----

    /// Stores a new token; `false` if one of that name exists (revoked ones keep their name).
    pub fn insert_token(&self, t: &TokenRow) -> Result<bool, StoreError> {
        let apps = serde_json::to_string(&t.apps)?;
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO tokens (name, hash, role, apps, created_at, expires_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                params![t.name, t.hash, t.role, apps, t.created_at, t.expires_at, t.revoked_at],
            )?;
            Ok(n == 1)
        })
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("{TOKEN_COLUMNS} ORDER BY name"))?;
            let rows = st.query_map([], token_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows.into_iter().flatten().collect())
        })
    }

    /// The token whose SHA-256 is `hash`, whatever its state (the caller checks it).
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        self.with(|c| {
            let row = c.query_row(&format!("{TOKEN_COLUMNS} WHERE hash = ?1"), params![hash], token_row).optional()?;
            Ok(row.flatten())
        })
    }

    /// Marks the token revoked (at `now`); `false` if there is no token of that name. Revoking
    /// twice keeps the first time.
    pub fn revoke_token(&self, name: &str, now: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
                params![name, now],
            )?;
            Ok(n == 1)
        })
    }
}

impl Store {
    // ---- autopilot rules ----

    /// Stores a new rule; `false` if one of that name exists.
    pub fn insert_rule(&self, name: &str, created_at: &str, doc: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO rules (name, created_at, doc) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![name, created_at, doc],
            )?;
            Ok(n == 1)
        })
    }

    /// Every rule's JSON document, oldest first.
    pub fn list_rules(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT name, doc FROM rules ORDER BY created_at, name")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Deletes a rule; `false` if there was none of that name.
    pub fn delete_rule(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM rules WHERE name = ?1", params![name])? == 1))
    }
}

const TOKEN_COLUMNS: &str = "SELECT name, hash, role, apps, created_at, expires_at, revoked_at FROM tokens";

/// A token row, or `None` (logged) if its apps column is damaged.
fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<TokenRow>> {
    let name: String = r.get(0)?;
    let apps: String = r.get(3)?;
    let Some(apps) = parse_row::<Vec<String>>("tokens", &name, &apps) else { return Ok(None) };
    Ok(Some(TokenRow {
        name,
        hash: r.get(1)?,
        role: r.get(2)?,
        apps,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    }))
}

/// The newest schema this build knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the database up to [`SCHEMA_VERSION`]; refuses one written by a newer hub.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: Option<u32> = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).optional()?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found: current, known: SCHEMA_VERSION });
    }
    for (version, step) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        match step {
            Sql(sql) => tx.execute_batch(sql)?,
            Code(run) => run(&tx)?,
        }
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", params![version])?;
        tx.commit()?;
        tracing::info!(version, "hub database migrated");
    }
    Ok(())
}

fn stored_doc(a: &ArtifactRecord) -> Result<String, StoreError> {
    Ok(serde_json::to_string(&StoredArtifact { record: a.clone(), upload_token: a.upload_token.clone() })?)
}

fn parse_stored(doc: &str) -> Result<ArtifactRecord, StoreError> {
    let s: StoredArtifact = serde_json::from_str(doc)?;
    let mut rec = s.record;
    rec.upload_token = s.upload_token;
    Ok(rec)
}

fn get_artifact_in(c: &Connection, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
    let doc: Option<String> =
        c.query_row("SELECT doc FROM artifacts WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
    Ok(doc.and_then(|d| parse_stored_row(id, &d)))
}

/// [`parse_stored`], or `None` (logged) for a damaged row.
fn parse_stored_row(id: &str, doc: &str) -> Option<ArtifactRecord> {
    match parse_stored(doc) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(table = "artifacts", key = id, error = %e, "store: skipping a row that does not parse");
            None
        }
    }
}

/// Current time as RFC 3339 with milliseconds (sorts lexically in time order).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Records for tests across the crate.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A pending heap snapshot artifact of `process`, upload token "tok".
    pub(crate) fn artifact(id: &str, process: &str) -> ArtifactRecord {
        ArtifactRecord::pending(id, (process, "orders"), "heap_snapshot", "heapsnapshot", "operator", "tok".into())
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::artifact;
    use super::*;

    #[test]
    fn artifacts_survive_reopen_with_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.db");
        {
            let s = Store::open(&path).expect("open");
            s.insert_artifact(&artifact("a1", "p1")).expect("insert");
            s.update_artifact_if("a1", |a| {
                a.status = ArtifactStatus::Ready;
                a.size = Some(10);
                true
            })
            .expect("update");
        }
        let s = Store::open(&path).expect("reopen");
        let a = s.get_artifact("a1").expect("get").expect("present");
        assert_eq!(a.status, ArtifactStatus::Ready);
        assert_eq!(a.size, Some(10));
        assert_eq!(a.upload_token, "tok");
        // The API form never carries the token.
        assert!(!serde_json::to_string(&a).expect("json").contains("tok"));
    }

    #[test]
    fn list_filters_unfinished_and_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("hub.db")).expect("open");
        s.insert_artifact(&artifact("a1", "p1")).expect("insert");
        s.insert_artifact(&artifact("a2", "p2")).expect("insert");
        s.update_artifact_if("a2", |a| {
            a.status = ArtifactStatus::Failed;
            true
        })
        .expect("update");
        assert_eq!(s.list_artifacts(None, false, 10).expect("list").len(), 2);
        let open = s.list_artifacts(None, true, 10).expect("list");
        assert_eq!(open.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec!["a1"]);
        assert_eq!(s.list_artifacts(Some("p2"), false, 10).expect("list").len(), 1);
        assert!(s.update_artifact_if("nope", |_| true).expect("update").is_none());
    }

    #[test]
    fn metrics_are_bounded_by_age_resolution_and_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("hub.db")).expect("open");
        let hour = 3_600_000u64;
        let now = 100 * hour;
        // One sample every 5 s for the last 3 hours.
        for i in 0..(3 * 720) {
            let ts = now - i * 5000;
            s.insert_metric("p1", ts, &serde_json::json!({ "ts": ts })).expect("insert");
        }
        s.prune_metrics(now, 2 * hour, hour, 100_000).expect("prune");
        let all = s.list_metrics("p1", 0, 100_000).expect("list");
        let ts: Vec<u64> = all.iter().map(|v| v["ts"].as_u64().expect("ts")).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert!(ts.iter().all(|t| *t >= now - 2 * hour), "nothing older than the max age");
        let recent = ts.iter().filter(|t| **t >= now - hour).count();
        let older = ts.len() - recent;
        assert!(recent >= 719, "full resolution for the last hour: {recent}");
        assert!((59..=61).contains(&older), "one per minute before: {older}");
        s.prune_metrics(now, 2 * hour, hour, 10).expect("prune");
        let kept = s.list_metrics("p1", 0, 1000).expect("list");
        assert_eq!(kept.len(), 10);
        assert_eq!(kept.last().and_then(|v| v["ts"].as_u64()), Some(now), "the newest are kept");
        assert_eq!(s.latest_metric("p1").expect("latest").and_then(|v| v["ts"].as_u64()), Some(now));
    }

    #[test]
    fn keyset_pages_cover_everything_once_even_with_equal_sort_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("hub.db")).expect("open");
        for i in 0..25 {
            let mut a = artifact(&format!("a{i:03}"), if i % 2 == 0 { "p1" } else { "p2" });
            a.created_at = format!("2026-01-01T00:00:0{}.000Z", i / 10); // ties on created_at
            if i % 5 == 0 {
                a.app = "payments".into();
            }
            s.insert_artifact(&a).expect("insert");
            s.insert_metric("p1", 1000 + (i / 3) as u64, &serde_json::json!({ "i": i })).expect("metric");
        }
        let mut seen = vec![];
        let mut after = None;
        loop {
            let page = s.list_artifacts_page(None, None, after.as_ref(), 7).expect("page");
            let Some(last) = page.last() else { break };
            after = Some((last.created_at.clone(), last.id.clone()));
            seen.extend(page.into_iter().map(|a| a.id));
        }
        let mut all: Vec<String> = (0..25).map(|i| format!("a{i:03}")).collect();
        all.sort_by(|a, b| b.cmp(a)); // newest (highest created_at, then id) first
        assert_eq!(seen, all);
        let scoped = s.list_artifacts_page(None, Some(&["payments".to_string()]), None, 100).expect("scoped");
        assert_eq!(scoped.len(), 5);
        assert!(scoped.iter().all(|a| a.app == "payments"));
        assert_eq!(s.list_artifacts_page(Some("p2"), None, None, 100).expect("of p2").len(), 12);

        let mut samples = vec![];
        let mut after = None;
        loop {
            let page = s
                .list_metrics_page("p1", MetricRange { since_ms: 0, until_ms: u64::MAX, step_ms: 0 }, after, 4)
                .expect("page");
            let Some((key, _)) = page.last() else { break };
            after = Some(*key);
            samples.extend(page.into_iter().map(|(_, v)| v["i"].as_i64().expect("i")));
        }
        assert_eq!(samples, (0..25).collect::<Vec<i64>>(), "oldest first, ties in insertion order, once each");
    }

    #[test]
    fn audit_is_listed_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("hub.db")).expect("open");
        for i in 0..3 {
            s.insert_audit(&AuditRecord {
                ts: now_rfc3339(),
                actor: "op".into(),
                action: format!("a{i}"),
                target: "t".into(),
                detail: serde_json::json!({}),
                result: "ok".into(),
            })
            .expect("audit");
        }
        let got = s.list_audit(2).expect("list");
        assert_eq!(got.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), vec!["a2", "a1"]);
    }
}
