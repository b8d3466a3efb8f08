//! Is it safe to take a heap snapshot now? Estimates what it will cost the process from the live
//! heap and compares that with how much memory the process may still use.
//!
//! Measured on Node 20 with object-dense heaps (FIELD-NOTES and bench/snapshot): V8 needs 7-8.7x
//! the live heap in extra memory while building a snapshot (8.3-8.7x at 500 MB, so we assume
//! 9x), pauses the JS thread ~100-115 ms per MB of live heap, and the file is ~1.7-1.9x the
//! heap. Refusing beats getting the process OOM-killed.

use perf_protocol::SnapshotEstimate;

const EXTRA_MEMORY_FACTOR: u64 = 9;
const PAUSE_MS_PER_MB: u64 = 115;

pub fn estimate_snapshot(heap_used_bytes: u64, headroom_bytes: Option<u64>) -> SnapshotEstimate {
    SnapshotEstimate {
        heap_used_bytes,
        extra_memory_bytes: heap_used_bytes.saturating_mul(EXTRA_MEMORY_FACTOR),
        pause_ms: heap_used_bytes.saturating_mul(PAUSE_MS_PER_MB) >> 20,
        file_bytes: heap_used_bytes.saturating_mul(19) / 10,
        headroom_bytes,
    }
}

/// `Err` with an operator-readable reason when the snapshot would likely exhaust memory.
pub fn check(est: &SnapshotEstimate, force: bool) -> Result<(), String> {
    let Some(headroom) = est.headroom_bytes else { return Ok(()) };
    if force || est.extra_memory_bytes <= headroom {
        return Ok(());
    }
    Err(format!(
        "refusing heap snapshot: V8 needs ~{} MB of extra memory (about 9x the {} MB live heap) but the \
         process can only grow by {} MB before hitting its memory limit, so it would likely be OOM-killed; \
         it would also pause JavaScript for ~{} s. Send the command with \"force\": true to take it anyway",
        est.extra_memory_bytes >> 20,
        est.heap_used_bytes >> 20,
        headroom >> 20,
        est.pause_ms / 1000
    ))
}

/// Bytes this process may still grow: the tighter of MemAvailable and the cgroup limit.
pub fn memory_headroom() -> Option<u64> {
    perf_proc_metrics::memory_headroom().ok().map(|h| h.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_measured_factors() {
        let e = estimate_snapshot(500 << 20, Some(1 << 30));
        assert_eq!(e.extra_memory_bytes, 4500 << 20);
        assert_eq!(e.pause_ms, 57_500);
        assert_eq!(e.file_bytes, (500u64 << 20) * 19 / 10);
    }

    #[test]
    fn refuses_without_headroom_unless_forced() {
        let e = estimate_snapshot(500 << 20, Some(1 << 30));
        let msg = check(&e, false).unwrap_err();
        assert!(msg.contains("OOM") && msg.contains("force"), "{msg}");
        assert!(check(&e, true).is_ok());
        assert!(check(&estimate_snapshot(10 << 20, Some(1 << 30)), false).is_ok());
        assert!(check(&estimate_snapshot(10 << 30, None), false).is_ok());
    }

    #[test]
    fn headroom_is_known_here() {
        assert!(memory_headroom().is_some_and(|b| b > 0), "this machine has /proc/meminfo");
    }
}
