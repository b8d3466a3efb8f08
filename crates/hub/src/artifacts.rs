//! The artifact lifecycle: every change of an artifact's state is one named [`Transition`] that
//! checks where it starts from before anything is written.
//!
//! ```text
//! pending ──accepted──▶ running ──captured──▶ uploading ──stored──▶ ready
//!    │                     │                     ▲   │
//!    │                     └──upload_started─────┘   │
//!    └──refused──▶ failed ◀──failed (from any unfinished state)
//!
//! ready | failed ──deleted──▶ deleted      (admin or retention: the bytes go, the record stays)
//! pin / unpin: any state but deleted (retention keeps pinned artifacts)
//! ```
//!
//! A transition that doesn't fit the current state is refused with a [`TransitionError`] and
//! the record is left as it was: a late upload can't revive a failed artifact, a second
//! result can't overwrite a stored one, and a message from another process changes nothing.

use crate::storage::Storage;
use crate::store::{ArtifactRecord, ArtifactStatus, Db, StoreError};

pub use crate::upload_tokens::{hash_upload_token, upload_token_matches};

/// One named change of an artifact.
#[derive(Debug, Clone)]
pub enum Transition {
    /// The agent took the command (a heap snapshot: after its memory preflight).
    Accepted { estimate: Option<serde_json::Value> },
    /// The agent refused the command.
    Refused { error: String, estimate: Option<serde_json::Value> },
    /// A progress report while capturing.
    Progress { progress: serde_json::Value },
    /// The capture is complete on the agent; its upload follows.
    Captured { size: u64, sha256: String, notes: Vec<String> },
    /// An upload stream opened (or resumed at `offset`).
    UploadStarted { size: u64, sha256: String, offset: u64 },
    /// Bytes received so far on the upload stream.
    UploadProgress { offset: u64 },
    /// The upload checked out (size and checksum) and the file is in place.
    Stored { size: u64 },
    /// The artifact will not complete.
    Failed { error: String },
    /// Retention keeps it however old (`true`), or may delete it again (`false`).
    Pin { pinned: bool },
    /// Its bytes are being deleted, by `by` (a token's name, `retention`) for `reason`.
    Delete { by: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no such artifact")]
    NotFound,
    #[error("the artifact belongs to another process")]
    WrongProcess,
    #[error("cannot {transition} an artifact that is {status}")]
    NotAllowed { transition: &'static str, status: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Transition {
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Accepted { .. } => "accept",
            Transition::Refused { .. } => "refuse",
            Transition::Progress { .. } => "report progress on",
            Transition::Captured { .. } => "mark captured",
            Transition::UploadStarted { .. } => "start an upload of",
            Transition::UploadProgress { .. } => "record upload progress on",
            Transition::Stored { .. } => "store",
            Transition::Failed { .. } => "fail",
            Transition::Pin { pinned: true } => "pin",
            Transition::Pin { pinned: false } => "unpin",
            Transition::Delete { .. } => "delete",
        }
    }

    /// The states this transition may start from.
    fn allowed_from(&self, status: ArtifactStatus) -> bool {
        use ArtifactStatus::*;
        match self {
            Transition::Accepted { .. } | Transition::Refused { .. } => status == Pending,
            Transition::Progress { .. } => matches!(status, Pending | Running),
            // A result may overtake its ack on a busy link, and the upload (its own connection)
            // may overtake the result.
            Transition::Captured { .. } => matches!(status, Pending | Running | Uploading),
            // The agent may upload before the hub saw its ack or result (they travel on the
            // control link, the upload on its own; the result can be lost across a hub
            // restart), or resume an upload. The one-time token proves the upload is the agent's.
            Transition::UploadStarted { .. } => matches!(status, Pending | Running | Uploading),
            Transition::UploadProgress { .. } | Transition::Stored { .. } => status == Uploading,
            Transition::Failed { .. } => !status.is_final(),
            Transition::Pin { .. } => status != Deleted,
            // An artifact in flight is the agent's until it ends (then it can be deleted).
            Transition::Delete { .. } => matches!(status, Ready | Failed),
        }
    }

