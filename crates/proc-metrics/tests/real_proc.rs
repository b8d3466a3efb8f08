//! Against the real /proc of the test process: the parsers accept what this kernel writes,
//! and the figures move the way they should.

use perf_proc_metrics::*;

#[test]
fn process_sample_of_self() {
    let mut s = ProcessSampler::new();
    let first = s.sample().expect("first sample");
    assert_eq!(first.pid, std::process::id());
    assert!(first.rss_bytes > 1 << 20, "rss {}", first.rss_bytes);
    assert!(first.rss_peak_bytes >= first.rss_bytes);
    assert!(first.vm_size_bytes >= first.rss_bytes);
    assert!(first.threads >= 1);
    assert!(first.open_fds.unwrap_or(0) >= 3, "stdin/out/err at least");

    // Burn ~300 ms of CPU: user % of the next window must show it.
    let t = std::time::Instant::now();
    let mut x = 0u64;
    while t.elapsed() < std::time::Duration::from_millis(300) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    let second = s.sample().expect("second sample");
    // A shared CI box may give this thread much less than a core: only ask for a clear
    // non-idle reading (an idle process shows ~0).
    let busy = second.cpu_user_percent + second.cpu_system_percent;
    assert!(busy > 10.0, "expected a busy core, got {busy}");
    assert!(second.cpu_user_seconds_total >= first.cpu_user_seconds_total);
}

#[test]
fn process_sample_by_pid_and_missing_pid() {
    let mut s = ProcessSampler::for_pid(std::process::id());
    assert_eq!(s.sample().expect("sample").pid, std::process::id());
    // pid_max is at most 2^22; this one cannot exist.
    assert!(ProcessSampler::for_pid(u32::MAX - 1).sample().is_err());
}

#[test]
fn host_sample() {
    let h = read_host().expect("host");
    assert!(h.mem_total_bytes > 0);
    assert!(h.mem_available_bytes <= h.mem_total_bytes);
    assert!(h.cpu_count >= 1);
    assert!(h.uptime_seconds > 0.0);
    assert!(h.load_avg_1 >= 0.0);
}

#[test]
fn cgroup_and_headroom() {
    // A memory cgroup may or may not exist here; reading must not fail either way.
    let cg = read_cgroup_memory().expect("cgroup read");
    if let Some(c) = &cg {
        assert!(c.version == 1 || c.version == 2);
        assert!(c.usage_bytes.is_some());
    }
    let h = memory_headroom().expect("headroom");
    let host = read_host().expect("host");
    assert!(h.bytes <= host.mem_total_bytes);
    eprintln!("cgroup: {cg:?}\nheadroom: {h:?}");
}

#[test]
fn native_sample_serializes_snake_case() {
    let mut s = NativeSampler::new();
    let sample = s.sample();
    assert!(sample.errors.is_empty(), "{:?}", sample.errors);
    let json = serde_json::to_value(&sample).expect("json");
    let p = &json["process"];
    for k in [
        "pid",
        "rss_bytes",
        "rss_peak_bytes",
        "vm_size_bytes",
        "threads",
        "open_fds",
        "cpu_user_percent",
        "cpu_system_percent",
        "cpu_user_seconds_total",
        "cpu_system_seconds_total",
    ] {
        assert!(p.get(k).is_some(), "process.{k} missing in {p}");
    }
    for k in [
        "load_avg_1",
        "load_avg_5",
        "load_avg_15",
        "mem_total_bytes",
        "mem_free_bytes",
        "mem_available_bytes",
        "cpu_count",
        "uptime_seconds",
    ] {
        assert!(json["host"].get(k).is_some(), "host.{k} missing");
    }
    eprintln!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
}

/// A Node process stuck in `while(1);` is still sampled from outside its JS thread, and
/// shows a busy core. Skipped when no `node` is on PATH.
#[test]
fn samples_a_stuck_node_process() {
    let Ok(mut child) = std::process::Command::new("node").args(["-e", "while(1);"]).spawn() else {
        eprintln!("node not found: skipped");
        return;
    };
    // Let node boot into its loop before the first reading.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mut s = ProcessSampler::for_pid(child.id());
    let first = s.sample();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let second = s.sample();
    let _ = child.kill();
    let _ = child.wait();
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert!(second.rss_bytes > 10 << 20, "node rss {}", second.rss_bytes);
    assert!(first.threads > 1);
    assert!(second.cpu_user_percent > 10.0, "stuck node cpu {}", second.cpu_user_percent);
}
