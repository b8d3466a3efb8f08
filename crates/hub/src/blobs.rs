//! Artifact files on local disk under the data directory.
//!
//! Uploads land in `uploads/<id>.part` (so an interrupted upload resumes from its length) and
//! become `artifacts/<file name>` only after their size and SHA-256 check out, by an atomic
//! rename — a reader never sees a half-written artifact.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

pub struct BlobStore {
    artifacts: PathBuf,
    uploads: PathBuf,
}

impl BlobStore {
    pub fn open(data_dir: &Path) -> Result<Self, BlobError> {
        let artifacts = data_dir.join("artifacts");
        let uploads = data_dir.join("uploads");
        for d in [&artifacts, &uploads] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(crate::private_files::DIR_MODE)
                .create(d)
                .map_err(io_err(d))?;
        }
        Ok(Self { artifacts, uploads })
    }

    /// Where the partial upload of an artifact is kept. `id` must be validated by the caller.
    pub fn part_path(&self, id: &str) -> PathBuf {
        self.uploads.join(format!("{id}.part"))
    }

    /// Where a finished artifact lives. `file_name` is built by the hub from a validated id.
    pub fn final_path(&self, file_name: &str) -> PathBuf {
        self.artifacts.join(file_name)
    }

    /// Bytes of a partial upload already on disk (0 if none).
    pub async fn part_len(&self, id: &str) -> u64 {
        tokio::fs::metadata(self.part_path(id)).await.map(|m| m.len()).unwrap_or(0)
    }

    pub async fn discard_part(&self, id: &str) {
        let _ = tokio::fs::remove_file(self.part_path(id)).await;
    }

    /// [`BlobStore::discard_part`] for the hub's start, before the runtime serves anything.
    pub fn discard_part_now(&self, id: &str) {
        if let Err(e) = std::fs::remove_file(self.part_path(id)) {
            tracing::warn!(artifact = %id, error = %e, "cannot remove a stale partial upload");
        } else {
            tracing::info!(artifact = %id, "removed the partial upload of an artifact that ended");
        }
    }

    /// Ids of the partial uploads on disk (names that are no valid id are left alone).
    pub fn part_ids(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.uploads) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".part").map(str::to_string))
            .filter(|id| crate::ids::is_valid_id(id))
            .collect()
    }

    /// Verifies a complete upload and moves it into place atomically.
    pub async fn commit(&self, id: &str, file_name: &str, size: u64, sha256: &str) -> Result<(), BlobError> {
        let part = self.part_path(id);
        let actual = sha256_file(&part).await?;
        if actual.1 != size {
            return Err(BlobError::SizeMismatch { expected: size, actual: actual.1 });
        }
        if !actual.0.eq_ignore_ascii_case(sha256) {
            return Err(BlobError::ChecksumMismatch { expected: sha256.to_string(), actual: actual.0 });
        }
        let dest = self.final_path(file_name);
        tokio::fs::rename(&part, &dest).await.map_err(io_err(&dest))?;
        Ok(())
    }
}

/// SHA-256 (hex) and length of a file, read in a streaming way.
pub async fn sha256_file(path: &Path) -> Result<(String, u64), BlobError> {
    let mut f = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_checks_size_and_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::open(dir.path()).expect("open");
        tokio::fs::write(blobs.part_path("aa11"), b"hello").await.expect("write");
        let good = hex::encode(Sha256::digest(b"hello"));
        assert!(matches!(blobs.commit("aa11", "aa11.bin", 6, &good).await, Err(BlobError::SizeMismatch { .. })));
        assert!(matches!(
            blobs.commit("aa11", "aa11.bin", 5, &"0".repeat(64)).await,
            Err(BlobError::ChecksumMismatch { .. })
        ));
        assert_eq!(blobs.part_len("aa11").await, 5, "a failed commit keeps the part");
        blobs.commit("aa11", "aa11.bin", 5, &good).await.expect("commit");
        assert_eq!(tokio::fs::read(blobs.final_path("aa11.bin")).await.expect("read"), b"hello");
        assert_eq!(blobs.part_len("aa11").await, 0);
    }
}
