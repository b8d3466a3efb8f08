//! The spool directory: where captures wait for their upload. It must be private and ours (a
//! snapshot holds the app's secrets), and it must never fill the app's disk.
//!
//! - Per user by default (`$TMPDIR/perf-agent-spool-<uid>`), so two users' agents on one host
//!   never share it.
//! - Created 0700; an existing one is checked with `lstat`: a symlink, something that isn't a
//!   directory, a directory another user owns, or one that others may read or write is refused
//!   (a local attacker could have pre-created it to read or swap spool files). An existing
//!   directory is never chmod'ed: `spoolDir=/tmp` must fail, not turn /tmp private.
//! - Spool files of processes that died mid-upload (`<pid>-<hex id>.<capture ext>` or
//!   `<pid>-<hex id>-perf` whose pid is gone) are swept at start; nothing else is touched.
//! - Room is checked before a capture starts: what the spool already holds, the configured cap,
//!   and the file system's free space less a reserve left to the app.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpoolDirError {
    #[error("spool directory {0} is a symlink: refusing to use it (set PERF_AGENT_SPOOL_DIR)")]
    Symlink(PathBuf),
    #[error("spool path {0} exists and is not a directory (set PERF_AGENT_SPOOL_DIR)")]
    NotADirectory(PathBuf),
    #[error("spool directory {path} belongs to uid {owner}, not to this process (uid {ours}): refusing to use it (set PERF_AGENT_SPOOL_DIR)")]
    NotOurs { path: PathBuf, owner: u32, ours: u32 },
    #[error("spool directory {path} is readable or writable by others (mode {mode:o}): refusing to use it (chmod 700 it, or set PERF_AGENT_SPOOL_DIR)")]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("spool directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "not enough room to spool this capture: it needs ~{needed_mb} MB but only {allowed_mb} MB may be used \
         (spool holds {used_mb} MB of a {cap_mb} MB cap; the disk has {free_mb} MB free, of which {reserve_mb} MB \
         stay for the app)"
    )]
    NoRoom { needed_mb: u64, allowed_mb: u64, used_mb: u64, cap_mb: u64, free_mb: u64, reserve_mb: u64 },
}

/// `$TMPDIR/perf-agent-spool-<uid>`.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join(format!("perf-agent-spool-{}", effective_uid()))
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the directory (0700) or checks that the existing one is a directory we own, and
/// tightens its mode to 0700.
pub fn prepare(dir: &Path) -> Result<(), SpoolDirError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let io = |source| SpoolDirError::Io { path: dir.to_path_buf(), source };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Another process of ours created it meanwhile: check it below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
            std::fs::symlink_metadata(dir).map_err(io)?
        }
        Err(e) => return Err(io(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(SpoolDirError::Symlink(dir.to_path_buf()));
    }
    if !meta.is_dir() {
        return Err(SpoolDirError::NotADirectory(dir.to_path_buf()));
    }
    let ours = effective_uid();
    if meta.uid() != ours {
        return Err(SpoolDirError::NotOurs { path: dir.to_path_buf(), owner: meta.uid(), ours });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SpoolDirError::NotPrivate { path: dir.to_path_buf(), mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

/// Removes the files (and perf work directories) of processes that are gone: a capture whose
/// process died before its upload finished would otherwise stay forever. Returns how many.
pub fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "perf-agent: cannot remove a stale spool file")
            }
        }
    }
    removed
}

/// `12345-<hex id>.heapsnapshot` / `12345-<hex id>-perf` → 12345: only the names the agent
/// gives its spool files; anything else in the directory is not ours to sweep.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, rest) = name.split_once('-')?;
    let (id, tail) = rest.split_once(['.', '-'])?;
    let ours = perf_protocol::is_valid_id(id)
        && (rest.ends_with("-perf") && tail == "perf"
            || perf_protocol::CAPTURE_KINDS.iter().any(|k| tail == k.file_extension));
    if !ours || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

