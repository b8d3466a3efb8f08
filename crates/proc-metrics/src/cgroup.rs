//! The memory cgroup of a process: limit, usage and working set, for cgroup v2 and v1.
//!
//! Finding the directory: `/proc/<pid>/cgroup` names the cgroup path, `/proc/<pid>/mountinfo`
//! says where that hierarchy is mounted and which part of it (the mount's root). Inside a
//! container the two usually cancel out to the mount point itself. Limits are hierarchical:
//! a parent's limit caps the child, so v2 takes the smallest `memory.max` from the leaf up to
//! the mount point, and v1 takes `hierarchical_memory_limit` from `memory.stat`.
//!
//! "No limit" is `max` (v2) or a huge number like 9223372036854771712 (v1): both become None.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{parse_num, read_text, Error};

/// Limits at or above 2^62 bytes (4 EiB) mean "unlimited": v1 writes LONG_MAX rounded down
/// to a page, and nobody has that much memory.
const UNLIMITED_FROM: u64 = 1 << 62;

/// Memory figures of the process's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupMemory {
    /// 1 or 2.
    pub version: u8,
    /// The cgroup directory read (for diagnostics).
    pub dir: String,
    /// The effective (tightest) limit; None when unlimited.
    pub limit_bytes: Option<u64>,
    /// Current charge, page cache included.
    pub usage_bytes: Option<u64>,
    /// usage minus inactive file cache: what the OOM killer looks at (as kubelet and docker do).
    pub working_set_bytes: Option<u64>,
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controller,list:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    pub hierarchy_id: u32,
    /// Empty for the v2 unified hierarchy.
    pub controllers: Vec<String>,
    pub path: String,
}

/// A cgroup or cgroup2 entry of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The part of the hierarchy visible at the mount point.
    pub root: String,
    pub mount_point: PathBuf,
    /// 2 for cgroup2, 1 for cgroup.
    pub version: u8,
    /// v1 super options (they name the controllers, e.g. "rw,memory").
    pub super_options: Vec<String>,
}

