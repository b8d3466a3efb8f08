//! Where artifact bytes live: local disk under `--data-dir` (the default, [`local`]) or an
//! S3-compatible object store (`--storage s3://BUCKET[/PREFIX]`, [`s3`]). Metadata stays in
//! `hub.db`; each stored artifact also has a sidecar `ID.json` beside it (its record), so the
//! bucket alone can rebuild the index.
//!
//! Both stores give the same guarantees: an upload becomes a readable object only after its
//! size and SHA-256 checked out; reads stream (any byte range); renders and analyses are cached
//! as small objects beside the artifact.

pub mod local;
pub mod reindex;
pub mod s3;

use futures_util::Stream;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// A stored object's bytes, as they come.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("object store: {what}: {source}")]
    Store { what: String, source: Box<object_store::Error> },
    #[error("{0}")]
    Config(String),
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
}

impl StorageError {
    /// The bytes were wrong (the agent may retry), as opposed to the store failing.
    pub fn is_integrity(&self) -> bool {
        matches!(self, StorageError::SizeMismatch { .. } | StorageError::ChecksumMismatch { .. })
    }

    /// The store has no room left.
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(libc::EDQUOT)
            }
            _ => false,
        }
    }

    /// What an artifact that failed on this error says.
    pub fn reason(&self) -> String {
        if self.is_no_space() {
            "no space left in the hub's storage for this artifact".into()
        } else {
            format!("the hub could not store the artifact: {self}")
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

fn private_dir(d: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(crate::private_files::DIR_MODE).create(d).map_err(io_err(d))
}

fn check_integrity(size: u64, sha256: &str, actual_len: u64, actual_sha: &str) -> Result<(), StorageError> {
    if actual_len != size {
        return Err(StorageError::SizeMismatch { expected: size, actual: actual_len });
    }
    if !actual_sha.eq_ignore_ascii_case(sha256) {
        return Err(StorageError::ChecksumMismatch { expected: sha256.to_string(), actual: actual_sha.to_string() });
    }
    Ok(())
}

/// The artifact store of a hub.
pub enum Storage {
    Local(local::LocalStore),
    S3(s3::S3Store),
}

/// The sidecar of artifact `id`: its record, beside its bytes.
pub fn sidecar_name(id: &str) -> String {
    format!("{id}.json")
}

impl Storage {
    /// Local disk under `data_dir`, or the object store `url` (`s3://BUCKET[/PREFIX]`).
    pub fn open(data_dir: &Path, url: Option<&str>) -> Result<Self, StorageError> {
        match url {
            None => Ok(Storage::Local(local::LocalStore::open(data_dir)?)),
            Some(url) => Ok(Storage::S3(s3::S3Store::open(data_dir, url)?)),
        }
    }

    /// The local-disk store, if this is one (tests look at its files).
    pub fn local(&self) -> Option<&local::LocalStore> {
        match self {
            Storage::Local(l) => Some(l),
            Storage::S3(_) => None,
        }
    }

    /// Bytes the store can still take: free space of the data dir's file system on local disk;
    /// `None` (unknown, unbounded) for an object store.
    pub fn free_bytes(&self) -> Option<u64> {
        match self {
            Storage::Local(l) => l.free_bytes(),
            Storage::S3(_) => None,
        }
    }

    /// Where the bytes go, for log lines.
    pub fn describe(&self) -> String {
        match self {
            Storage::Local(_) => "local disk".into(),
            Storage::S3(s) => s.url().to_string(),
        }
    }

    /// Checks that the store answers with the configured credentials (a no-op on local disk).
    pub async fn probe(&self) -> Result<(), StorageError> {
        match self {
            Storage::Local(_) => Ok(()),
            Storage::S3(s) => s.probe().await,
        }
    }

    /// Opens the upload of `id` into `file_name`: resumed at its length on local disk, from 0
    /// (a stale multipart aborted) on S3.
    pub async fn begin_upload(&self, id: &str, file_name: &str, size: u64) -> Result<Upload, StorageError> {
        match self {
            Storage::Local(l) => Ok(Upload::Local(l.begin(id, size).await?)),
            Storage::S3(s) => Ok(Upload::S3(s.begin(id, file_name).await?)),
        }
    }

    /// Verifies a complete upload (size, SHA-256) and makes it the stored artifact. Whatever
    /// fails, the partial data is gone afterwards (a bad part can't be resumed into a good one).
    pub async fn commit_upload(
        &self,
        upload: Upload,
        file_name: &str,
        size: u64,
        sha256: &str,
    ) -> Result<(), StorageError> {
        match (self, upload) {
            (Storage::Local(l), Upload::Local(p)) => l.commit(p, file_name, size, sha256).await,
            (_, Upload::S3(w)) => w.commit(size, sha256).await,
            (Storage::S3(_), Upload::Local(_)) => Err(StorageError::Config("upload of another store".into())),
        }
    }

    /// Drops the partial data of `id` (a `.part` file, or a multipart upload).
    pub async fn discard_upload(&self, id: &str) {
        match self {
            Storage::Local(l) => l.discard_part(id).await,
            Storage::S3(s) => s.discard_upload(id).await,
        }
    }

    /// Ids with partial upload data on this hub.
    pub fn upload_ids(&self) -> Vec<String> {
        match self {
            Storage::Local(l) => l.part_ids(),
            Storage::S3(s) => s.upload_ids(),
        }
    }

    pub async fn size(&self, name: &str) -> Result<u64, StorageError> {
        match self {
            Storage::Local(l) => l.size(name).await,
            Storage::S3(s) => s.size(name).await,
        }
    }

    /// `len` bytes of object `name` from `start`.
    pub async fn read(&self, name: &str, start: u64, len: u64) -> Result<ByteStream, StorageError> {
        match self {
            Storage::Local(l) => l.read(name, start, len).await,
            Storage::S3(s) => s.read(name, start, len).await,
        }
    }

    /// A small object (a cached render, a sidecar) whole; `None` if absent or unreadable.
    pub async fn read_small(&self, name: &str) -> Option<Vec<u8>> {
        match self {
            Storage::Local(l) => l.read_small(name).await,
            Storage::S3(s) => s.read_small(name).await,
        }
    }

    pub async fn write_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        match self {
            Storage::Local(l) => l.write_small(name, bytes).await,
            Storage::S3(s) => s.write_small(name, bytes).await,
        }
    }

    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        match self {
            Storage::Local(l) => l.delete(name).await,
            Storage::S3(s) => s.delete(name).await,
        }
    }

    /// A file with the bytes of object `name` for readers that need one: the stored file itself
    /// on local disk; a private temporary copy in `DATA_DIR/cache/` from S3, removed on drop.
    pub async fn local_file(&self, name: &str) -> Result<LocalFile, StorageError> {
        match self {
            Storage::Local(l) => Ok(LocalFile { path: l.path(name), temporary: false }),
            Storage::S3(s) => Ok(LocalFile { path: s.fetch_to_cache(name).await?, temporary: true }),
        }
    }

    /// Names of the sidecars in the store (for `perf-hub reindex`).
    pub async fn sidecars(&self) -> Result<Vec<String>, StorageError> {
        match self {
            Storage::Local(l) => Ok(l.sidecars()),
            Storage::S3(s) => s.sidecars().await,
        }
    }
}

