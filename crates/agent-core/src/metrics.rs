//! Process metrics on the agent's native thread. RSS, CPU, host load and cgroup figures are read
//! here from /proc, so they keep flowing while JavaScript is stuck; the JS thread contributes its
//! own sample (heap, event loop, GC, HTTP) and a heartbeat every 250 ms. A missing heartbeat
//! beyond the threshold is a stall: the process is reported `blocked` at once (not at the next
//! interval), and `running` again as soon as JS beats.
//!
//! The sample is a [`MetricsSample`]: the JS sample is parsed once, on arrival, into its typed
//! part ([`JsSample`]; JSON that is not an object is refused), and the native figures are mapped
//! field by field, so nothing here goes through untyped JSON.

use crate::Inner;
use perf_proc_metrics::{NativeSampler, StallDetector, StallState};
use perf_protocol::{JsSample, Message, MetricsSample, NativeCgroup, NativeHost, NativeProcess, NativeSample};
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
    js_sample: Mutex<Option<(Instant, JsSample)>>,
    /// The agent's own pausing capture seen during the current stall (see `MetricsSample::agent_capture`).
    own_pause: Mutex<Option<String>>,
}

impl MetricsState {
    pub fn new(threshold: Duration) -> Self {
        Self {
            stall: Mutex::new(StallDetector::new(threshold)),
            js_sample: Mutex::new(None),
            own_pause: Mutex::new(None),
        }
    }

    pub fn last_beat(&self) -> Option<Instant> {
        self.stall.lock().ok().and_then(|s| s.last_beat())
    }

    /// Whether the agent's own heap snapshot ran during the current stall.
    pub fn own_pause_in_stall(&self) -> bool {
        self.own_pause.lock().map(|p| p.is_some()).unwrap_or(false)
    }

    /// Tracks the agent's own pausing capture across a stall: kept while blocked, cleared once
    /// JS runs again (unless one is running right now). Returns what the sample reports.
    fn note_own_pause(&self, blocked: bool, pausing_now: Option<String>) -> Option<String> {
        let Ok(mut own) = self.own_pause.lock() else { return pausing_now };
        *own = match (blocked, pausing_now) {
            (true, Some(id)) => Some(id),
            (true, None) => own.take(),
            (false, now) => now,
        };
        own.clone()
    }

    pub fn js_beat(&self) {
        if let Ok(mut s) = self.stall.lock() {
            s.js_beat(Instant::now());
        }
    }