    fn apply(self, a: &mut ArtifactRecord) {
        match self {
            Transition::Accepted { estimate } => {
                a.status = ArtifactStatus::Running;
                a.estimate = estimate;
            }
            Transition::Refused { error, estimate } => {
                a.status = ArtifactStatus::Failed;
                a.error = Some(error);
                a.estimate = estimate;
            }
            Transition::Progress { progress } => a.progress = Some(progress),
            Transition::Captured { size, sha256, notes } => {
                a.status = ArtifactStatus::Uploading;
                a.size = Some(size);
                a.sha256 = Some(sha256);
                a.notes = notes;
            }
            Transition::UploadStarted { size, sha256, offset } => {
                a.status = ArtifactStatus::Uploading;
                a.size = Some(size);
                a.sha256 = Some(sha256);
                a.uploaded_bytes = offset;
            }
            Transition::UploadProgress { offset } => a.uploaded_bytes = offset,
            Transition::Stored { size } => {
                a.status = ArtifactStatus::Ready;
                a.error = None;
                a.uploaded_bytes = size;
            }
            Transition::Failed { error } => {
                a.status = ArtifactStatus::Failed;
                a.error = Some(error);
            }
            Transition::Pin { pinned } => a.pinned = pinned,
            Transition::Delete { by, reason } => {
                a.status = ArtifactStatus::Deleted;
                a.deleted_by = Some(by);
                a.deleted_reason = Some(reason);
            }
        }
    }
}

/// The artifacts: their records (every state change through a [`Transition`]) and their bytes
/// ([`Storage`]). Only this module writes artifact records.
pub struct Artifacts {
    db: Db,
    storage: Storage,
    /// Upload streams in progress, one per artifact.
    pub uploads: UploadSlots,
}

impl Artifacts {
    pub fn new(db: Db, storage: Storage) -> Self {
        Self { db, storage, uploads: UploadSlots::default() }
    }

    /// Removes the partial uploads (`.part` files, S3 multipart uploads) of artifacts that
    /// ended or are unknown: run at start, before agents are served.
    pub async fn discard_stale_uploads(&self) -> Result<(), StoreError> {
        for id in self.storage.upload_ids() {
            let ended = self.get(&id).await?.is_none_or(|a| a.status.is_final());
            if ended {
                self.storage.discard_upload(&id).await;
                tracing::info!(artifact = %id, "removed the partial upload of an artifact that ended");
            }
        }
        Ok(())
    }

    /// Where artifact bytes live (partial uploads, stored objects, renders beside them).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Writes the sidecar of `a` (`ID.json`, its record without the upload token) beside its
    /// bytes, so that the store alone can rebuild the index (`perf-hub reindex`). A sidecar
    /// that can't be written is logged: the artifact itself is fine.
    pub async fn write_sidecar(&self, a: &ArtifactRecord) {
        let mut record = a.clone();
        record.upload_token = String::new();
        let bytes = match serde_json::to_vec(&record) {
            Ok(b) => b,
            Err(e) => return tracing::warn!(artifact = %a.id, error = %e, "cannot encode the sidecar"),
        };
        if let Err(e) = self.storage.write_small(&crate::storage::sidecar_name(&a.id), bytes).await {
            tracing::warn!(artifact = %a.id, error = %e, "cannot write the sidecar");
        }
    }

    /// When this hub first applied retention (recorded now if never; see [`crate::retention`]).
    pub async fn retention_since(&self) -> Result<std::time::SystemTime, StoreError> {
        let now = crate::store::now_rfc3339();
        let since = self.db.run(move |s| s.setting_or_insert("retention_since", &now)).await?;
        Ok(humantime::parse_rfc3339_weak(&since).unwrap_or_else(|_| std::time::SystemTime::now()))
    }

