//! The hub's files are private to the user running it: heap snapshots hold the apps' passwords
//! and keys, `hub.db` the artifacts' upload token hashes and the audit trail.
//!
//! At start ([`prepare_data_dir`]) the umask becomes 077 (every file and directory the hub or
//! SQLite creates afterwards is 0600 / 0700), the data directory is created 0700 — or, if it
//! exists with a looser mode, tightened to 0700 with a warning: refusing would stop every hub
//! upgraded from a version that created it 0755, and tightening takes nothing from the owner —
//! and files an older hub left readable are tightened to 0600. A data directory owned by another
//! user is refused: the hub can't make it private. Files are also opened with explicit modes
//! ([`create_private`], [`append_private`]), so the guarantee does not rest on the umask alone.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Files directly in the data directory that hold secrets or operator data.
const DATA_FILES: [&str; 5] = ["hub.db", "hub.db-wal", "hub.db-shm", "audit.log", "operator-token"];
/// Subdirectories holding artifacts, partial uploads and renders.
const SUBDIRS: [&str; 2] = ["artifacts", "uploads"];

#[derive(Debug, thiserror::Error)]
pub enum PrivateFilesError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "data directory {path} belongs to uid {owner}, not to the hub's user (uid {us}): the hub can't keep \
         its files private there; use a directory of its own"
    )]
    NotOurs { path: PathBuf, owner: u32, us: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivateFilesError + '_ {
    move |source| PrivateFilesError::Io { path: path.to_path_buf(), source }
}

/// Makes `dir` and everything the hub keeps in it private (see the module notes).
pub fn prepare_data_dir(dir: &Path) -> Result<(), PrivateFilesError> {
    // SAFETY: umask only swaps the process's file mode mask.
    unsafe { libc::umask(0o077) };
    private_dir(dir)?;
    for sub in SUBDIRS {
        let d = dir.join(sub);
        private_dir(&d)?;
        tighten_files_in(&d)?;
    }
    for name in DATA_FILES {
        tighten(&dir.join(name))?;
    }
    Ok(())
}

/// Creates `dir` 0700, or tightens an existing one of ours to 0700.
fn private_dir(dir: &Path) -> Result<(), PrivateFilesError> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(io(dir))?;
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    // SAFETY: geteuid has no preconditions.
    let us = unsafe { libc::geteuid() };
    if meta.uid() != us {
        return Err(PrivateFilesError::NotOurs { path: dir.to_path_buf(), owner: meta.uid(), us });
    }
    if meta.mode() & 0o777 != DIR_MODE {
        tracing::warn!(path = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "tightening to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).map_err(io(dir))?;
    }
    Ok(())
}

/// Sets a regular file of ours to 0600 if it is looser (a missing file is fine).
fn tighten(path: &Path) -> Result<(), PrivateFilesError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    if meta.file_type().is_file() && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE)).map_err(io(path))?;
    }
    Ok(())
}

fn tighten_files_in(dir: &Path) -> Result<(), PrivateFilesError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        tighten(&path)?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it 0600.
pub fn append_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).mode(FILE_MODE).open(path)
}

/// The async [`append_private`].
pub async fn append_private_async(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new().create(true).append(true).mode(FILE_MODE).open(path).await
}

/// Creates (or truncates) `path` 0600 and writes `bytes`.
pub fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(FILE_MODE).open(path)?;
    f.write_all(bytes)?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_data_dir_and_its_files_are_tightened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(dir.join("artifacts")).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for f in [dir.join("hub.db"), dir.join("artifacts/a.heapsnapshot")] {
            std::fs::write(&f, b"x").expect("write");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        prepare_data_dir(&dir).expect("prepare");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("uploads")), 0o700);
        assert_eq!(mode(&dir.join("hub.db")), 0o600);
        assert_eq!(mode(&dir.join("artifacts/a.heapsnapshot")), 0o600);
    }
}