    pub fn set_js_sample(&self, sample: JsSample) {
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
    fn fresh_js_sample(&self, max_age: Duration) -> Option<JsSample> {
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
        let own_pause = inner.metrics.note_own_pause(blocked, inner.pausing_capture());
        let due = last_sent.is_none_or(|t| now.duration_since(t) >= interval);
        if !(due || blocked != was_blocked) || !inner.is_connected() {
            continue;
        }
        let mut sample = compose(&mut sampler, &stall, inner.metrics.fresh_js_sample(interval * 2));
        sample.agent_capture = own_pause;
        inner.send(Message::Metrics { sample: Box::new(sample) });
        last_sent = Some(now);
        was_blocked = blocked;
    }
}

fn compose(sampler: &mut NativeSampler, stall: &StallState, js: Option<JsSample>) -> MetricsSample {
    let (state, blocked_ms) = match stall {
        StallState::Running => ("running", 0),
        StallState::Blocked { for_ms, .. } => ("blocked", *for_ms),
    };
    MetricsSample {
        ts: Some(perf_protocol::unix_ms()),
        state: Some(state.to_string()),
        blocked_ms: Some(blocked_ms),
        native: Some(native(sampler.sample())),
        js,
        agent_capture: None,
        extra: Default::default(),
    }
}

/// proc-metrics' sample in the wire type (same field names).
fn native(s: perf_proc_metrics::NativeSample) -> NativeSample {
    NativeSample {
        process: s.process.map(|p| NativeProcess {
            pid: Some(p.pid),
            rss_bytes: Some(p.rss_bytes),
            rss_peak_bytes: Some(p.rss_peak_bytes),
            vm_size_bytes: Some(p.vm_size_bytes),
            threads: Some(p.threads),
            open_fds: p.open_fds,
            cpu_user_percent: Some(p.cpu_user_percent),
            cpu_system_percent: Some(p.cpu_system_percent),
            cpu_user_seconds_total: Some(p.cpu_user_seconds_total),
            cpu_system_seconds_total: Some(p.cpu_system_seconds_total),
            extra: Default::default(),
        }),
        host: s.host.map(|h| NativeHost {
            load_avg_1: Some(h.load_avg_1),
            load_avg_5: Some(h.load_avg_5),
            load_avg_15: Some(h.load_avg_15),
            mem_total_bytes: Some(h.mem_total_bytes),
            mem_free_bytes: Some(h.mem_free_bytes),
            mem_available_bytes: Some(h.mem_available_bytes),
            cpu_count: Some(h.cpu_count),
            uptime_seconds: Some(h.uptime_seconds),
            extra: Default::default(),
        }),
        cgroup: s.cgroup.map(|c| NativeCgroup {
            version: Some(c.version),
            dir: Some(c.dir),
            limit_bytes: c.limit_bytes,
            usage_bytes: c.usage_bytes,
            working_set_bytes: c.working_set_bytes,
            extra: Default::default(),
        }),
        errors: Some(s.errors),
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_has_native_figures_and_state() {
        let mut sampler = NativeSampler::new();
        let s = compose(&mut sampler, &StallState::Running, None);
        assert_eq!(s.state.as_deref(), Some("running"));
        assert!(s.native.as_ref().and_then(|n| n.process.as_ref()).and_then(|p| p.rss_bytes).unwrap_or(0) > 0, "{s:?}");
        assert!(s.js.is_none());
        // On the wire: the same JSON names as proc-metrics' own serialisation, `js: null`.
        let v = serde_json::to_value(&s).expect("json");
        assert!(v["js"].is_null() && v["blocked_ms"] == 0, "{v}");
        let direct = serde_json::to_value(NativeSampler::new().sample()).expect("json");
        let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&v["native"]), keys(&direct));
        assert_eq!(keys(&v["native"]["process"]), keys(&direct["process"]));
        assert_eq!(keys(&v["native"]["host"]), keys(&direct["host"]));
    }

    #[test]
    fn js_sample_is_typed_once_and_keeps_unknown_fields() {
        let js: JsSample = serde_json::from_str(
            r#"{"ts": 5, "heap": {"used_bytes": 100, "novel": 1}, "http_server": {"count": 2,
                "latency_histogram": {"sum_ms": 3.5, "count": 2, "buckets": [[1, 0], [2.5, 1], [5, 2]]}}}"#,
        )
        .expect("typed");
        let mut sampler = NativeSampler::new();
        let s = compose(&mut sampler, &StallState::Blocked { for_ms: 1500, since: Instant::now() }, Some(js));
        assert!(s.is_blocked() && s.blocked_ms == Some(1500));
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["js"]["heap"]["novel"], 1);
        assert_eq!(v["js"]["http_server"]["latency_histogram"]["buckets"][2], serde_json::json!([5.0, 2]));
        // What the addon refuses (report_js_metrics): not an object.
        assert!(serde_json::from_str::<JsSample>("42").is_err());
        assert!(serde_json::from_str::<JsSample>("null").is_err());
    }

    #[test]
    fn stale_js_samples_are_dropped() {
        let m = MetricsState::new(Duration::from_secs(1));
        m.set_js_sample(serde_json::from_str(r#"{"heap": {"used_bytes": 1}}"#).expect("js"));
        assert!(m.fresh_js_sample(Duration::from_secs(5)).is_some());
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.fresh_js_sample(Duration::from_millis(1)).is_none());
    }
}