    /// Why a capture of about `bytes` (`None`: not known yet) can't be stored now, if it can't:
    /// the local store's free space (less `reserve`, kept for `hub.db` and the audit log) or
    /// the retention cap, which pinned artifacts alone may already fill.
    pub async fn capacity_refusal(&self, bytes: Option<u64>, reserve: u64, cap: Option<u64>) -> Option<String> {
        let need = bytes.unwrap_or(0);
        let mb = |b: u64| b / (1 << 20);
        if let Some(free) = self.storage.free_bytes() {
            if free < need.saturating_add(reserve) {
                return Some(format!(
                    "no space: the hub's storage has {} MiB free, the capture needs about {} MiB (+{} MiB kept free)",
                    mb(free),
                    mb(need),
                    mb(reserve)
                ));
            }
        }
        let cap = cap?;
        let pinned: u64 = match self.list(None, false, u32::MAX).await {
            Ok(all) => {
                all.iter().filter(|a| a.pinned && a.status == ArtifactStatus::Ready).filter_map(|a| a.size).sum()
            }
            Err(_) => 0,
        };
        (pinned.saturating_add(need) > cap).then(|| {
            format!(
                "over the retention cap: {} MiB pinned + about {} MiB for this capture exceed --retain-max-gb ({} MiB)",
                mb(pinned),
                mb(need),
                mb(cap)
            )
        })
    }

    /// Records a new artifact (status `pending`).
    pub async fn create(&self, a: ArtifactRecord) -> Result<(), StoreError> {
        self.db.run(move |s| s.insert_artifact(&a)).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        let id = id.to_string();
        self.db.run(move |s| s.get_artifact(&id)).await
    }

    /// Artifacts, newest first, optionally of one process or not yet final.
    pub async fn list(
        &self,
        process_id: Option<&str>,
        only_unfinished: bool,
        limit: u32,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        let process_id = process_id.map(str::to_string);
        self.db.run(move |s| s.list_artifacts(process_id.as_deref(), only_unfinished, limit)).await
    }

    /// A page of artifacts, newest first, after `after` (the API's keyset pagination), optionally
    /// of one process, only of `apps` when given.
    pub async fn page(
        &self,
        process_id: Option<String>,
        apps: Option<Vec<String>>,
        after: Option<crate::store::ArtifactCursor>,
        limit: u32,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        self.db.run(move |s| s.list_artifacts_page(process_id.as_deref(), apps.as_deref(), after.as_ref(), limit)).await
    }

    /// Applies `t` to artifact `id` if it starts from an allowed state; `process_id`, when
    /// given, must own the artifact (messages from agents). Returns the new record.
    pub async fn transition(
        &self,
        id: &str,
        process_id: Option<&str>,
        t: Transition,
    ) -> Result<ArtifactRecord, TransitionError> {
        let (id, owner) = (id.to_string(), process_id.map(str::to_string));
        self.db
            .run(move |s| {
                let mut refusal = None;
                let updated = s.update_artifact_if(&id, |a| {
                    if owner.as_deref().is_some_and(|p| p != a.process_id) {
                        refusal = Some(TransitionError::WrongProcess);
                        return false;
                    }
                    if !t.allowed_from(a.status) {
                        refusal = Some(TransitionError::NotAllowed { transition: t.name(), status: a.status.as_str() });
                        return false;
                    }
                    t.clone().apply(a);
                    true
                })?;
                Ok(match (updated, refusal) {
                    (_, Some(e)) => Err(e),
                    (Some(a), None) => Ok(a),
                    (None, None) => Err(TransitionError::NotFound),
                })
            })
            .await?
    }

    /// [`Artifacts::transition`], logging a refusal or a store error instead of returning it: for
    /// callers (agent messages, housekeeping) whose only answer to a refusal is to ignore it.
    pub async fn transition_or_log(&self, id: &str, process_id: Option<&str>, t: Transition) -> Option<ArtifactRecord> {
        let name = t.name();
        match self.transition(id, process_id, t).await {
            Ok(a) => Some(a),
            Err(TransitionError::Store(e)) => {
                tracing::error!(artifact = %id, error = %e, "store: cannot {name} artifact");
                None
            }
            Err(e) => {
                tracing::debug!(artifact = %id, reason = %e, "artifact transition refused");
                None
            }
        }
    }

    /// Fails one artifact with `error`, unless it has already ended; its partial upload, which
    /// can no longer complete, is removed.
    pub async fn fail(&self, id: &str, error: &str) {
        let failed = Transition::Failed { error: error.to_string() };
        if self.transition_or_log(id, None, failed).await.is_some() {
            tracing::warn!(artifact = %id, error, "artifact failed");
            if self.uploads.is_free(id) {
                self.storage.discard_upload(id).await;
            }
        }
    }