/// Parses `/proc/<pid>/cgroup`. The path may contain ':', so only the first two are split.
pub fn parse_proc_cgroup(text: &str) -> Result<Vec<CgroupLine>, Error> {
    const WHAT: &str = "/proc/<pid>/cgroup";
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::parse(WHAT, format!("bad line {line:?}")));
        };
        out.push(CgroupLine {
            hierarchy_id: parse_num(WHAT, "hierarchy-id", id)?,
            controllers: ctl.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect(),
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Parses the cgroup and cgroup2 mounts out of `/proc/<pid>/mountinfo`; other mounts are
/// skipped but must still have the documented shape.
pub fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, Error> {
    const WHAT: &str = "/proc/<pid>/mountinfo";
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // "36 25 0:32 /root /mnt rw,relatime shared:1 - cgroup cgroup rw,memory"
        let (left, right) =
            line.split_once(" - ").ok_or_else(|| Error::parse(WHAT, format!("no ' - ' separator in {line:?}")))?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            return Err(Error::parse(WHAT, format!("too few fields in {line:?}")));
        }
        let version = match right[0] {
            "cgroup2" => 2,
            "cgroup" => 1,
            _ => continue,
        };
        out.push(CgroupMount {
            root: unescape_octal(left[3]),
            mount_point: PathBuf::from(unescape_octal(left[4])),
            version,
            super_options: right[2].split(',').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], oct) {
            (b'\\', Some(d)) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a limit file (`memory.max`, `memory.limit_in_bytes`): "max" or huge → None.
pub fn parse_limit(text: &str) -> Result<Option<u64>, Error> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    let v: u64 = parse_num("cgroup memory limit", "limit", t)?;
    Ok((v < UNLIMITED_FROM).then_some(v))
}

/// Finds `key value` in a `memory.stat` file.
pub fn parse_memory_stat(text: &str, key: &str) -> Result<Option<u64>, Error> {
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        if it.next() == Some(key) {
            let v = it.next().ok_or_else(|| Error::parse("memory.stat", format!("{key} has no value")))?;
            return parse_num("memory.stat", "value", v).map(Some);
        }
    }
    Ok(None)
}

/// Where the memory cgroup of a process lives: (version, mount point, cgroup directory).
/// v2 is chosen when the unified hierarchy is mounted; the caller falls back to v1 when the
/// v2 directory has no memory controller (the "hybrid" layout).
pub fn locate(cgroup: &[CgroupLine], mounts: &[CgroupMount]) -> Vec<(u8, PathBuf, PathBuf)> {
    let mut found = Vec::new();
    let v2 = cgroup.iter().find(|l| l.hierarchy_id == 0 && l.controllers.is_empty());
    if let (Some(line), Some(m)) = (v2, mounts.iter().find(|m| m.version == 2)) {
        found.push((2, m.mount_point.clone(), join_under(m, &line.path)));
    }
    let v1 = cgroup.iter().find(|l| l.controllers.iter().any(|c| c == "memory"));
    let v1_mount = mounts.iter().find(|m| m.version == 1 && m.super_options.iter().any(|o| o == "memory"));
    if let (Some(line), Some(m)) = (v1, v1_mount) {
        found.push((1, m.mount_point.clone(), join_under(m, &line.path)));
    }
    found
}

/// mount point + (cgroup path relative to the mount's root). A path outside the mount's root
/// (cgroup namespaces shown from outside) falls back to the mount point.
fn join_under(m: &CgroupMount, cgroup_path: &str) -> PathBuf {
    let root = m.root.trim_end_matches('/');
    let rel = cgroup_path.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/'));
    match rel {
        Some(r) => m.mount_point.join(r.trim_start_matches('/')),
        None => m.mount_point.clone(),
    }
}

/// Reads the memory cgroup of the calling process. Ok(None) when there is no memory cgroup
/// to read (no cgroup fs mounted, controller not enabled).
pub fn read_cgroup_memory() -> Result<Option<CgroupMemory>, Error> {
    let cgroup = parse_proc_cgroup(&read_text(Path::new("/proc/self/cgroup"))?)?;
    let mounts = parse_mountinfo(&read_text(Path::new("/proc/self/mountinfo"))?)?;
    for (version, mount_point, dir) in locate(&cgroup, &mounts) {
        let dir = if dir.exists() { dir } else { mount_point.clone() };
        let read = if version == 2 { read_v2(&mount_point, &dir)? } else { read_v1(&dir)? };
        if read.is_some() {
            return Ok(read);
        }
    }
    Ok(None)
}

/// Reads an optional file: absent → None, present but unreadable/garbled → error.
fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// cgroup v2: the leaf must have `memory.current` (else the controller is off here).
fn read_v2(mount_point: &Path, dir: &Path) -> Result<Option<CgroupMemory>, Error> {
    let Some(current) = read_optional(&dir.join("memory.current"))? else {
        return Ok(None);
    };
    let usage: u64 = parse_num("memory.current", "value", &current)?;
    let mut limit: Option<u64> = None;
    // Walk leaf → mount point: the tightest memory.max along the way is the one that bites.
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| d.starts_with(mount_point)) {
        if let Some(t) = read_optional(&d.join("memory.max"))? {
            limit = min_opt(limit, parse_limit(&t)?);
        }
        cur = d.parent();
    }
    let inactive = match read_optional(&dir.join("memory.stat"))? {
        Some(t) => parse_memory_stat(&t, "inactive_file")?,
        None => None,
    };
    Ok(Some(build(2, dir, limit, usage, inactive)))
}

/// cgroup v1: `memory.limit_in_bytes`, capped by the hierarchical limit of `memory.stat`.
fn read_v1(dir: &Path) -> Result<Option<CgroupMemory>, Error> {
    let Some(usage_text) = read_optional(&dir.join("memory.usage_in_bytes"))? else {
        return Ok(None);
    };
    let usage: u64 = parse_num("memory.usage_in_bytes", "value", &usage_text)?;
    let mut limit = match read_optional(&dir.join("memory.limit_in_bytes"))? {
        Some(t) => parse_limit(&t)?,
        None => None,
    };
    let mut inactive = None;
    if let Some(stat) = read_optional(&dir.join("memory.stat"))? {
        if let Some(h) = parse_memory_stat(&stat, "hierarchical_memory_limit")? {
            limit = min_opt(limit, (h < UNLIMITED_FROM).then_some(h));
        }
        inactive = parse_memory_stat(&stat, "total_inactive_file")?;
    }
    Ok(Some(build(1, dir, limit, usage, inactive)))
}

fn build(version: u8, dir: &Path, limit: Option<u64>, usage: u64, inactive: Option<u64>) -> CgroupMemory {
    CgroupMemory {
        version,
        dir: dir.display().to_string(),
        limit_bytes: limit,
        usage_bytes: Some(usage),
        working_set_bytes: Some(usage.saturating_sub(inactive.unwrap_or(0))),
    }
}

