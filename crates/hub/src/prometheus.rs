//! `GET /metrics`: the latest figures of every known process in Prometheus text format
//! (labels: app, hostname, pid, process_id and the process's own labels as `label_<name>`),
//! plus counters and latency histograms the hub accumulates from the agents' per-interval
//! samples. Every figure is read from a field of [`MetricsSample`], never by JSON path.
//!
//! HTTP latency is exported as Prometheus histograms
//! (`perf_process_http_server_request_duration_seconds` and
//! `perf_process_http_client_request_duration_seconds{client="http"|"undici"}`, with
//! `_bucket{le}` / `_sum` / `_count`), so PromQL can aggregate across the workers of an app:
//! `histogram_quantile(0.99, sum by (app, le) (rate(…_bucket[5m])))`. Bounds are
//! [`LATENCY_BUCKETS_MS`] (in seconds here) and +Inf.

use crate::admission::{Admission, Refusal};
use crate::sample_limits::{DropCounts, DropReason};
use crate::store::ProcessRecord;
use perf_protocol::{JsSample, LatencyHistogram, MetricsSample, NativeHost, NativeSample, LATENCY_BUCKETS_MS};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

/// (counter name, label pairs rendered) → value
type Totals = BTreeMap<(&'static str, String), f64>;

const GC_TOTAL: &str = "perf_process_gc_total";
const GC_PAUSE_TOTAL: &str = "perf_process_gc_pause_seconds_total";
const SERVER_REQUESTS_TOTAL: &str = "perf_process_http_server_requests_total";
const CLIENT_REQUESTS_TOTAL: &str = "perf_process_http_client_requests_total";
const CLIENT_ERRORS_TOTAL: &str = "perf_process_http_client_errors_total";
const SERVER_DURATION: &str = "perf_process_http_server_request_duration_seconds";
const CLIENT_DURATION: &str = "perf_process_http_client_request_duration_seconds";

const N_BOUNDS: usize = LATENCY_BUCKETS_MS.len();

/// Most counter series the hub accumulates per process: a sample's GC kinds are bounded
/// ([`crate::sample_limits::MAX_MAP_KEYS`]), but each sample could bring new ones; beyond this
/// new series are dropped and counted (a real process has ≈ 4 kinds: ≈ 20 series).
pub const MAX_COUNTER_SERIES: usize = 256;

/// A latency histogram accumulated across samples: cumulative counts at [`LATENCY_BUCKETS_MS`],
/// then +Inf, which is `count`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: [f64; N_BOUNDS],
    sum_seconds: f64,
    count: f64,
}

impl Histogram {
    /// Adds one interval. The sent counts are re-binned onto the hub's bounds and made
    /// cumulative and ≤ count ([`LatencyHistogram::cumulative_at`]), so the totals stay a valid
    /// histogram whatever an agent sends.
    fn add(&mut self, h: &LatencyHistogram) {
        for (acc, c) in self.buckets.iter_mut().zip(h.cumulative_at(&LATENCY_BUCKETS_MS)) {
            *acc += c as f64;
        }
        self.count += h.count as f64;
        if h.sum_ms.is_finite() && h.sum_ms > 0.0 {
            self.sum_seconds += h.sum_ms / 1000.0;
        }
    }
}