    /// Deletes artifact `id` (see [`Transition::Delete`]): the record turns `deleted` first, then
    /// its bytes, renders and analysis go; its sidecar stays, saying it was deleted (so a
    /// reindex doesn't bring it back). Bytes that can't be removed are logged; the record
    /// already says the artifact is gone.
    pub async fn delete(&self, id: &str, by: &str, reason: &str) -> Result<ArtifactRecord, TransitionError> {
        let t = Transition::Delete { by: by.to_string(), reason: reason.to_string() };
        let a = self.transition(id, None, t).await?;
        let mut names = vec![a.file_name.clone(), format!("{id}.svg"), format!("{id}.analysis.json")];
        names.extend(self.diff_caches_of(&a).await);
        for name in names {
            if let Err(e) = self.storage.delete(&name).await {
                tracing::warn!(artifact = %id, error = %e, "cannot delete the bytes of a deleted artifact");
            }
        }
        self.write_sidecar(&a).await;
        Ok(a)
    }

    /// The cached diffs `a` may be part of (`diff-A-B.json`, see `analysis::diff`): a diff is
    /// only between snapshots of one process, so its other heap snapshots name them all.
    async fn diff_caches_of(&self, a: &ArtifactRecord) -> Vec<String> {
        if a.kind != "heap_snapshot" {
            return Vec::new();
        }
        let others = self.list(Some(&a.process_id), false, 10_000).await.unwrap_or_default();
        let others = others.into_iter().filter(|o| o.kind == "heap_snapshot" && o.id != a.id);
        others.flat_map(|o| [format!("diff-{}-{}.json", o.id, a.id), format!("diff-{}-{}.json", a.id, o.id)]).collect()
    }

    /// Fails the unfinished artifacts of a process that `which` selects.
    pub async fn fail_unfinished(&self, process_id: &str, error: &str, which: impl Fn(&ArtifactRecord) -> bool) {
        let Ok(open) = self.list(Some(process_id), true, 1000).await else { return };
        for a in open.iter().filter(|a| which(a)) {
            self.fail(&a.id, error).await;
        }
    }
}

/// At most one upload stream per artifact: a second stream with the same token would append to
/// the same partial file.
#[derive(Default)]
pub struct UploadSlots(std::sync::Mutex<std::collections::HashSet<String>>);

/// An artifact's upload slot, released when dropped.
pub struct UploadSlot<'a> {
    slots: &'a UploadSlots,
    id: String,
}

impl UploadSlots {
    /// The slot of `id`, or `None` while another stream holds it.
    pub fn claim(&self, id: &str) -> Option<UploadSlot<'_>> {
        let mut held = self.0.lock().ok()?;
        held.insert(id.to_string()).then(|| UploadSlot { slots: self, id: id.to_string() })
    }
}

