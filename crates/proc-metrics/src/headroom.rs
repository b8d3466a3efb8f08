//! How much more memory this process may take before something kills it: the tighter of
//! the cgroup limit (minus the cgroup's working set) and the host's MemAvailable.
//!
//! Used to refuse a heap snapshot that would OOM-kill the process (V8 needs several times the
//! live heap for one; see FIELD-NOTES). It is an estimate: the kernel can reclaim more cache
//! than "inactive file", and other processes may allocate meanwhile, so callers keep a margin.

use serde::Serialize;

use crate::cgroup::{read_cgroup_memory, CgroupMemory};
use crate::error::{read_text, Error};
use crate::host::parse_meminfo;

/// Which bound is the tighter one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadroomBound {
    /// The cgroup memory limit.
    Cgroup,
    /// The host's MemAvailable.
    Host,
}

/// Bytes the process may still grow by, and what bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Headroom {
    pub bytes: u64,
    pub bound_by: HeadroomBound,
}

/// Pure combination of the two bounds. A cgroup without a limit (or without a usage figure)
/// does not bound anything.
pub fn headroom_from(host_available_bytes: u64, cgroup: Option<&CgroupMemory>) -> Headroom {
    let cg = cgroup.and_then(|c| {
        let limit = c.limit_bytes?;
        let used = c.working_set_bytes.or(c.usage_bytes)?;
        Some(limit.saturating_sub(used))
    });
    match cg {
        Some(b) if b < host_available_bytes => Headroom { bytes: b, bound_by: HeadroomBound::Cgroup },
        _ => Headroom { bytes: host_available_bytes, bound_by: HeadroomBound::Host },
    }
}

/// Reads /proc/meminfo and the process's memory cgroup and combines them. A cgroup that
/// cannot be read is ignored (the host bound still holds); /proc/meminfo must be readable.
pub fn memory_headroom() -> Result<Headroom, Error> {
    let mem = parse_meminfo(&read_text(std::path::Path::new("/proc/meminfo"))?)?;
    let cgroup = read_cgroup_memory().ok().flatten();
    Ok(headroom_from(mem.available_bytes, cgroup.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(limit: Option<u64>, usage: u64, ws: Option<u64>) -> CgroupMemory {
        CgroupMemory {
            version: 2,
            dir: "/x".into(),
            limit_bytes: limit,
            usage_bytes: Some(usage),
            working_set_bytes: ws,
        }
    }

    #[test]
    fn tighter_bound_wins() {
        let h = headroom_from(8 << 30, Some(&cg(Some(1 << 30), 600 << 20, Some(512 << 20))));
        assert_eq!(h, Headroom { bytes: 512 << 20, bound_by: HeadroomBound::Cgroup });
        let h = headroom_from(100 << 20, Some(&cg(Some(1 << 30), 0, Some(0))));
        assert_eq!(h, Headroom { bytes: 100 << 20, bound_by: HeadroomBound::Host });
    }

    #[test]
    fn unlimited_or_absent_cgroup_uses_host() {
        assert_eq!(headroom_from(42, None).bound_by, HeadroomBound::Host);
        assert_eq!(headroom_from(42, Some(&cg(None, 10, Some(10)))).bytes, 42);
    }

    #[test]
    fn over_limit_is_zero_not_underflow() {
        let h = headroom_from(1 << 30, Some(&cg(Some(100), 200, Some(200))));
        assert_eq!(h.bytes, 0);
    }

    #[test]
    fn working_set_missing_falls_back_to_usage() {
        let h = headroom_from(1 << 30, Some(&cg(Some(1000), 300, None)));
        assert_eq!(h.bytes, 700);
    }
}