/// What the hub accumulates for one process.
#[derive(Debug, Clone, Default)]
struct ProcessTotals {
    counters: Totals,
    /// (family, label pairs rendered) → histogram
    histograms: BTreeMap<(&'static str, String), Histogram>,
}

/// Running totals per process (reset when the hub restarts, as Prometheus counters may be).
#[derive(Default)]
pub struct Counters {
    by_process: Mutex<HashMap<String, ProcessTotals>>,
}

impl Counters {
    /// Adds the interval counts of one sample; returns how many new series it could not add
    /// ([`MAX_COUNTER_SERIES`]).
    pub fn add_sample(&self, process_id: &str, sample: &MetricsSample) -> u64 {
        let Some(js) = sample.js.as_ref() else { return 0 };
        let Ok(mut all) = self.by_process.lock() else { return 0 };
        let t = all.entry(process_id.to_string()).or_default();
        let mut refused = 0;
        if let Some(kinds) = js.gc.as_ref().and_then(|g| g.by_kind.as_ref()) {
            for (kind, k) in kinds {
                let l = format!("kind=\"{}\"", escape(kind));
                let new_series = !t.counters.contains_key(&(GC_TOTAL, l.clone()));
                if new_series && t.counters.len() + 2 > MAX_COUNTER_SERIES {
                    refused += 1;
                    continue;
                }
                add(&mut t.counters, GC_TOTAL, &l, k.count.map(|n| n as f64));
                add(&mut t.counters, GC_PAUSE_TOTAL, &l, k.pause_ms.map(|ms| ms / 1000.0));
            }
        }
        if let Some(http) = &js.http_server {
            for class in 2..=5u8 {
                let l = format!("status_class=\"{class}xx\"");
                add(&mut t.counters, SERVER_REQUESTS_TOTAL, &l, http.status(class).map(|n| n as f64));
            }
            add_histogram(&mut t.histograms, SERVER_DURATION, String::new(), http.latency_histogram.as_ref());
        }
        for (stats, client) in [(&js.http_client, "http"), (&js.undici, "undici")] {
            if let Some(c) = stats {
                let l = format!("client=\"{client}\"");
                add(&mut t.counters, CLIENT_REQUESTS_TOTAL, &l, c.count.map(|n| n as f64));
                add(&mut t.counters, CLIENT_ERRORS_TOTAL, &l, c.errors.map(|n| n as f64));
                add_histogram(&mut t.histograms, CLIENT_DURATION, l, c.latency_histogram.as_ref());
            }
        }
        refused
    }

    /// Drops the totals of a process the hub no longer lists.
    pub fn forget(&self, process_id: &str) {
        if let Ok(mut m) = self.by_process.lock() {
            m.remove(process_id);
        }
    }

    fn totals(&self, process_id: &str) -> ProcessTotals {
        self.by_process.lock().ok().and_then(|m| m.get(process_id).cloned()).unwrap_or_default()
    }
}

/// A process's histogram series appear with its first timed request of that kind (as counters
/// appear with their first count), so a fleet doesn't carry 14 idle series per process for each
/// kind of traffic it never makes.
fn add_histogram(
    t: &mut BTreeMap<(&'static str, String), Histogram>,
    name: &'static str,
    labels: String,
    h: Option<&LatencyHistogram>,
) {
    if let Some(h) = h.filter(|h| h.count > 0) {
        t.entry((name, labels)).or_default().add(h);
    }
}

fn add(t: &mut Totals, name: &'static str, labels: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite() && *v > 0.0) {
        *t.entry((name, labels.to_string())).or_insert(0.0) += v;
    }
}

/// Escapes a label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A label name from a user's label key: `[a-zA-Z_][a-zA-Z0-9_]*`, prefixed `label_`.
fn label_name(k: &str) -> String {
    let clean: String = k.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("label_{clean}")
}

/// Metric families, kept together as the text format requires.
#[derive(Default)]
struct Families {
    fams: BTreeMap<&'static str, (&'static str, &'static str, Vec<String>)>,
}

impl Families {
    fn push(&mut self, name: &'static str, kind: &'static str, help: &'static str, labels: &str, v: f64) {
        if !v.is_finite() {
            return;
        }
        let fam = self.fams.entry(name).or_insert((kind, help, Vec::new()));
        fam.2.push(if labels.is_empty() { format!("{name} {v}") } else { format!("{name}{{{labels}}} {v}") });
    }

