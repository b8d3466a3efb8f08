//! Bounds on the metrics samples agents send, so one agent (authenticated, but perhaps
//! compromised or broken) can't grow the hub's store, memory or `/metrics` without end:
//!
//! - size: a sample frame over `max_sample_bytes` is dropped ([`DropReason::TooLarge`]);
//! - rate: each link has a token bucket of `samples_per_sec` (burst `sample_burst`); a sample
//!   without a token is dropped ([`DropReason::Rate`]);
//! - cardinality: the maps keyed by names the process chooses (`heap.spaces`, `gc.by_kind`,
//!   `resources`) keep at most [`MAX_MAP_KEYS`] keys of at most [`MAX_KEY_LEN`] bytes; the rest
//!   of the keys are dropped and counted ([`bound_sample`]). (`extra` fields are stored as
//!   sent, within the size bound, and never exported.)
//!
//! Drops are counted by reason and exported as `perf_hub_samples_dropped_total{reason}` and
//! `perf_hub_sample_keys_dropped_total`.

use perf_protocol::MetricsSample;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Most keys kept per map of a sample (V8 has ≈ 10 heap spaces and 4 GC kinds).
pub const MAX_MAP_KEYS: usize = 64;
/// Longest key kept.
pub const MAX_KEY_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    TooLarge,
    Rate,
}

impl DropReason {
    pub const ALL: [DropReason; 2] = [DropReason::TooLarge, DropReason::Rate];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooLarge => "too_large",
            DropReason::Rate => "rate",
        }
    }
}

/// What was dropped so far, by reason.
#[derive(Default)]
pub struct DropCounts {
    samples: [AtomicU64; 2],
    keys: AtomicU64,
}

impl DropCounts {
    pub fn sample(&self, r: DropReason) {
        self.samples[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn keys(&self, n: u64) {
        self.keys.fetch_add(n, Ordering::Relaxed);
    }

    pub fn samples_dropped(&self, r: DropReason) -> u64 {
        self.samples[r as usize].load(Ordering::Relaxed)
    }

    pub fn keys_dropped(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }
}

/// One link's sample budget: a token bucket.
pub struct SampleRate {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl SampleRate {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        Self { per_sec: per_sec.max(0.0), burst, tokens: burst, last: Instant::now() }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Cuts the process-named maps of `sample` to their bounds; returns how many keys it dropped.
pub fn bound_sample(sample: &mut MetricsSample) -> u64 {
    let Some(js) = sample.js.as_mut() else { return 0 };
    let mut dropped = 0;
    if let Some(spaces) = js.heap.as_mut().and_then(|h| h.spaces.as_mut()) {
        dropped += bound_map(spaces);
    }
    if let Some(kinds) = js.gc.as_mut().and_then(|g| g.by_kind.as_mut()) {
        dropped += bound_map(kinds);
    }
    if let Some(resources) = js.resources.as_mut() {
        dropped += bound_map(resources);
    }
    dropped
}

fn bound_map<V>(m: &mut BTreeMap<String, V>) -> u64 {
    let before = m.len();
    m.retain(|k, _| k.len() <= MAX_KEY_LEN);
    while m.len() > MAX_MAP_KEYS {
        m.pop_last();
    }
    (before - m.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_at_most_their_bound() {
        let kinds: serde_json::Map<String, serde_json::Value> =
            (0..1000).map(|i| (format!("kind{i:04}"), serde_json::json!({"count": 1}))).collect();
        let long = "x".repeat(MAX_KEY_LEN + 1);
        let mut s: MetricsSample = serde_json::from_value(serde_json::json!({
            "js": {"gc": {"by_kind": kinds}, "resources": {long: 1, "TCPWrap": 2}}
        }))
        .expect("sample");
        assert_eq!(bound_sample(&mut s), 1000 - MAX_MAP_KEYS as u64 + 1);
        let js = s.js.expect("js");
        assert_eq!(js.gc.and_then(|g| g.by_kind).map(|m| m.len()), Some(MAX_MAP_KEYS));
        assert_eq!(js.resources.map(|r| r.into_keys().collect::<Vec<_>>()), Some(vec!["TCPWrap".to_string()]));
    }

    #[test]
    fn the_bucket_allows_its_burst_then_refuses() {
        let mut r = SampleRate::new(0.0, 3.0);
        assert_eq!((0..10).filter(|_| r.allow()).count(), 3);
    }
}
