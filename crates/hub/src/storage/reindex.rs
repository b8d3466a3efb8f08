//! `perf-hub reindex`: rebuilds the artifact index of a lost `hub.db` from the store.
//!
//! Every stored artifact has a sidecar `ID.json` beside it (its record, without the upload
//! token; rewritten when it is deleted). A sidecar rather than S3 object metadata: it works the
//! same on local disk and on every S3-compatible store (metadata headers are size-limited — 2 KB
//! on S3 — and some stores drop or rename them), it can be updated without copying a multi-GB
//! object, and it can be read and backed up with any tool.

use super::{Storage, StorageError};
use crate::store::{ArtifactRecord, ArtifactStatus, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a reindex did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Records put back into `hub.db`.
    pub restored: usize,
    /// Sidecars of artifacts `hub.db` already knows (left as they are).
    pub known: usize,
    /// Sidecars that don't parse, or whose artifact bytes are missing (skipped, logged).
    pub skipped: usize,
}

/// Restores into `store` the records of every sidecar in `storage` that `store` doesn't have.
pub async fn reindex(storage: &Storage, store: &Store) -> Result<Report, ReindexError> {
    let mut report = Report::default();
    for name in storage.sidecars().await? {
        let Some(record) = read_sidecar(storage, &name).await else {
            tracing::warn!(sidecar = %name, "skipped: unreadable sidecar");
            report.skipped += 1;
            continue;
        };
        if store.get_artifact(&record.id)?.is_some() {
            report.known += 1;
            continue;
        }
        if record.status == ArtifactStatus::Ready && storage.size(&record.file_name).await.is_err() {
            tracing::warn!(artifact = %record.id, "skipped: its bytes are missing from the store");
            report.skipped += 1;
            continue;
        }
        store.insert_artifact(&record)?;
        report.restored += 1;
    }
    Ok(report)
}

async fn read_sidecar(storage: &Storage, name: &str) -> Option<ArtifactRecord> {
    let bytes = storage.read_small(name).await?;
    let record: ArtifactRecord = serde_json::from_slice(&bytes).ok()?;
    // The name is the id: a sidecar can't speak for another artifact.
    (name == super::sidecar_name(&record.id) && crate::ids::is_valid_id(&record.id)).then_some(record)
}
