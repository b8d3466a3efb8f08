//! Artifact bytes in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, SeaweedFS, OSS),
//! through the `object_store` crate.
//!
//! Layout under `s3://BUCKET/PREFIX/`: `FILE_NAME` (the artifact), `ID.json` (its sidecar: the
//! artifact record, for `perf-hub reindex`), and the caches of renders beside them
//! (`ID.svg`, `ID.analysis.json`, `diff-A-B.json`).
//!
//! An upload streams into a multipart upload as its bytes arrive: the hub holds at most one
//! part ([`PART_SIZE`]) per upload and hashes as it goes; the object exists only once size and
//! SHA-256 checked out (the multipart is completed then, aborted otherwise). The multipart's id
//! is kept in `DATA_DIR/uploads/ID.multipart` so that after a hub restart the stale multipart is
//! aborted and the agent retries from offset 0 (S3 can't tell the hub which bytes it has and
//! their hash state is lost with the process).

use super::{ByteStream, StorageError};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes buffered per upload before they go to the store as one part (S3 wants ≥ 5 MiB parts
/// but the last): what an upload costs the hub in memory.
pub const PART_SIZE: usize = 8 << 20;

pub struct S3Store {
    store: Arc<AmazonS3>,
    url: String,
    prefix: String,
    uploads: PathBuf,
    cache: PathBuf,
}

fn store_err(what: impl Into<String>) -> impl FnOnce(object_store::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Store { what, source: Box::new(source) }
}

/// `s3://BUCKET[/PREFIX]` → (bucket, prefix without slashes at either end).
pub fn parse_url(url: &str) -> Result<(String, String), StorageError> {
    let bad = || StorageError::Config(format!("--storage {url}: expected s3://BUCKET[/PREFIX]"));
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad());
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl S3Store {
    /// The store of `url`, configured from the `AWS_*` environment (credentials, region,
    /// endpoint, `AWS_ALLOW_HTTP`, SSE: `AWS_SERVER_SIDE_ENCRYPTION`, `AWS_SSE_KMS_KEY_ID`, …).
    /// A custom endpoint is addressed path-style (`ENDPOINT/BUCKET/KEY`), which every
    /// S3-compatible server understands.
    pub fn open(data_dir: &Path, url: &str) -> Result<Self, StorageError> {
        let (bucket, prefix) = parse_url(url)?;
        // reqwest is built without a TLS provider of its own (no aws-lc): use ring, as the
        // hub's listeners do. Fails only if one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(|e| StorageError::Config(format!("--storage {url}: {e}")))?;
        let uploads = data_dir.join("uploads");
        let cache = data_dir.join("cache");
        for d in [&uploads, &cache] {
            super::private_dir(d)?;
        }
        Ok(Self { store: Arc::new(store), url: url.to_string(), prefix, uploads, cache })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, name: &str) -> ObjPath {
        match self.prefix.is_empty() {
            true => ObjPath::from(name),
            false => ObjPath::from(format!("{}/{name}", self.prefix)),
        }
    }

    /// Lists the prefix once: wrong credentials, a missing bucket or an unreachable endpoint
    /// show at start, not at the first upload.
    pub async fn probe(&self) -> Result<(), StorageError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        self.store.list_with_delimiter(prefix.as_ref()).await.map_err(store_err(format!("listing {}", self.url)))?;
        Ok(())
    }

    fn marker(&self, id: &str) -> PathBuf {
        self.uploads.join(format!("{id}.multipart"))
    }

    /// Aborts the multipart a previous run (or a broken stream) left for `id`, if any.
    pub async fn discard_upload(&self, id: &str) {
        let marker = self.marker(id);
        let Ok(text) = tokio::fs::read_to_string(&marker).await else { return };
        if let Some((key, upload_id)) = text.split_once('\n') {
            let upload_id: MultipartId = upload_id.trim().to_string();
            match self.store.abort_multipart(&ObjPath::from(key), &upload_id).await {
                Ok(()) => tracing::info!(artifact = %id, "aborted a stale multipart upload"),
                Err(e) => tracing::warn!(artifact = %id, error = %e, "cannot abort a stale multipart upload"),
            }
        }
        let _ = tokio::fs::remove_file(&marker).await;
    }

    /// Ids with a multipart upload recorded on disk.
    pub fn upload_ids(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.uploads) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".multipart").map(str::to_string))
            .filter(|id| crate::ids::is_valid_id(id))
            .collect()
    }

    /// Starts the upload of `id` from offset 0 (after aborting a stale one).
    pub async fn begin(&self, id: &str, file_name: &str) -> Result<MultipartWriter, StorageError> {
        self.discard_upload(id).await;
        let key = self.key(file_name);
        let upload_id =
            self.store.create_multipart(&key).await.map_err(store_err(format!("starting upload of {key}")))?;
        let marker = self.marker(id);
        let text = format!("{key}\n{upload_id}");
        let path = marker.clone();
        let written = tokio::task::spawn_blocking(move || crate::private_files::create_private(&path, text.as_bytes()))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = written {
            let _ = self.store.abort_multipart(&key, &upload_id).await;
            return Err(StorageError::Io { path: marker, source: e });
        }
        Ok(MultipartWriter {
            store: self.store.clone(),
            key,
            upload_id,
            marker,
            parts: Vec::new(),
            buf: Vec::with_capacity(PART_SIZE),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    pub async fn size(&self, name: &str) -> Result<u64, StorageError> {
        let key = self.key(name);
        Ok(self.store.head(&key).await.map_err(store_err(format!("reading {key}")))?.size)
    }

    pub async fn read(&self, name: &str, start: u64, len: u64) -> Result<ByteStream, StorageError> {
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let key = self.key(name);
        let opts = GetOptions { range: Some(GetRange::Bounded(start..start + len)), ..Default::default() };
        let got = self.store.get_opts(&key, opts).await.map_err(store_err(format!("reading {key}")))?;
        Ok(Box::pin(got.into_stream().map_err(std::io::Error::other)))
    }

    pub async fn read_small(&self, name: &str) -> Option<Vec<u8>> {
        let got = self.store.get(&self.key(name)).await.ok()?;
        got.bytes().await.ok().map(|b| b.to_vec())
    }

    pub async fn write_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let key = self.key(name);
        self.store.put(&key, PutPayload::from(bytes)).await.map_err(store_err(format!("writing {key}")))?;
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let key = self.key(name);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(format!("deleting {key}"))(e)),
        }
    }

    /// A private temporary copy of a stored object in `DATA_DIR/cache/`, for the readers that
    /// need a file (the heap analyser maps it); removed when the returned copy is dropped.
    pub async fn fetch_to_cache(&self, name: &str) -> Result<PathBuf, StorageError> {
        use tokio::io::AsyncWriteExt;
        let nonce = crate::ids::new_secret().map_err(|e| StorageError::Config(e.to_string()))?;
        let path = self.cache.join(format!("{name}.{}.tmp", &nonce[..12]));
        let mut file = crate::private_files::append_private_async(&path).await.map_err(super::io_err(&path))?;
        let size = self.size(name).await?;
        let mut body = self.read(name, 0, size).await?;
        let copied = async {
            while let Some(chunk) = body.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(StorageError::Io { path, source: e });
        }
        Ok(path)
    }

    /// Names of the sidecars (`ID.json`) under the prefix.
    pub async fn sidecars(&self) -> Result<Vec<String>, StorageError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        let metas: Vec<_> =
            self.store.list(prefix.as_ref()).try_collect().await.map_err(store_err(format!("listing {}", self.url)))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .filter(|n| n.strip_suffix(".json").is_some_and(crate::ids::is_valid_id))
            .collect())
    }
}

