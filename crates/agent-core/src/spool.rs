//! The spool: a capture is streamed chunk by chunk into a private local file while its SHA-256
//! is computed, so neither the app nor the agent ever holds a whole snapshot in memory, and the
//! upload can be retried (from any offset) until the hub confirms the checksum.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create spool file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot write spool file: {0}")]
    Write(#[from] std::io::Error),
    #[error("capture exceeds the spool limit of {0} bytes")]
    TooLarge(u64),
}

pub struct SpoolWriter {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

/// A finished spool file, ready to upload.
#[derive(Debug, Clone)]
pub struct SpoolFile {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl SpoolWriter {
    /// Creates `dir/name` readable by the owner only (snapshots can hold secrets).
    pub fn create(dir: &Path, name: &str, limit: u64) -> Result<Self, SpoolError> {
        let path = dir.join(name);
        let err = |source| SpoolError::Create { path: path.clone(), source };
        create_private_dir(dir).map_err(err)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path).map_err(err)?;
        Ok(Self { path, out: BufWriter::with_capacity(256 * 1024, file), hasher: Sha256::new(), written: 0, limit })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        if self.written + chunk.len() as u64 > self.limit {
            return Err(SpoolError::TooLarge(self.limit));
        }
        self.out.write_all(chunk)?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes to disk and returns the file's size and checksum.
    pub fn finish(self) -> Result<SpoolFile, SpoolError> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(SpoolFile { path: self.path, size: self.written, sha256: hex::encode(self.hasher.finalize()) })
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_hashes_and_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SpoolWriter::create(dir.path(), "a.bin", 8).expect("create");
        w.write(b"hello").expect("write");
        assert!(matches!(w.write(b"world"), Err(SpoolError::TooLarge(8))));
        let f = w.finish().expect("finish");
        assert_eq!(f.size, 5);
        assert_eq!(f.sha256, hex::encode(Sha256::digest(b"hello")));
        assert_eq!(std::fs::read(&f.path).expect("read"), b"hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f.path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "spool must be private");
        }
    }
}