/// The smaller of two optional limits, None meaning unlimited.
fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str = "9:name=systemd:/\n4:memory:/process_api/f2e9\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";

    #[test]
    fn proc_cgroup_lines() {
        let l = parse_proc_cgroup(HYBRID_CGROUP).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[1].controllers, vec!["memory"]);
        assert_eq!(l[1].path, "/process_api/f2e9");
        assert!(l[3].controllers.is_empty());
        let colon = parse_proc_cgroup("0::/a:b\n").unwrap();
        assert_eq!(colon[0].path, "/a:b");
        assert!(parse_proc_cgroup("garbage\n").is_err());
        assert!(parse_proc_cgroup("x::/\n").is_err());
    }

    #[test]
    fn mountinfo_cgroup_entries() {
        let m = parse_mountinfo(HYBRID_MOUNTS).unwrap();
        assert_eq!(m.len(), 3); // tmpfs skipped
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m[2].version, 2);
        let esc = parse_mountinfo("1 2 0:1 / /a\\040b rw - cgroup2 cgroup2 rw\n").unwrap();
        assert_eq!(esc[0].mount_point, PathBuf::from("/a b"));
        assert!(parse_mountinfo("1 2 0:1 / /a rw cgroup2\n").is_err());
        assert!(parse_mountinfo("1 2 - cgroup2 x rw\n").is_err());
    }

    #[test]
    fn locate_hybrid_and_v2_and_namespaced() {
        let found = locate(&parse_proc_cgroup(HYBRID_CGROUP).unwrap(), &parse_mountinfo(HYBRID_MOUNTS).unwrap());
        assert_eq!(found[0], (2, "/sys/fs/cgroup/unified".into(), "/sys/fs/cgroup/unified".into()));
        assert_eq!(found[1].2, PathBuf::from("/sys/fs/cgroup/memory/process_api/f2e9"));

        let v2 = "0::/system.slice/app.service\n";
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let found = locate(&parse_proc_cgroup(v2).unwrap(), &parse_mountinfo(mounts).unwrap());
        assert_eq!(found, vec![(2, "/sys/fs/cgroup".into(), "/sys/fs/cgroup/system.slice/app.service".into())]);

        // Docker without cgroupns: mount root is the container's own cgroup.
        let ctr = "0::/docker/abc\n";
        let mounts = "30 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let found = locate(&parse_proc_cgroup(ctr).unwrap(), &parse_mountinfo(mounts).unwrap());
        assert_eq!(found[0].2, PathBuf::from("/sys/fs/cgroup"));

        // Path outside the mount root: fall back to the mount point; prefix must end at '/'.
        let other = "0::/docker/abcdef\n";
        let found = locate(&parse_proc_cgroup(other).unwrap(), &parse_mountinfo(mounts).unwrap());
        assert_eq!(found[0].2, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n").unwrap(), None);
        assert_eq!(parse_limit("9223372036854771712\n").unwrap(), None);
        assert_eq!(parse_limit("536870912\n").unwrap(), Some(512 << 20));
        assert!(parse_limit("").is_err());
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("12 MB").is_err());
    }

    #[test]
    fn memory_stat() {
        let s = "cache 100\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(parse_memory_stat(s, "inactive_file").unwrap(), Some(4096));
        assert_eq!(parse_memory_stat(s, "total_inactive_file").unwrap(), Some(8192));
        assert_eq!(parse_memory_stat(s, "nope").unwrap(), None);
        assert!(parse_memory_stat("inactive_file\n", "inactive_file").is_err());
        assert!(parse_memory_stat("inactive_file x\n", "inactive_file").is_err());
    }

    /// A fake v2 tree: the parent's limit is tighter than the leaf's.
    #[test]
    fn read_v2_tree_takes_tightest_limit() {
        let root = std::env::temp_dir().join(format!("pm-cg2-{}", std::process::id()));
        let leaf = root.join("a").join("b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("a").join("memory.max"), "1000000\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        std::fs::write(leaf.join("memory.current"), "400000\n").unwrap();
        std::fs::write(leaf.join("memory.stat"), "anon 1\ninactive_file 100000\n").unwrap();
        let m = read_v2(&root, &leaf).unwrap().unwrap();
        assert_eq!(m.limit_bytes, Some(1_000_000));
        assert_eq!(m.usage_bytes, Some(400_000));
        assert_eq!(m.working_set_bytes, Some(300_000));
        std::fs::write(leaf.join("memory.current"), "garbage\n").unwrap();
        assert!(read_v2(&root, &leaf).is_err());
        std::fs::remove_file(leaf.join("memory.current")).unwrap();
        assert_eq!(read_v2(&root, &leaf).unwrap(), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn read_v1_dir_uses_hierarchical_limit() {
        let dir = std::env::temp_dir().join(format!("pm-cg1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(dir.join("memory.usage_in_bytes"), "5000\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "hierarchical_memory_limit 8192\ntotal_inactive_file 1000\n").unwrap();
        let m = read_v1(&dir).unwrap().unwrap();
        assert_eq!((m.version, m.limit_bytes, m.working_set_bytes), (1, Some(8192), Some(4000)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
