//! Is it safe to take a heap snapshot now? Estimates what it will cost the process from the live
//! heap and compares that with how much memory the process may still use.
//!
//! The cost depends on the Node line (its V8). Measured here with `v8.writeHeapSnapshot()`
//! (FIELD-NOTES, `bench/snapshot`): on a 174 MB object-dense heap (1 M small objects) the peak
//! extra RSS was 2.45 GB on Node 20 (14x the heap) and 2.2 GB on 24 and 26 (12.7x); the pause
//! 17.2 s on 20 (and ~115 ms/MB at 100 MB-1 GB heaps) and 9.7-10.8 s on 24/26 (~62 ms/MB); the
//! file 1.96x the heap on 20 and 1.78x on 24/26. Node 22 shares 24's heap snapshot generator
//! shape and is treated like it (an assumption, flagged in the estimate's factor). Heaps of
//! large strings or arrays cost less; the factors are the dense-object worst case we measured,
//! because refusing beats getting the process OOM-killed.

use perf_protocol::SnapshotEstimate;

/// Measured cost factors of a heap snapshot on one Node line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotCost {
    /// Peak extra memory as a multiple of the live heap.
    pub extra_memory_factor: u64,
    /// JavaScript pause per MiB of live heap.
    pub pause_ms_per_mb: u64,
    /// File size per live heap byte, in tenths.
    pub file_tenths: u64,
}

impl SnapshotCost {
    /// Node 20 and older.
    pub const NODE_20: SnapshotCost = SnapshotCost { extra_memory_factor: 14, pause_ms_per_mb: 115, file_tenths: 20 };
    /// Node 22 and newer.
    pub const NODE_22_PLUS: SnapshotCost =
        SnapshotCost { extra_memory_factor: 13, pause_ms_per_mb: 62, file_tenths: 18 };

    /// Factors for a `process.version` such as `v24.22.3`; an unknown version gets the most
    /// expensive line's factors.
    pub fn for_node(version: &str) -> Self {
        match node_major(version) {
            Some(major) if major >= 22 => Self::NODE_22_PLUS,
            _ => Self::NODE_20,
        }
    }

    pub fn estimate(&self, heap_used_bytes: u64, headroom_bytes: Option<u64>) -> SnapshotEstimate {
        SnapshotEstimate {
            heap_used_bytes,
            extra_memory_bytes: heap_used_bytes.saturating_mul(self.extra_memory_factor),
            pause_ms: heap_used_bytes.saturating_mul(self.pause_ms_per_mb) >> 20,
            file_bytes: heap_used_bytes.saturating_mul(self.file_tenths) / 10,
            headroom_bytes,
        }
    }

    /// `Err` with an operator-readable reason when the snapshot would likely exhaust memory.
    pub fn check(&self, est: &SnapshotEstimate, force: bool) -> Result<(), String> {
        let Some(headroom) = est.headroom_bytes else {
            return Ok(());
        };
        if force || est.extra_memory_bytes <= headroom {
            return Ok(());
        }
        Err(format!(
            "refusing heap snapshot: V8 needs ~{} MB of extra memory (about {}x the {} MB live heap on this \
             Node line) but the process can only grow by {} MB before hitting its memory limit, so it would \
             likely be OOM-killed; it would also pause JavaScript for ~{} s. Send the command with \
             \"force\": true to take it anyway",
            est.extra_memory_bytes >> 20,
            self.extra_memory_factor,
            est.heap_used_bytes >> 20,
            headroom >> 20,
            est.pause_ms / 1000
        ))
    }
}

/// `v24.22.3` → 24.
fn node_major(version: &str) -> Option<u32> {
    version.trim_start_matches('v').split('.').next()?.parse().ok()
}

/// Bytes this process may still grow: the tighter of MemAvailable and the cgroup limit.
pub fn memory_headroom() -> Option<u64> {
    perf_proc_metrics::memory_headroom().ok().map(|h| h.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_measured_factors_per_line() {
        let e = SnapshotCost::for_node("v20.20.2").estimate(500 << 20, Some(1 << 30));
        assert_eq!(e.extra_memory_bytes, 7000 << 20);
        assert_eq!(e.pause_ms, 57_500);
        assert_eq!(e.file_bytes, 1000 << 20);
        let e = SnapshotCost::for_node("v24.22.3").estimate(500 << 20, None);
        assert_eq!(e.extra_memory_bytes, 6500 << 20);
        assert_eq!(e.pause_ms, 31_000);
        assert_eq!(e.file_bytes, 900 << 20);
        assert_eq!(SnapshotCost::for_node("v22.23.5"), SnapshotCost::NODE_22_PLUS);
        assert_eq!(SnapshotCost::for_node("v26.12.1"), SnapshotCost::NODE_22_PLUS);
        assert_eq!(SnapshotCost::for_node(""), SnapshotCost::NODE_20);
    }

    #[test]
    fn a_174_mb_heap_is_refused_where_the_measured_peak_would_not_fit() {
        // Node 24 measured +2.2 GB for 174 MB: 2 GB of headroom must not be enough.
        let cost = SnapshotCost::for_node("v24.22.3");
        let e = cost.estimate(174 << 20, Some(2 << 30));
        assert!(cost.check(&e, false).is_err());
        let e = cost.estimate(174 << 20, Some(3 << 30));
        assert!(cost.check(&e, false).is_ok());
    }

    #[test]
    fn refuses_without_headroom_unless_forced() {
        let cost = SnapshotCost::for_node("v20.20.2");
        let e = cost.estimate(500 << 20, Some(1 << 30));
        let msg = cost.check(&e, false).unwrap_err();
        assert!(msg.contains("OOM") && msg.contains("force") && msg.contains("14x"), "{msg}");
        assert!(cost.check(&e, true).is_ok());
        assert!(cost.check(&cost.estimate(10 << 20, Some(1 << 30)), false).is_ok());
        assert!(cost.check(&cost.estimate(10 << 30, None), false).is_ok());
    }

    #[test]
    fn headroom_is_known_here() {
        assert!(memory_headroom().is_some_and(|b| b > 0), "this machine has /proc/meminfo");
    }
}
