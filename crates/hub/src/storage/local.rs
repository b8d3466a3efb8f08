//! Artifact bytes on local disk under the data directory (the default store).
//!
//! Uploads land in `uploads/<id>.part` (so an interrupted upload resumes from its length) and
//! become `artifacts/<file name>` only after their size and SHA-256 check out, by an atomic
//! rename — a reader never sees a half-written artifact. Renders and analyses are cached as
//! files beside the artifact in `artifacts/`.

use super::{io_err, ByteStream, StorageError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub struct LocalStore {
    artifacts: PathBuf,
    uploads: PathBuf,
}

impl LocalStore {
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let artifacts = data_dir.join("artifacts");
        let uploads = data_dir.join("uploads");
        for d in [&artifacts, &uploads] {
            super::private_dir(d)?;
        }
        Ok(Self { artifacts, uploads })
    }

    /// Where the partial upload of an artifact is kept. `id` must be validated by the caller.
    pub fn part_path(&self, id: &str) -> PathBuf {
        self.uploads.join(format!("{id}.part"))
    }

    /// Where a stored object lives. `name` is built by the hub from a validated id.
    pub fn path(&self, name: &str) -> PathBuf {
        self.artifacts.join(name)
    }

    /// Bytes free for the hub on the file system of the data directory (statvfs).
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.artifacts.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a writable statvfs for the call to fill.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Bytes of a partial upload already on disk (0 if none).
    pub async fn part_len(&self, id: &str) -> u64 {
        tokio::fs::metadata(self.part_path(id)).await.map(|m| m.len()).unwrap_or(0)
    }

    pub async fn discard_part(&self, id: &str) {
        let _ = tokio::fs::remove_file(self.part_path(id)).await;
    }

    /// Opens (or resumes) the partial upload of `id`: a part longer than the announced size
    /// can't be the same upload and is dropped.
    pub async fn begin(&self, id: &str, size: u64) -> Result<PartWriter, StorageError> {
        let mut offset = self.part_len(id).await;
        if offset > size {
            self.discard_part(id).await;
            offset = 0;
        }
        let path = self.part_path(id);
        let file = crate::private_files::append_private_async(&path).await.map_err(io_err(&path))?;
        Ok(PartWriter { file, path, offset })
    }

    /// Verifies a complete upload and moves it into place atomically; a part that fails the
    /// check is removed (it can't be resumed into a good one).
    pub async fn commit(&self, part: PartWriter, file_name: &str, size: u64, sha256: &str) -> Result<(), StorageError> {
        let PartWriter { mut file, path, .. } = part;
        file.flush().await.map_err(io_err(&path))?;
        file.sync_all().await.map_err(io_err(&path))?;
        drop(file);
        let (actual, len) = sha256_file(&path).await?;
        let check = super::check_integrity(size, sha256, len, &actual);
        if check.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        check?;
        let dest = self.path(file_name);
        tokio::fs::rename(&path, &dest).await.map_err(io_err(&dest))?;
        Ok(())
    }

    /// Ids of the partial uploads on disk (names that are no valid id are left alone).
    pub fn part_ids(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.uploads) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".part").map(str::to_string))
            .filter(|id| crate::ids::is_valid_id(id))
            .collect()
    }

    /// Size of a stored object.
    pub async fn size(&self, name: &str) -> Result<u64, StorageError> {
        let path = self.path(name);
        Ok(tokio::fs::metadata(&path).await.map_err(io_err(&path))?.len())
    }

    /// `len` bytes of a stored object from `start`, streamed.
    pub async fn read(&self, name: &str, start: u64, len: u64) -> Result<ByteStream, StorageError> {
        let path = self.path(name);
        let mut file = tokio::fs::File::open(&path).await.map_err(io_err(&path))?;
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(io_err(&path))?;
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024)))
    }

    /// A small object (a cached render) whole, or `None` if there is none.
    pub async fn read_small(&self, name: &str) -> Option<Vec<u8>> {
        tokio::fs::read(self.path(name)).await.ok()
    }

    /// Writes a small object (a render, a sidecar) atomically, private.
    pub async fn write_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(name);
        let tmp = path.with_extension("tmp");
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            crate::private_files::create_private(&tmp, &bytes)?;
            std::fs::rename(&tmp, &p)
        })
        .await
        .map_err(|e| StorageError::Io { path: path.clone(), source: std::io::Error::other(e) })?
        .map_err(io_err(&path))
    }

    /// Removes a stored object; one that is already gone is no error.
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let path = self.path(name);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Names of the sidecars (`ID.json`) in the store.
    pub fn sidecars(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.artifacts) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.strip_suffix(".json").is_some_and(crate::ids::is_valid_id))
            .collect()
    }
}

/// The open partial file of one upload.
pub struct PartWriter {
    file: tokio::fs::File,
    path: PathBuf,
    offset: u64,
}

impl PartWriter {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Lets the last write land (tokio writes in the background), so the part's length is
    /// what the agent resumes from.
    pub async fn flush(&mut self) {
        if let Err(e) = self.file.flush().await {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot flush a partial upload");
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.file.write_all(data).await.map_err(io_err(&self.path))?;
        self.offset += data.len() as u64;
        Ok(())
    }
}

/// SHA-256 (hex) and length of a file, read in a streaming way.
pub async fn sha256_file(path: &Path) -> Result<(String, u64), StorageError> {
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
        let store = LocalStore::open(dir.path()).expect("open");
        let good = hex::encode(Sha256::digest(b"hello"));
        for (size, sha) in [(6, good.clone()), (5, "0".repeat(64))] {
            let mut part = store.begin("aa11", 5).await.expect("begin");
            part.write(b"hello").await.expect("write");
            assert!(store.commit(part, "aa11.bin", size, &sha).await.is_err());
            assert_eq!(store.part_len("aa11").await, 0, "a part that fails its check is removed");
        }
        let mut part = store.begin("aa11", 5).await.expect("begin");
        part.write(b"hel").await.expect("write");
        part.flush().await;
        drop(part);
        let mut part = store.begin("aa11", 5).await.expect("resume");
        assert_eq!(part.offset(), 3, "an interrupted upload resumes from its length");
        part.write(b"lo").await.expect("write");
        store.commit(part, "aa11.bin", 5, &good).await.expect("commit");
        assert_eq!(tokio::fs::read(store.path("aa11.bin")).await.expect("read"), b"hello");
        assert_eq!(store.part_len("aa11").await, 0);
        let mut body = store.read("aa11.bin", 1, 3).await.expect("read");
        let mut got = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            got.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(got, b"ell");
    }
}
