//! `GET /metrics`: the latest figures of every known process in Prometheus text format
//! (labels: app, hostname, pid, process_id and the process's own labels as `label_<name>`),
//! plus counters the hub accumulates from the agents' per-interval samples.

use crate::store::ProcessRecord;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;

/// (counter name, label pairs rendered) → value
type Totals = BTreeMap<(String, String), f64>;

/// Running totals per process (reset when the hub restarts, as Prometheus counters may be).
#[derive(Default)]
pub struct Counters {
    by_process: Mutex<HashMap<String, Totals>>,
}

impl Counters {
    /// Adds the interval counts of one sample.
    pub fn add_sample(&self, process_id: &str, sample: &Value) {
        let Some(js) = sample.get("js").filter(|j| j.is_object()) else { return };
        let Ok(mut all) = self.by_process.lock() else { return };
        let t = all.entry(process_id.to_string()).or_default();
        if let Some(kinds) = js.pointer("/gc/by_kind").and_then(Value::as_object) {
            for (kind, v) in kinds {
                let l = format!("kind=\"{}\"", escape(kind));
                add(t, "perf_process_gc_total", &l, num(v, "/count"));
                add(t, "perf_process_gc_pause_seconds_total", &l, num(v, "/pause_ms") / 1000.0);
            }
        }
        if let Some(http) = js.get("http_server") {
            for class in ["2xx", "3xx", "4xx", "5xx"] {
                let l = format!("status_class=\"{class}\"");
                add(t, "perf_process_http_server_requests_total", &l, num(http, &format!("/status_{class}")));
            }
        }
        for (key, client) in [("http_client", "http"), ("undici", "undici")] {
            if let Some(c) = js.get(key) {
                let l = format!("client=\"{client}\"");
                add(t, "perf_process_http_client_requests_total", &l, num(c, "/count"));
                add(t, "perf_process_http_client_errors_total", &l, num(c, "/errors"));
            }
        }
    }

    /// Drops the totals of a process the hub no longer lists.
    pub fn forget(&self, process_id: &str) {
        if let Ok(mut m) = self.by_process.lock() {
            m.remove(process_id);
        }
    }

    fn totals(&self, process_id: &str) -> Totals {
        self.by_process.lock().ok().and_then(|m| m.get(process_id).cloned()).unwrap_or_default()
    }
}

fn add(t: &mut Totals, name: &str, labels: &str, v: f64) {
    if v.is_finite() && v > 0.0 {
        *t.entry((name.to_string(), labels.to_string())).or_insert(0.0) += v;
    }
}

fn num(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0)
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
        fam.2.push(format!("{name}{{{labels}}} {v}"));
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

fn base_labels(p: &ProcessRecord) -> String {
    let mut l = format!(
        "app=\"{}\",hostname=\"{}\",pid=\"{}\",process_id=\"{}\"",
        escape(&p.app),
        escape(&p.hostname),
        p.pid,
        p.id
    );
    for (k, v) in &p.labels {
        let _ = write!(l, ",{}=\"{}\"", label_name(k), escape(v));
    }
    l
}

fn with(base: &str, extra: &str) -> String {
    format!("{base},{extra}")
}

/// Renders every process with its latest sample.
pub fn render(processes: &[(ProcessRecord, Option<Value>)], counters: &Counters) -> String {
    let mut f = Families::default();
    let connected = processes.iter().filter(|(p, _)| p.connected).count();
    f.push("perf_hub_processes", "gauge", "Processes known to the hub.", "state=\"connected\"", connected as f64);
    f.push(
        "perf_hub_processes",
        "gauge",
        "Processes known to the hub.",
        "state=\"disconnected\"",
        (processes.len() - connected) as f64,
    );
    let mut hosts = BTreeMap::new();
    for (p, sample) in processes {
        let b = base_labels(p);
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
            native_figures(&mut f, &b, s);
            js_figures(&mut f, &b, s);
            if let Some(h) = s.pointer("/native/host") {
                hosts.insert(p.hostname.clone(), h.clone());
            }
        }
        for ((name, labels), v) in counters.totals(&p.id) {
            push_counter(&mut f, &name, &with(&b, &labels), v);
        }
    }
    for (host, h) in hosts {
        host_figures(&mut f, &format!("hostname=\"{}\"", escape(&host)), &h);
    }
    f.render()
}

