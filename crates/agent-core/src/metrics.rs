//! Process metrics on the agent's native thread. RSS, CPU, host load and cgroup figures are read
//! here from /proc, so they keep flowing while JavaScript is stuck; the JS thread contributes its
//! own sample (heap, event loop, GC, HTTP) and a heartbeat every 250 ms. A missing heartbeat
//! beyond the threshold is a stall: the process is reported `blocked` at once (not at the next
//! interval), and `running` again as soon as JS beats.

use crate::Inner;
use perf_proc_metrics::{NativeSampler, StallDetector, StallState};
use perf_protocol::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the stall detector is checked.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Largest JS sample accepted (a sample is a few KB).
pub const MAX_JS_SAMPLE_BYTES: usize = 256 * 1024;

#[derive(Default)]
pub(crate) struct MetricsState {
    stall: Mutex<StallDetector>,
    /// The latest JS sample and when it arrived.
    js_sample: Mutex<Option<(Instant, serde_json::Value)>>,
}

impl MetricsState {
    pub fn new(threshold: Duration) -> Self {
        Self { stall: Mutex::new(StallDetector::new(threshold)), js_sample: Mutex::new(None) }
    }

    pub fn js_beat(&self) {
        if let Ok(mut s) = self.stall.lock() {
            s.js_beat(Instant::now());
        }
    }

    pub fn set_js_sample(&self, sample: serde_json::Value) {
        if let Ok(mut s) = self.js_sample.lock() {
            *s = Some((Instant::now(), sample));
        }
    }

    pub fn is_blocked(&self) -> bool {
        matches!(self.stall_state(Instant::now()), StallState::Blocked { .. })
    }

    fn stall_state(&self, now: Instant) -> StallState {
        self.stall.lock().map(|s| s.check(now)).unwrap_or(StallState::Running)
    }

    /// The JS sample if it is recent (JS may be blocked and not sending any).
    fn fresh_js_sample(&self, max_age: Duration) -> Option<serde_json::Value> {
        let s = self.js_sample.lock().ok()?;
        s.as_ref().filter(|(t, _)| t.elapsed() <= max_age).map(|(_, v)| v.clone())
    }
}

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut sampler = NativeSampler::new();
    let interval = inner.config.metrics_interval;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut last_sent: Option<Instant> = None;
    let mut was_blocked = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let stall = inner.metrics.stall_state(now);
        let blocked = matches!(stall, StallState::Blocked { .. });
        let due = last_sent.is_none_or(|t| now.duration_since(t) >= interval);
        if !(due || blocked != was_blocked) || !inner.is_connected() {
            continue;
        }
        let sample = compose(&mut sampler, &stall, inner.metrics.fresh_js_sample(interval * 2));
        inner.send(Message::Metrics { sample });
        last_sent = Some(now);
        was_blocked = blocked;
    }
}

fn compose(sampler: &mut NativeSampler, stall: &StallState, js: Option<serde_json::Value>) -> serde_json::Value {
    let (state, blocked_ms) = match stall {
        StallState::Running => ("running", 0),
        StallState::Blocked { for_ms, .. } => ("blocked", *for_ms),
    };
    serde_json::json!({
        "ts": perf_protocol::unix_ms(),
        "state": state,
        "blocked_ms": blocked_ms,
        "native": sampler.sample(),
        "js": js,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_has_native_figures_and_state() {
        let mut sampler = NativeSampler::new();
        let s = compose(&mut sampler, &StallState::Running, None);
        assert_eq!(s["state"], "running");
        assert!(s["native"]["process"]["rss_bytes"].as_u64().unwrap_or(0) > 0, "{s}");
        assert!(s["js"].is_null());
    }

    #[test]
    fn stale_js_samples_are_dropped() {
        let m = MetricsState::new(Duration::from_secs(1));
        m.set_js_sample(serde_json::json!({"heap": 1}));
        assert!(m.fresh_js_sample(Duration::from_secs(5)).is_some());
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.fresh_js_sample(Duration::from_millis(1)).is_none());
    }
}