/// One upload streaming into a multipart upload.
pub struct MultipartWriter {
    store: Arc<AmazonS3>,
    key: ObjPath,
    upload_id: MultipartId,
    marker: PathBuf,
    parts: Vec<PartId>,
    buf: Vec<u8>,
    hasher: Sha256,
    written: u64,
}

impl MultipartWriter {
    pub fn offset(&self) -> u64 {
        self.written
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.hasher.update(data);
        self.written += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let room = PART_SIZE - self.buf.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() == PART_SIZE {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), StorageError> {
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE)));
        let idx = self.parts.len();
        let part = self
            .store
            .put_part(&self.key, &self.upload_id, idx, PutPayload::from(data))
            .await
            .map_err(store_err(format!("uploading part {idx} of {}", self.key)))?;
        self.parts.push(part);
        Ok(())
    }

    /// Checks size and SHA-256, then completes the multipart: only then does the object exist.
    /// On any failure the multipart is aborted.
    pub async fn commit(mut self, size: u64, sha256: &str) -> Result<(), StorageError> {
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let result = match super::check_integrity(size, sha256, self.written, &actual) {
            Err(e) => Err(e),
            Ok(()) => self.complete().await,
        };
        if result.is_err() {
            self.abort().await;
        } else {
            let _ = tokio::fs::remove_file(&self.marker).await;
        }
        result
    }

    async fn complete(&mut self) -> Result<(), StorageError> {
        if !self.buf.is_empty() || self.parts.is_empty() {
            self.send_part().await?;
        }
        let parts = std::mem::take(&mut self.parts);
        self.store
            .complete_multipart(&self.key, &self.upload_id, parts)
            .await
            .map_err(store_err(format!("completing {}", self.key)))?;
        Ok(())
    }

    /// Drops what was uploaded so far (the store frees the parts).
    pub async fn abort(&self) {
        if let Err(e) = self.store.abort_multipart(&self.key, &self.upload_id).await {
            tracing::warn!(key = %self.key, error = %e, "cannot abort a multipart upload");
        }
        let _ = tokio::fs::remove_file(&self.marker).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_url("s3://b").expect("ok"), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/p/q/").expect("ok"), ("b".into(), "p/q".into()));
        assert!(parse_url("s3:///p").is_err());
        assert!(parse_url("http://b").is_err());
    }
}