impl UploadSlots {
    /// Whether no stream holds `id` now (its partial file may be removed).
    pub fn is_free(&self, id: &str) -> bool {
        self.0.lock().map(|held| !held.contains(id)).unwrap_or(false)
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.slots.0.lock() {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_support::artifact, Store};

    async fn with(status: ArtifactStatus) -> (tempfile::TempDir, Artifacts) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("hub.db")).expect("store");
        let mut a = artifact("a1", "p1");
        a.status = status;
        store.insert_artifact(&a).expect("insert");
        let storage = Storage::open(dir.path(), None).expect("storage");
        (dir, Artifacts::new(Db::new(store), storage))
    }

    async fn status(arts: &Artifacts) -> ArtifactStatus {
        arts.get("a1").await.expect("get").expect("present").status
    }

    #[tokio::test]
    async fn the_happy_path_runs_in_order() {
        let (_d, s) = with(ArtifactStatus::Pending).await;
        s.transition("a1", Some("p1"), Transition::Accepted { estimate: None }).await.expect("accept");
        s.transition("a1", Some("p1"), Transition::Captured { size: 5, sha256: "ab".into(), notes: vec![] })
            .await
            .expect("capture");
        s.transition("a1", None, Transition::UploadStarted { size: 5, sha256: "ab".into(), offset: 0 })
            .await
            .expect("upload");
        s.transition("a1", None, Transition::UploadProgress { offset: 3 }).await.expect("progress");
        let a = s.transition("a1", None, Transition::Stored { size: 5 }).await.expect("stored");
        assert_eq!((a.status, a.uploaded_bytes), (ArtifactStatus::Ready, 5));
    }

    #[tokio::test]
    async fn a_late_upload_cannot_revive_a_failed_artifact() {
        let (_d, s) = with(ArtifactStatus::Failed).await;
        let e = s
            .transition("a1", None, Transition::UploadStarted { size: 5, sha256: "ab".into(), offset: 0 })
            .await
            .unwrap_err();
        assert!(matches!(e, TransitionError::NotAllowed { status: "failed", .. }), "{e}");
        assert!(s.transition("a1", None, Transition::Stored { size: 5 }).await.is_err());
        assert_eq!(status(&s).await, ArtifactStatus::Failed);
    }

    #[tokio::test]
    async fn a_stored_artifact_stays_ready() {
        let (_d, s) = with(ArtifactStatus::Ready).await;
        assert!(s.transition("a1", Some("p1"), Transition::Failed { error: "late".into() }).await.is_err());
        let again = Transition::Captured { size: 1, sha256: "x".into(), notes: vec![] };
        assert!(s.transition("a1", Some("p1"), again).await.is_err());
        assert_eq!(status(&s).await, ArtifactStatus::Ready);
    }

    #[tokio::test]
    async fn messages_from_another_process_change_nothing() {
        let (_d, s) = with(ArtifactStatus::Pending).await;
        let e = s.transition("a1", Some("p2"), Transition::Accepted { estimate: None }).await.unwrap_err();
        assert!(matches!(e, TransitionError::WrongProcess));
        assert_eq!(status(&s).await, ArtifactStatus::Pending);
    }

    #[tokio::test]
    async fn an_ack_after_the_result_is_refused() {
        let (_d, s) = with(ArtifactStatus::Uploading).await;
        let refused = Transition::Refused { error: "x".into(), estimate: None };
        assert!(s.transition("a1", Some("p1"), refused).await.is_err());
        assert_eq!(status(&s).await, ArtifactStatus::Uploading);
    }

    #[test]
    fn one_upload_stream_per_artifact() {
        let slots = UploadSlots::default();
        let first = slots.claim("a1").expect("free");
        assert!(slots.claim("a1").is_none(), "a second concurrent upload is refused");
        assert!(slots.claim("a2").is_some());
        drop(first);
        assert!(slots.claim("a1").is_some(), "released when the stream ends");
    }

    #[test]
    fn upload_tokens_are_kept_hashed_and_older_plain_ones_still_match() {
        let stored = hash_upload_token("t0ken");
        assert!(!stored.contains("t0ken"));
        assert!(upload_token_matches(&stored, "t0ken"));
        assert!(!upload_token_matches(&stored, "t0kem"));
        assert!(!upload_token_matches(&stored, &stored), "the hash itself is no token");
        assert!(upload_token_matches("legacy-plain", "legacy-plain"));
        assert!(!upload_token_matches("", ""));
    }

    #[tokio::test]
    async fn only_an_ended_artifact_can_be_deleted_and_a_deleted_one_stays_deleted() {
        let (_d, s) = with(ArtifactStatus::Uploading).await;
        let delete = || Transition::Delete { by: "token:ops".into(), reason: "r".into() };
        assert!(s.transition("a1", None, delete()).await.is_err(), "an upload in flight is the agent's");
        s.transition("a1", None, Transition::Stored { size: 5 }).await.expect("stored");
        s.transition("a1", None, Transition::Pin { pinned: true }).await.expect("pin");
        let a = s.transition("a1", None, delete()).await.expect("delete");
        assert_eq!((a.status, a.deleted_by.as_deref(), a.pinned), (ArtifactStatus::Deleted, Some("token:ops"), true));
        assert!(s.transition("a1", None, Transition::Pin { pinned: false }).await.is_err());
        assert!(s.transition("a1", None, delete()).await.is_err());
        assert!(s.transition("a1", None, Transition::Failed { error: "x".into() }).await.is_err());
    }

    #[tokio::test]
    async fn an_unknown_artifact_is_not_found() {
        let (_d, s) = with(ArtifactStatus::Pending).await;
        let r = s.transition("zz", None, Transition::Failed { error: "x".into() }).await;
        assert!(matches!(r, Err(TransitionError::NotFound)));
    }
}
