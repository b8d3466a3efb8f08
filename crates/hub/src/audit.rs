//! The audit trail: who did what, when, and how it ended — in the hub's database (for
//! `/api/audit`) and as JSON lines in `DATA_DIR/audit.log` (append-only, for log shipping).

use crate::store::{now_rfc3339, AuditRecord, Db, StoreError};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub struct Audit {
    db: Db,
    log: Mutex<std::fs::File>,
}

impl Audit {
    pub fn open(db: Db, data_dir: &Path) -> std::io::Result<Self> {
        // 0600: the audit trail names operators, apps and artifacts (issue 11, finding 3).
        let log = crate::private_files::append_private(&data_dir.join("audit.log"))?;
        Ok(Self { db, log: Mutex::new(log) })
    }

    /// Records one action. Failures to record are logged, never returned: an action must not
    /// fail because its audit line could not be written, but the operator log says so.
    pub async fn record(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value, result: &str) {
        let rec = AuditRecord {
            ts: now_rfc3339(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail,
            result: result.to_string(),
        };
        tracing::info!(actor, action, target, result, "audit");
        if let (Ok(mut log), Ok(line)) = (self.log.lock(), serde_json::to_string(&rec)) {
            if let Err(e) = writeln!(log, "{line}") {
                tracing::error!(error = %e, "audit: log write failed");
            }
        }
        if let Err(e) = self.db.run(move |s| s.insert_audit(&rec)).await {
            tracing::error!(error = %e, "audit: store write failed");
        }
    }

    /// The newest `limit` entries, newest first.
    pub async fn list(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.db.run(move |s| s.list_audit(limit)).await
    }
}