/// Bytes the file system under `dir` has free for us.
fn free_bytes(dir: &Path) -> Result<u64, std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// What the spool holds now (files and one level of perf work directories).
fn used_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => std::fs::read_dir(e.path())
                .map(|d| d.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Space left to the app on its disk: 5 % of what is free now, at most 512 MiB.
const RESERVE_MAX: u64 = 512 << 20;

/// How many bytes a new capture may spool; `Err` when `needed` doesn't fit.
pub fn room_for(dir: &Path, needed: u64, cap: u64) -> Result<u64, SpoolDirError> {
    let free = free_bytes(dir).map_err(|source| SpoolDirError::Io { path: dir.to_path_buf(), source })?;
    let used = used_bytes(dir);
    let reserve = (free / 20).min(RESERVE_MAX);
    let allowed = cap.saturating_sub(used).min(free.saturating_sub(reserve));
    if needed > allowed {
        let mb = |b: u64| b >> 20;
        return Err(SpoolDirError::NoRoom {
            needed_mb: mb(needed).max(1),
            allowed_mb: mb(allowed),
            used_mb: mb(used),
            cap_mb: mb(cap),
            free_mb: mb(free),
            reserve_mb: mb(reserve),
        });
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn creates_a_private_directory_and_refuses_a_loose_one_without_touching_it() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("spool");
        prepare(&dir).expect("create");
        assert_eq!(std::fs::metadata(&dir).expect("meta").mode() & 0o777, 0o700);
        prepare(&dir).expect("reuse");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(matches!(prepare(&dir), Err(SpoolDirError::NotPrivate { .. })));
        assert_eq!(std::fs::metadata(&dir).expect("meta").mode() & 0o7777, 0o1777, "an existing dir is never chmod'ed");
    }

    #[test]
    fn refuses_a_symlink_and_a_file() {
        let base = tempfile::tempdir().expect("tempdir");
        let target = base.path().join("elsewhere");
        std::fs::create_dir(&target).expect("dir");
        let link = base.path().join("spool");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(matches!(prepare(&link), Err(SpoolDirError::Symlink(_))));
        let file = base.path().join("file");
        std::fs::write(&file, b"x").expect("file");
        assert!(matches!(prepare(&file), Err(SpoolDirError::NotADirectory(_))));
    }

    #[test]
    fn refuses_a_directory_of_another_user() {
        if effective_uid() != 0 {
            eprintln!("skipped: needs root to give a directory to another user");
            return;
        }
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("spool");
        std::fs::create_dir(&dir).expect("dir");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
        let e = prepare(&dir).unwrap_err();
        assert!(matches!(e, SpoolDirError::NotOurs { owner: 65534, .. }), "{e}");
    }

    #[test]
    fn sweeps_files_of_dead_processes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = std::process::id();
        // A pid that can't be running: above the kernel's pid_max default ceiling.
        let dead = 4_194_305u32;
        let id = "0123456789abcdef0123456789abcdef";
        std::fs::write(dir.path().join(format!("{me}-{id}.heapsnapshot")), b"mine").expect("w");
        std::fs::write(dir.path().join(format!("{dead}-{id}.heapsnapshot")), b"stale").expect("w");
        std::fs::create_dir(dir.path().join(format!("{dead}-{id}-perf"))).expect("d");
        std::fs::write(dir.path().join("notes.txt"), b"not ours").expect("w");
        std::fs::write(dir.path().join(format!("{dead}-report.log")), b"a user's file").expect("w");
        assert_eq!(sweep_stale(dir.path()), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().into_string().expect("utf8"))
            .collect();
        let mut want = vec![format!("{dead}-report.log"), format!("{me}-{id}.heapsnapshot"), "notes.txt".to_string()];
        left.sort();
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn room_is_bounded_by_the_cap_and_what_the_spool_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("1-a.heapsnapshot"), vec![0u8; 3 << 20]).expect("w");
        assert!(room_for(dir.path(), 1 << 20, 8 << 20).is_ok());
        let e = room_for(dir.path(), 6 << 20, 8 << 20).unwrap_err();
        assert!(e.to_string().contains("spool holds 3 MB of a 8 MB cap"), "{e}");
        let e = room_for(dir.path(), u64::MAX / 2, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("disk has"), "{e}");
    }
}

#[cfg(test)]
mod name_tests {
    #[test]
    fn only_our_spool_names_have_an_owner() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(super::owner_pid(&format!("42-{id}.heapsnapshot")), Some(42));
        assert_eq!(super::owner_pid(&format!("42-{id}-perf")), Some(42));
        assert_eq!(super::owner_pid("42-report.log"), None);
        assert_eq!(super::owner_pid(&format!("x42-{id}.heapsnapshot")), None);
    }
}
