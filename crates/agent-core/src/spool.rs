//! The spool: a capture is streamed chunk by chunk into a private local file while its SHA-256
//! is computed, so neither the app nor the agent ever holds a whole snapshot in memory, and the
//! upload can be retried (from any offset) until the hub confirms the checksum.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create spool file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot write spool file: {0}")]
    Write(#[from] std::io::Error),
    #[error("capture exceeds the spool limit of {0} bytes")]
    TooLarge(u64),
    #[error("the capture wrote nothing")]
    Empty,
    #[error("the capture file is incomplete (was the disk full?)")]
    Truncated,
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
    /// Creates `dir/name` readable by the owner only (snapshots can hold secrets): a new file
    /// (`O_EXCL`), never through a symlink (`O_NOFOLLOW`). `dir` is prepared by the caller
    /// ([`crate::spool_dir::prepare`]).
    pub fn create(dir: &Path, name: &str, limit: u64) -> Result<Self, SpoolError> {
        let path = dir.join(name);
        let err = |source| SpoolError::Create { path: path.clone(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
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

    /// Closes a spool nothing was written to, leaving the empty private file for another
    /// writer; returns its path and the size limit that still applies to it.
    pub fn close_empty(self) -> Result<(PathBuf, u64), SpoolError> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        drop(file);
        Ok((self.path, self.limit))
    }

    /// Flushes to disk and returns the file's size and checksum; a capture that wrote nothing
    /// is an error (no capture kind is empty).
    pub fn finish(self) -> Result<SpoolFile, SpoolError> {
        if self.written == 0 {
            let _ = std::fs::remove_file(&self.path);
            return Err(SpoolError::Empty);
        }
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(SpoolFile { path: self.path, size: self.written, sha256: hex::encode(self.hasher.finalize()) })
    }
}

impl SpoolFile {
    /// Size and checksum of a spool file another writer has completed (read back in 1 MiB
    /// blocks, never whole in memory); refused when it is empty or over `limit`.
    pub fn seal(path: &Path, limit: u64) -> Result<Self, SpoolError> {
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        if size > limit {
            return Err(SpoolError::TooLarge(limit));
        }
        if size == 0 {
            return Err(SpoolError::Empty);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut last_byte = None;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            last_byte = buf[..n].iter().rev().find(|b| !b.is_ascii_whitespace()).copied().or(last_byte);
        }
        // A writer that hit a full disk may stop mid-document without telling us (V8's file
        // stream does): a JSON capture that doesn't end its top-level object is incomplete.
        if last_byte != Some(b'}') {
            return Err(SpoolError::Truncated);
        }
        Ok(Self { path: path.to_path_buf(), size, sha256: hex::encode(hasher.finalize()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_spool_can_be_handed_to_another_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = SpoolWriter::create(dir.path(), "h.heapsnapshot", 1 << 20).expect("create");
        let (path, limit) = w.close_empty().expect("close");
        assert_eq!(limit, 1 << 20);
        assert!(matches!(SpoolFile::seal(&path, limit), Err(SpoolError::Empty)));
        std::fs::write(&path, b"{\"a\":[1,2]}\n").expect("external write");
        let f = SpoolFile::seal(&path, limit).expect("seal");
        assert_eq!((f.size, f.sha256.clone()), (12, hex::encode(Sha256::digest(b"{\"a\":[1,2]}\n"))));
        std::fs::write(&path, b"{\"a\":[1,").expect("truncated write");
        assert!(matches!(SpoolFile::seal(&path, limit), Err(SpoolError::Truncated)));
    }

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
        assert!(matches!(SpoolFile::seal(&f.path, 4), Err(SpoolError::TooLarge(4))));
        assert!(matches!(SpoolFile::seal(&f.path, 8), Err(SpoolError::Truncated)), "not a JSON document");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f.path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "spool must be private");
        }
    }
}
