//! The audit trail: who did what, when, and how it ended — in the hub's database (for
//! `/api/audit`) and as JSON lines in `DATA_DIR/audit.log` (append-only, for log shipping).
//!
//! Both are bounded, so noise can't push real entries out or fill the disk: the table keeps
//! the newest `keep_rows` entries; `audit.log` is rotated to `audit.log.1` (one previous file
//! kept) once it passes `log_max_bytes`. Floods of failed logins arrive aggregated (one entry
//! per source and window whose counts grow, see [`Audit::record_aggregated`]).

use crate::store::{now_rfc3339, AuditRecord, Db, StoreError, AUDIT_KEEP_ROWS};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Audit {
    db: Db,
    log: Mutex<std::fs::File>,
    log_path: PathBuf,
    log_bytes: Mutex<u64>,
    keep_rows: i64,
    log_max_bytes: u64,
}

impl Audit {
    pub fn open(db: Db, data_dir: &Path) -> std::io::Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("audit.log"))?;
        Ok(Self {
            log_bytes: Mutex::new(log.metadata().map(|m| m.len()).unwrap_or(0)),
            db,
            log: Mutex::new(log),
            log_path: data_dir.join("audit.log"),
            keep_rows: AUDIT_KEEP_ROWS,
            log_max_bytes: 64 << 20,
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

    /// Records the first entry of an aggregate (e.g. failed logins of one source in one window)
    /// and returns its sequence number, for [`Audit::update_aggregated`] to update its counts.
    pub async fn record_aggregated(
        &self,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
        result: &str,
    ) -> Option<(i64, AuditRecord)> {
        let rec = entry(actor, action, "", detail, result);
        self.insert(rec.clone()).await.map(|seq| (seq, rec))
    }

    /// Updates an aggregated entry in the table; `to_log` also appends it to `audit.log` (for
    /// a milestone, e.g. the source was blocked — the log can't be changed in place).
    pub async fn update_aggregated(&self, seq: i64, rec: AuditRecord, to_log: bool) {
        if to_log {
            self.append_line(&rec);
        }
        if let Err(e) = self.db.run(move |s| s.update_audit(seq, &rec)).await {
            tracing::error!(error = %e, "audit: store update failed");
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
        self.db.run(move |s| s.list_audit(limit)).await
    }

    /// Entries older than `before_seq`, newest first, with their sequence numbers (cursors).
    pub async fn page(&self, before_seq: Option<i64>, limit: u32) -> Result<Vec<(i64, AuditRecord)>, StoreError> {
        self.db.run(move |s| s.list_audit_page(before_seq, limit)).await
    }
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
}