/// An upload in progress.
pub enum Upload {
    Local(local::PartWriter),
    S3(s3::MultipartWriter),
}

impl Upload {
    /// Bytes already received (where the agent continues).
    pub fn offset(&self) -> u64 {
        match self {
            Upload::Local(p) => p.offset(),
            Upload::S3(w) => w.offset(),
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        match self {
            Upload::Local(p) => p.write(data).await,
            Upload::S3(w) => w.write(data).await,
        }
    }

    /// Ends an upload that broke off: a `.part` stays (the agent resumes from its length), a
    /// multipart is aborted (the agent starts over; S3 can't resume the hash).
    pub async fn suspend(self) {
        match self {
            Upload::Local(mut p) => p.flush().await,
            Upload::S3(w) => w.abort().await,
        }
    }
}

/// A local file holding an object's bytes (see [`Storage::local_file`]).
pub struct LocalFile {
    path: PathBuf,
    temporary: bool,
}

impl LocalFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A `Range` that starts past the end of the object (answered 416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A byte range of an object of `size` bytes, from an HTTP `Range` header (one range of
/// `bytes=A-B`, `A-` or `-N`; inclusive ends): `Ok(None)` for no (or an unsupported) header —
/// the whole object.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
        (Ok(s), Err(_)) if b.is_empty() => (s, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => (size.saturating_sub(n), size.saturating_sub(1)),
        _ => return Ok(None),
    };
    if start >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_and_clamped() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Ok(Some((2, 4))));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Ok(Some((2, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=1-2,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=1-2"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Ok(None));
    }
}