    /// One line of a family whose lines are not `name{labels} value` (histograms).
    fn push_line(&mut self, name: &'static str, kind: &'static str, help: &'static str, line: String) {
        self.fams.entry(name).or_insert((kind, help, Vec::new())).2.push(line);
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (name, (kind, help, lines)) in self.fams {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }
}

/// A process's labels, and how many of its own labels were left out because their sanitised
/// names collide with an earlier one (`x-y`, `x_y` and `x.y` are all `label_x_y`): Prometheus
/// rejects a whole scrape with a label name twice on one series. The first in key order wins.
fn base_labels(p: &ProcessRecord) -> (String, usize) {
    let mut l = format!(
        "app=\"{}\",hostname=\"{}\",pid=\"{}\",process_id=\"{}\"",
        escape(&p.app),
        escape(&p.hostname),
        p.pid,
        p.id
    );
    let mut names = std::collections::HashSet::new();
    let mut collisions = 0;
    for (k, v) in &p.labels {
        let name = label_name(k);
        if names.insert(name.clone()) {
            let _ = write!(l, ",{name}=\"{}\"", escape(v));
        } else {
            collisions += 1;
        }
    }
    (l, collisions)
}

fn with(base: &str, extra: &str) -> String {
    format!("{base},{extra}")
}

/// Renders every process with its latest sample, and the hub's own drop counts.
pub fn render(processes: &[(ProcessRecord, Option<MetricsSample>)], counters: &Counters, hub: &HubFigures) -> String {
    let mut f = Families::default();
    hub_drop_figures(&mut f, hub.drops);
    if let Some(a) = hub.admission {
        admission_figures(&mut f, a);
    }
    let mut collisions = 0;
    let connected = processes.iter().filter(|(p, _)| p.connected).count();
    f.push("perf_hub_processes", "gauge", "Processes known to the hub.", "state=\"connected\"", connected as f64);
    f.push(
        "perf_hub_processes",
        "gauge",
        "Processes known to the hub.",
        "state=\"disconnected\"",
        (processes.len() - connected) as f64,
    );
    let mut hosts: BTreeMap<&str, &NativeHost> = BTreeMap::new();
    for (p, sample) in processes {
        let (b, dropped_labels) = base_labels(p);
        collisions += dropped_labels;
        f.push("perf_process_up", "gauge", "1 if the process's agent is connected.", &b, p.connected as u8 as f64);
        f.push(
            "perf_process_blocked",
            "gauge",
            "1 while the JS main thread is blocked.",
            &b,
            (p.state == "blocked") as u8 as f64,
        );
        f.push(
            "perf_process_blocked_seconds",
            "gauge",
            "How long the JS main thread has been blocked.",
            &b,
            p.blocked_ms as f64 / 1000.0,
        );
        if let Some(s) = sample {
            if let Some(n) = &s.native {
                native_figures(&mut f, &b, n);
                if let Some(h) = &n.host {
                    hosts.insert(&p.hostname, h);
                }
            }
            if let Some(js) = &s.js {
                js_figures(&mut f, &b, js);
            }
        }
        let totals = counters.totals(&p.id);
        for ((name, labels), v) in totals.counters {
            push_counter(&mut f, name, &with(&b, &labels), v);
        }
        for ((name, labels), h) in &totals.histograms {
            let l = if labels.is_empty() { b.clone() } else { with(&b, labels) };
            push_histogram(&mut f, name, &l, h);
        }
    }
    for (host, h) in hosts {
        host_figures(&mut f, &format!("hostname=\"{}\"", escape(host)), h);
    }
    f.push(
        "perf_hub_label_collisions",
        "gauge",
        "Process labels left out of this scrape: their sanitised names collide with another label of the process.",
        "",
        collisions as f64,
    );
    f.render()
}

/// What the hub counts about itself (beside the processes' figures).
pub struct HubFigures<'a> {
    pub drops: &'a DropCounts,
    pub admission: Option<&'a Admission>,
}

fn admission_figures(f: &mut Families, a: &Admission) {
    let (open, unauthenticated) = a.open();
    let help = "Agent connections open, and of them those not authenticated yet.";
    f.push("perf_hub_agent_connections", "gauge", help, "state=\"open\"", open as f64);
    f.push("perf_hub_agent_connections", "gauge", help, "state=\"unauthenticated\"", unauthenticated as f64);
    let limits = a.limits();
    let help = "Agent connection limits.";
    for (kind, v) in [
        ("connections", limits.connections),
        ("unauthenticated", limits.unauthenticated),
        ("unauthenticated_per_addr", limits.unauthenticated_per_addr),
    ] {
        f.push("perf_hub_agent_connection_limit", "gauge", help, &format!("limit=\"{kind}\""), v as f64);
    }
    for r in Refusal::ALL {
        f.push(
            "perf_hub_agent_connections_refused_total",
            "counter",
            "Agent connections closed at once because a limit was reached.",
            &format!("reason=\"{}\"", r.as_str()),
            a.refused(r) as f64,
        );
    }
}

fn hub_drop_figures(f: &mut Families, drops: &DropCounts) {
    for r in DropReason::ALL {
        f.push(
            "perf_hub_samples_dropped_total",
            "counter",
            "Metrics samples the hub dropped: too large, or over the link's rate.",
            &format!("reason=\"{}\"", r.as_str()),
            drops.samples_dropped(r) as f64,
        );
    }
    f.push(
        "perf_hub_sample_keys_dropped_total",
        "counter",
        "Keys of process-named maps (GC kinds, heap spaces, resources) dropped by the hub's bounds.",
        "",
        drops.keys_dropped() as f64,
    );
}

fn push_counter(f: &mut Families, name: &'static str, labels: &str, v: f64) {
    let help = match name {
        GC_TOTAL => "Garbage collections by kind.",
        GC_PAUSE_TOTAL => "Time paused in GC by kind.",
        SERVER_REQUESTS_TOTAL => "Incoming HTTP requests by status class.",
        CLIENT_REQUESTS_TOTAL => "Outgoing HTTP requests.",
        CLIENT_ERRORS_TOTAL => "Outgoing HTTP requests that failed.",
        _ => return,
    };
    f.push(name, "counter", help, labels, v);
}

/// `_bucket{le}` for each bound and +Inf, then `_sum` and `_count`: one series of the family.
fn push_histogram(f: &mut Families, name: &'static str, labels: &str, h: &Histogram) {
    let help = match name {
        SERVER_DURATION => "Incoming HTTP request latency, request start to response finish.",
        CLIENT_DURATION => "Outgoing HTTP request latency, request start to response headers, by client.",
        _ => return,
    };
    if !(h.count.is_finite() && h.sum_seconds.is_finite()) {
        return;
    }
    for (ms, c) in LATENCY_BUCKETS_MS.iter().zip(h.buckets) {
        let le = ms / 1000.0;
        f.push_line(name, "histogram", help, format!("{name}_bucket{{{labels},le=\"{le}\"}} {c}"));
    }
    let count = h.count;
    f.push_line(name, "histogram", help, format!("{name}_bucket{{{labels},le=\"+Inf\"}} {count}"));
    f.push_line(name, "histogram", help, format!("{name}_sum{{{labels}}} {}", h.sum_seconds));
    f.push_line(name, "histogram", help, format!("{name}_count{{{labels}}} {count}"));
}

fn native_figures(f: &mut Families, b: &str, n: &NativeSample) {
    if let Some(p) = &n.process {
        if let Some(v) = p.rss_bytes {
            f.push("perf_process_resident_memory_bytes", "gauge", "Resident set size.", b, v as f64);
        }
        for (mode, total, percent) in [
            ("user", p.cpu_user_seconds_total, p.cpu_user_percent),
            ("system", p.cpu_system_seconds_total, p.cpu_system_percent),
        ] {
            let l = with(b, &format!("mode=\"{mode}\""));
            if let Some(v) = total {
                f.push("perf_process_cpu_seconds_total", "counter", "CPU time by mode.", &l, v);
            }
            if let Some(v) = percent {
                f.push("perf_process_cpu_percent", "gauge", "CPU use over the last interval (100 = one core).", &l, v);
            }
        }
        if let Some(v) = p.threads {
            f.push("perf_process_threads", "gauge", "OS threads.", b, v as f64);
        }
        if let Some(v) = p.open_fds {
            f.push("perf_process_open_fds", "gauge", "Open file descriptors.", b, v as f64);
        }
    }
    if let Some(v) = n.cgroup.as_ref().and_then(|c| c.limit_bytes) {
        f.push("perf_process_cgroup_memory_limit_bytes", "gauge", "Memory limit of the process's cgroup.", b, v as f64);
    }
}

fn js_figures(f: &mut Families, b: &str, js: &JsSample) {
    if let Some(h) = &js.heap {
        let heap: [(Option<u64>, &'static str, &'static str); 5] = [
            (h.used_bytes, "perf_process_heap_used_bytes", "V8 heap in use."),
            (h.total_bytes, "perf_process_heap_total_bytes", "V8 heap committed."),
            (h.limit_bytes, "perf_process_heap_limit_bytes", "V8 heap size limit."),
            (h.external_bytes, "perf_process_external_memory_bytes", "Memory of C++ objects bound to JS."),
            (h.array_buffers_bytes, "perf_process_array_buffers_bytes", "Memory of ArrayBuffers and Buffers."),
        ];
        for (v, name, help) in heap {
            if let Some(v) = v {
                f.push(name, "gauge", help, b, v as f64);
            }
        }
        for (space, v) in h.spaces.iter().flatten() {
            if let Some(used) = v.used_bytes {
                f.push(
                    "perf_process_heap_space_used_bytes",
                    "gauge",
                    "V8 heap in use by space.",
                    &with(b, &format!("space=\"{}\"", escape(space))),
                    used as f64,
                );
            }
        }
    }
    if let Some(el) = &js.event_loop {
        for (q, v) in [("0.5", el.delay_p50_ms), ("0.99", el.delay_p99_ms), ("1", el.delay_max_ms)] {
            if let Some(v) = v {
                f.push(
                    "perf_process_event_loop_delay_seconds",
                    "gauge",
                    "Event loop delay over the last interval.",
                    &with(b, &format!("quantile=\"{q}\"")),
                    v / 1000.0,
                );
            }
        }
        if let Some(v) = el.utilization {
            f.push(
                "perf_process_event_loop_utilization",
                "gauge",
                "Event loop utilization (0-1) over the last interval.",
                b,
                v,
            );
        }
    }
    for (ty, n) in js.resources.iter().flatten() {
        f.push(
            "perf_process_active_resources",
            "gauge",
            "Active libuv handles and requests by type.",
            &with(b, &format!("type=\"{}\"", escape(ty))),
            *n as f64,
        );
    }
}

fn host_figures(f: &mut Families, l: &str, h: &NativeHost) {
    let u = |v: Option<u64>| v.map(|v| v as f64);
    for (v, name, help) in [
        (h.load_avg_1, "perf_host_load1", "Load average over 1 minute."),
        (h.load_avg_5, "perf_host_load5", "Load average over 5 minutes."),
        (h.load_avg_15, "perf_host_load15", "Load average over 15 minutes."),
        (u(h.mem_total_bytes), "perf_host_memory_total_bytes", "Host memory."),
        (u(h.mem_available_bytes), "perf_host_memory_available_bytes", "Host memory available."),
        (u(h.mem_free_bytes), "perf_host_memory_free_bytes", "Host memory free."),
        (h.cpu_count.map(f64::from), "perf_host_cpus", "CPUs."),
    ] {
        if let Some(v) = v {
            f.push(name, "gauge", help, l, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn proc_rec() -> ProcessRecord {
        ProcessRecord {
            id: "ab12cd34".into(),
            app: "orders".into(),
            hostname: "h\"1".into(),
            pid: 7,
            labels: Map::from([("egg-role".to_string(), "worker".to_string())]),
            node_version: "v20".into(),
            agent_version: "0.1.0".into(),
            capabilities: vec![],
            connected: true,
            state: "blocked".into(),
            blocked_ms: 1500,
            connected_at: String::new(),
            last_seen: String::new(),
            remote_addr: String::new(),
        }
    }

    fn typed(v: serde_json::Value) -> MetricsSample {
        serde_json::from_value(v).expect("sample")
    }

    #[test]
    fn renders_families_with_labels_and_counters() {
        let sample = typed(serde_json::json!({
            "native": {"process": {"rss_bytes": 1000, "cpu_user_seconds_total": 1.5}, "host": {"load_avg_1": 0.5}},
            "js": {"heap": {"used_bytes": 10}, "gc": {"by_kind": {"scavenge": {"count": 2, "pause_ms": 3}}},
                   "http_server": {"status_2xx": 5, "latency_p99_ms": 50,
                                   "latency_histogram": {"sum_ms": 120, "count": 5,
                                                         "buckets": [[1, 0], [10, 2], [25, 3], [50, 5]]}}}
        }));
        let c = Counters::default();
        c.add_sample("ab12cd34", &sample);
        c.add_sample("ab12cd34", &sample);
        let out =
            render(&[(proc_rec(), Some(sample))], &c, &HubFigures { drops: &DropCounts::default(), admission: None });
        let b = "app=\"orders\",hostname=\"h\\\"1\",pid=\"7\",process_id=\"ab12cd34\",label_egg_role=\"worker\"";
        assert!(out.contains(&format!("perf_process_resident_memory_bytes{{{b}}} 1000")), "{out}");
        assert!(out.contains("kind=\"scavenge\"} 4"), "counters accumulate: {out}");
        assert!(out.contains("perf_process_blocked_seconds{") && out.contains("} 1.5"));
        assert!(out.contains("perf_host_load1{hostname=\"h\\\"1\"} 0.5"));
        // Latency is a histogram accumulated across samples, not a per-process quantile.
        assert!(!out.contains("latency_seconds"), "{out}");
        assert!(out.contains("# TYPE perf_process_http_server_request_duration_seconds histogram"), "{out}");
        let name = "perf_process_http_server_request_duration_seconds";
        assert!(out.contains(&format!("{name}_bucket{{{b},le=\"0.01\"}} 4")), "{out}");
        assert!(out.contains(&format!("{name}_bucket{{{b},le=\"0.0025\"}} 0")), "{out}");
        assert!(out.contains(&format!("{name}_bucket{{{b},le=\"0.05\"}} 10")), "{out}");
        assert!(out.contains(&format!("{name}_bucket{{{b},le=\"10\"}} 10")), "{out}");
        assert!(out.contains(&format!("{name}_bucket{{{b},le=\"+Inf\"}} 10")), "{out}");
        assert!(out.contains(&format!("{name}_sum{{{b}}} 0.24")), "{out}");
        assert!(out.contains(&format!("{name}_count{{{b}}} 10")), "{out}");
        // Each family's HELP/TYPE appears exactly once.
        assert_eq!(out.matches("# TYPE perf_process_cpu_seconds_total counter").count(), 1);
        assert_eq!(out.matches(&format!("# TYPE {name} histogram")).count(), 1);
    }

    /// The series of one histogram: (le, value) of its buckets in order, then _sum and _count.
    fn histogram_series(out: &str, name: &str, select: &str) -> (Vec<(String, f64)>, f64, f64) {
        let mut buckets = Vec::new();
        let (mut sum, mut count) = (f64::NAN, f64::NAN);
        for line in out.lines().filter(|l| l.contains(select)) {
            let (series, v) = line.rsplit_once(' ').expect("value");
            let v: f64 = v.parse().expect("number");
            if let Some(rest) = series.strip_prefix(&format!("{name}_bucket{{")) {
                let le = rest.rsplit_once("le=\"").expect("le").1.trim_end_matches("\"}");
                buckets.push((le.to_string(), v));
            } else if series.starts_with(&format!("{name}_sum{{")) {
                sum = v;
            } else if series.starts_with(&format!("{name}_count{{")) {
                count = v;
            }
        }
        (buckets, sum, count)
    }

    #[test]
    fn histograms_are_cumulative_end_with_inf_equal_to_count_and_accumulate() {
        let client = |count: u64, buckets: serde_json::Value| {
            serde_json::json!({"count": count, "errors": 0, "latency_histogram":
                {"sum_ms": 1000.0 * count as f64, "count": count, "buckets": buckets}})
        };
        let mut bounds: Vec<serde_json::Value> = Vec::new();
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            bounds.push(serde_json::json!([b, i as u64]));
        }
        let c = Counters::default();
        // 1: the agent's own bounds; 2: a malformed one (unsorted, decreasing, above count, other
        // bounds); 3: an agent without histograms (counts only); 4, 5: idle intervals.
        c.add_sample("ab12cd34", &typed(serde_json::json!({"js": {"http_client": client(20, bounds.into())}})));
        c.add_sample(
            "ab12cd34",
            &typed(serde_json::json!({"js": {"http_client": client(3, serde_json::json!([[7, 1], [3, 2], [40, 1], [90000, 9]]))}})),
        );
        c.add_sample("ab12cd34", &typed(serde_json::json!({"js": {"http_client": {"count": 4}}})));
        c.add_sample("ab12cd34", &typed(serde_json::json!({"js": {"undici": client(0, serde_json::json!([[1, 0]]))}})));
        c.add_sample(
            "ab12cd34",
            &typed(serde_json::json!({"js": {"undici": {"count": 0, "latency_histogram": null}}})),
        );
        let out = render(&[(proc_rec(), None)], &c, &HubFigures { drops: &DropCounts::default(), admission: None });
        let name = "perf_process_http_client_request_duration_seconds";
        let (buckets, sum, count) = histogram_series(&out, name, "client=\"http\"");
        assert_eq!(buckets.len(), LATENCY_BUCKETS_MS.len() + 1, "{out}");
        assert_eq!(buckets.last().map(|b| b.0.as_str()), Some("+Inf"));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
        assert_eq!(buckets.last().map(|b| b.1), Some(count), "+Inf is _count");
        assert_eq!(count, 23.0);
        assert_eq!(sum, 23.0, "seconds");
        // Sample 2 re-binned onto the hub's bounds: ≤2.5 ms none, ≤5 → 2 (its bound 3 ms), then 2
        // up to 10 s (its 90 s bound is beyond), and its +Inf is its count, 3.
        let le = |s: &str| buckets.iter().find(|b| b.0 == s).map(|b| b.1);
        assert_eq!(le("0.001"), Some(0.0));
        assert_eq!(le("0.0025"), Some(1.0));
        assert_eq!(le("0.005"), Some(2.0 + 2.0));
        assert_eq!(le("10"), Some(12.0 + 2.0));
        // No series for a kind of traffic that never had a timed request.
        assert!(!out.contains("client=\"undici\""), "{out}");
        assert!(out.contains(&format!("{name}_bucket{{app=\"orders\"")), "base labels first: {out}");
        // Requests are still counted from the sample without a histogram.
        assert!(
            out.contains("perf_process_http_client_requests_total{") && out.contains("client=\"http\"} 27"),
            "{out}"
        );
    }
}