fn push_counter(f: &mut Families, name: &str, labels: &str, v: f64) {
    let (name, help): (&'static str, &'static str) = match name {
        "perf_process_gc_total" => ("perf_process_gc_total", "Garbage collections by kind."),
        "perf_process_gc_pause_seconds_total" => ("perf_process_gc_pause_seconds_total", "Time paused in GC by kind."),
        "perf_process_http_server_requests_total" => {
            ("perf_process_http_server_requests_total", "Incoming HTTP requests by status class.")
        }
        "perf_process_http_client_requests_total" => {
            ("perf_process_http_client_requests_total", "Outgoing HTTP requests.")
        }
        "perf_process_http_client_errors_total" => {
            ("perf_process_http_client_errors_total", "Outgoing HTTP requests that failed.")
        }
        _ => return,
    };
    f.push(name, "counter", help, labels, v);
}

fn native_figures(f: &mut Families, b: &str, s: &Value) {
    let p = |ptr: &str| s.pointer(ptr).and_then(Value::as_f64);
    if let Some(v) = p("/native/process/rss_bytes") {
        f.push("perf_process_resident_memory_bytes", "gauge", "Resident set size.", b, v);
    }
    if let Some(v) = p("/native/process/cpu_user_seconds_total") {
        f.push("perf_process_cpu_seconds_total", "counter", "CPU time by mode.", &with(b, "mode=\"user\""), v);
    }
    if let Some(v) = p("/native/process/cpu_system_seconds_total") {
        f.push("perf_process_cpu_seconds_total", "counter", "CPU time by mode.", &with(b, "mode=\"system\""), v);
    }
    for mode in ["user", "system"] {
        if let Some(v) = p(&format!("/native/process/cpu_{mode}_percent")) {
            f.push(
                "perf_process_cpu_percent",
                "gauge",
                "CPU use over the last interval (100 = one core).",
                &with(b, &format!("mode=\"{mode}\"")),
                v,
            );
        }
    }
    if let Some(v) = p("/native/process/threads") {
        f.push("perf_process_threads", "gauge", "OS threads.", b, v);
    }
    if let Some(v) = p("/native/process/open_fds") {
        f.push("perf_process_open_fds", "gauge", "Open file descriptors.", b, v);
    }
    if let Some(v) = p("/native/cgroup/limit_bytes") {
        f.push("perf_process_cgroup_memory_limit_bytes", "gauge", "Memory limit of the process's cgroup.", b, v);
    }
}

