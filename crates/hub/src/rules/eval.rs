//! A metrics sample against a trigger: the figures a rule looks at, taken from the sample once,
//! and whether they fire it (with the reason the artifact and the audit show).

use super::Trigger;
use perf_protocol::MetricsSample;
use std::time::Instant;

/// The figures of one sample that triggers read (absent when the sample lacks them: a blocked
/// process sends no JS sample, so its heap figures are unknown, not zero).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub blocked_ms: Option<u64>,
    pub heap_used_bytes: Option<u64>,
    pub heap_limit_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    /// User + system, 100 = one core.
    pub cpu_percent: Option<f64>,
    /// The agent's own heavy command running when the sample was taken (or during this stall).
    pub own_capture: Option<String>,
}

impl Figures {
    pub fn of(s: &MetricsSample) -> Self {
        let heap = s.js.as_ref().and_then(|j| j.heap.as_ref());
        let process = s.native.as_ref().and_then(|n| n.process.as_ref());
        let cpu = process.and_then(|p| match (p.cpu_user_percent, p.cpu_system_percent) {
            (None, None) => None,
            (u, sys) => Some(u.unwrap_or(0.0) + sys.unwrap_or(0.0)),
        });
        Figures {
            blocked_ms: s.is_blocked().then_some(s.blocked_ms).flatten(),
            heap_used_bytes: heap.and_then(|h| h.used_bytes),
            heap_limit_bytes: heap.and_then(|h| h.limit_bytes),
            rss_bytes: process.and_then(|p| p.rss_bytes),
            cpu_percent: cpu,
            own_capture: s.agent_capture.clone(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "blocked_ms": self.blocked_ms, "heap_used_bytes": self.heap_used_bytes,
            "heap_limit_bytes": self.heap_limit_bytes, "rss_bytes": self.rss_bytes, "cpu_percent": self.cpu_percent,
        });
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, x| !x.is_null());
        }
        v
    }
}

/// The reason `trigger` fires on `f`, if it does. `cpu_above_since`: since when the CPU has been
/// above a `cpu_percent` trigger's threshold (tracked by the caller across samples).
pub fn fired(trigger: &Trigger, f: &Figures, cpu_above_since: Option<Instant>, now: Instant) -> Option<String> {
    match *trigger {
        Trigger::BlockedMs(limit) => {
            let ms = f.blocked_ms.filter(|ms| *ms >= limit)?;
            Some(format!("event loop blocked for {ms} ms (rule: blocked_ms >= {limit})"))
        }
        Trigger::HeapUsedRatio(limit) => {
            let (used, max) = (f.heap_used_bytes?, f.heap_limit_bytes.filter(|m| *m > 0)?);
            let ratio = used as f64 / max as f64;
            (ratio >= limit).then(|| {
                format!(
                    "heap used {used} of {max} bytes ({:.1} % of the limit; rule: heap_used_ratio >= {limit})",
                    ratio * 100.0
                )
            })
        }
        Trigger::RssBytes(limit) => {
            let rss = f.rss_bytes.filter(|r| *r >= limit)?;
            Some(format!("RSS {rss} bytes (rule: rss_bytes >= {limit})"))
        }
        Trigger::Cpu { percent, for_secs } => {
            let cpu = f.cpu_percent.filter(|c| *c > percent)?;
            let above = now.saturating_duration_since(cpu_above_since?).as_secs();
            (above >= for_secs)
                .then(|| format!("CPU {cpu:.0} % for {above} s (rule: cpu_percent > {percent} for {for_secs} s)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(json: serde_json::Value) -> MetricsSample {
        serde_json::from_value(json).expect("sample")
    }

    #[test]
    fn figures_come_from_the_sample_that_has_them() {
        let f = Figures::of(&sample(serde_json::json!({"state": "blocked", "blocked_ms": 1250,
            "native": {"process": {"rss_bytes": 100, "cpu_user_percent": 90.0, "cpu_system_percent": 5.5}},
            "js": {"heap": {"used_bytes": 80, "limit_bytes": 100}}})));
        assert_eq!(f.blocked_ms, Some(1250));
        assert_eq!(f.cpu_percent, Some(95.5));
        assert_eq!((f.heap_used_bytes, f.heap_limit_bytes, f.rss_bytes), (Some(80), Some(100), Some(100)));
        let running = Figures::of(&sample(serde_json::json!({"state": "running", "blocked_ms": 0, "js": null})));
        assert_eq!(running, Figures::default(), "a running loop has no stall, a blocked JS no heap figures");
    }

    #[test]
    fn each_trigger_fires_at_its_threshold_with_the_figures_in_its_reason() {
        let now = Instant::now();
        let f = Figures {
            blocked_ms: Some(1250),
            heap_used_bytes: Some(81),
            heap_limit_bytes: Some(100),
            rss_bytes: Some(2 << 20),
            cpu_percent: Some(97.0),
            own_capture: None,
        };
        let r = fired(&Trigger::BlockedMs(1000), &f, None, now).expect("stall");
        assert!(r.contains("1250 ms") && r.contains(">= 1000"), "{r}");
        assert_eq!(fired(&Trigger::BlockedMs(2000), &f, None, now), None);
        let r = fired(&Trigger::HeapUsedRatio(0.8), &f, None, now).expect("heap");
        assert!(r.contains("81.0 %"), "{r}");
        assert_eq!(fired(&Trigger::HeapUsedRatio(0.9), &f, None, now), None);
        assert!(fired(&Trigger::RssBytes(1 << 20), &f, None, now).is_some());
        assert_eq!(fired(&Trigger::RssBytes(4 << 20), &f, None, now), None);
        let cpu = Trigger::Cpu { percent: 90.0, for_secs: 30 };
        assert_eq!(fired(&cpu, &f, Some(now - Duration::from_secs(29)), now), None, "not long enough");
        let r = fired(&cpu, &f, Some(now - Duration::from_secs(31)), now).expect("cpu");
        assert!(r.contains("97 %") && r.contains("31 s"), "{r}");
        assert_eq!(fired(&cpu, &Figures { cpu_percent: Some(50.0), ..f.clone() }, Some(now), now), None);
        assert_eq!(fired(&Trigger::HeapUsedRatio(0.5), &Figures::default(), None, now), None, "unknown is not zero");
    }
}