fn js_figures(f: &mut Families, b: &str, s: &Value) {
    let Some(js) = s.get("js").filter(|j| j.is_object()) else { return };
    let p = |ptr: &str| js.pointer(ptr).and_then(Value::as_f64);
    let heap: [(&str, &'static str, &'static str); 5] = [
        ("/heap/used_bytes", "perf_process_heap_used_bytes", "V8 heap in use."),
        ("/heap/total_bytes", "perf_process_heap_total_bytes", "V8 heap committed."),
        ("/heap/limit_bytes", "perf_process_heap_limit_bytes", "V8 heap size limit."),
        ("/heap/external_bytes", "perf_process_external_memory_bytes", "Memory of C++ objects bound to JS."),
        ("/heap/array_buffers_bytes", "perf_process_array_buffers_bytes", "Memory of ArrayBuffers and Buffers."),
    ];
    for (ptr, name, help) in heap {
        if let Some(v) = p(ptr) {
            f.push(name, "gauge", help, b, v);
        }
    }
    if let Some(spaces) = js.pointer("/heap/spaces").and_then(Value::as_object) {
        for (space, v) in spaces {
            if let Some(used) = v.get("used_bytes").and_then(Value::as_f64) {
                f.push(
                    "perf_process_heap_space_used_bytes",
                    "gauge",
                    "V8 heap in use by space.",
                    &with(b, &format!("space=\"{}\"", escape(space))),
                    used,
                );
            }
        }
    }
    for (q, key) in [("0.5", "p50"), ("0.99", "p99"), ("1", "max")] {
        if let Some(v) = p(&format!("/event_loop/delay_{key}_ms")) {
            f.push(
                "perf_process_event_loop_delay_seconds",
                "gauge",
                "Event loop delay over the last interval.",
                &with(b, &format!("quantile=\"{q}\"")),
                v / 1000.0,
            );
        }
        if let Some(v) = p(&format!("/http_server/latency_{key}_ms")) {
            f.push(
                "perf_process_http_server_latency_seconds",
                "gauge",
                "Incoming HTTP latency over the last interval.",
                &with(b, &format!("quantile=\"{q}\"")),
                v / 1000.0,
            );
        }
        for client in ["http_client", "undici"] {
            if let Some(v) = p(&format!("/{client}/latency_{key}_ms")) {
                let l = with(
                    b,
                    &format!("client=\"{}\",quantile=\"{q}\"", if client == "undici" { "undici" } else { "http" }),
                );
                f.push(
                    "perf_process_http_client_latency_seconds",
                    "gauge",
                    "Outgoing HTTP latency over the last interval.",
                    &l,
                    v / 1000.0,
                );
            }
        }
    }
    if let Some(v) = p("/event_loop/utilization") {
        f.push(
            "perf_process_event_loop_utilization",
            "gauge",
            "Event loop utilization (0-1) over the last interval.",
            b,
            v,
        );
    }
    if let Some(res) = js.get("resources").and_then(Value::as_object) {
        for (ty, v) in res {
            if let Some(n) = v.as_f64() {
                f.push(
                    "perf_process_active_resources",
                    "gauge",
                    "Active libuv handles and requests by type.",
                    &with(b, &format!("type=\"{}\"", escape(ty))),
                    n,
                );
            }
        }
    }
}

fn host_figures(f: &mut Families, l: &str, h: &Value) {
    let p = |k: &str| h.get(k).and_then(Value::as_f64);
    for (key, name, help) in [
        ("load_avg_1", "perf_host_load1", "Load average over 1 minute."),
        ("load_avg_5", "perf_host_load5", "Load average over 5 minutes."),
        ("load_avg_15", "perf_host_load15", "Load average over 15 minutes."),
        ("mem_total_bytes", "perf_host_memory_total_bytes", "Host memory."),
        ("mem_available_bytes", "perf_host_memory_available_bytes", "Host memory available."),
        ("mem_free_bytes", "perf_host_memory_free_bytes", "Host memory free."),
        ("cpu_count", "perf_host_cpus", "CPUs."),
    ] {
        if let Some(v) = p(key) {
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

    #[test]
    fn renders_families_with_labels_and_counters() {
        let sample = serde_json::json!({
            "native": {"process": {"rss_bytes": 1000, "cpu_user_seconds_total": 1.5}, "host": {"load_avg_1": 0.5}},
            "js": {"heap": {"used_bytes": 10}, "gc": {"by_kind": {"scavenge": {"count": 2, "pause_ms": 3}}},
                   "http_server": {"status_2xx": 5, "latency_p99_ms": 50}}
        });
        let c = Counters::default();
        c.add_sample("ab12cd34", &sample);
        c.add_sample("ab12cd34", &sample);
        let out = render(&[(proc_rec(), Some(sample))], &c);
        assert!(out.contains("perf_process_resident_memory_bytes{app=\"orders\",hostname=\"h\\\"1\",pid=\"7\",process_id=\"ab12cd34\",label_egg_role=\"worker\"} 1000"), "{out}");
        assert!(out.contains("kind=\"scavenge\"} 4"), "counters accumulate: {out}");
        assert!(out.contains("perf_process_blocked_seconds{") && out.contains("} 1.5"));
        assert!(out.contains("perf_process_http_server_latency_seconds{") && out.contains("quantile=\"0.99\"} 0.05"));
        assert!(out.contains("perf_host_load1{hostname=\"h\\\"1\"} 0.5"));
        // Each family's HELP/TYPE appears exactly once.
        assert_eq!(out.matches("# TYPE perf_process_cpu_seconds_total counter").count(), 1);
    }
}
