//! perf capture against real processes: a node process spinning in a uniquely named
//! function under `--perf-basic-prof`, a missing perf binary, a missing pid, a refusing perf,
//! and the helper binary end to end.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use perf_flamegraph::perf_capture::{capture, capture_with, CaptureOptions, JsSymbols, PerfError};

const JS_NAME: &str = "spinUniquePerfFrame42";
const NATIVE_MARKERS: [&str; 6] = ["v8::", "node::", "Builtins_", "__libc", "uv_", "libc"];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flame-perf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Why the real-perf tests cannot run here, if they cannot.
fn perf_unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("?");
    if euid != "0" {
        return Some(format!("not root (euid {euid})"));
    }
    match Command::new("perf").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("perf --version failed: {}", out.status)),
        Err(e) => Some(format!("perf not runnable: {e}")),
    }
}

/// Kills the node process when the test ends, pass or fail, and removes its perf map.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let pid = self.0.id();
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
        let suffix = format!("-{pid}-v8.log");
        let logs = std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten();
        for log in logs.filter(|e| e.file_name().to_string_lossy().ends_with(&suffix)) {
            let _ = std::fs::remove_file(log.path());
        }
    }
}

/// node, run from the temp dir: with `--perf-basic-prof` it writes isolate-*-v8.log files
/// into its working directory.
fn node_command() -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// node --perf-basic-prof spinning in JS_NAME for `seconds`.
fn spinning_node(seconds: u32) -> Node {
    let script = format!(
        "function {JS_NAME}() {{ const end = Date.now() + {ms}; let x = 0; \
         while (Date.now() < end) {{ x += Math.sqrt(x + 1); }} return x; }} {JS_NAME}();",
        ms = seconds * 1000
    );
    let child = node_command().args(["--perf-basic-prof", "-e", &script]).spawn().expect("start node");
    // Let it start and JIT the function (the perf map gets written).
    std::thread::sleep(Duration::from_millis(700));
    Node(child)
}

fn assert_js_and_native(folded: &str) {
    assert!(folded.contains(JS_NAME), "{JS_NAME} not in folded output:\n{folded}");
    assert!(NATIVE_MARKERS.iter().any(|m| folded.contains(m)), "no native frame in folded output:\n{folded}");
}

#[test]
fn real_perf_capture_names_js_and_native_frames() {
    if let Some(why) = perf_unavailable() {
        eprintln!("SKIPPED real perf test: {why}");
        return;
    }
    let node = spinning_node(8);
    let dir = temp_dir("real");
    let result = capture(node.0.id(), 2, 199, &dir).expect("capture");
    let folded = std::fs::read_to_string(&result.folded).expect("read folded");
    assert_js_and_native(&folded);
    let svg = std::fs::read_to_string(&result.svg).expect("read svg");
    assert!(svg.contains(JS_NAME), "{JS_NAME} not in the SVG");
    assert_eq!(result.js_symbols, JsSymbols::PerfMap, "{:?}", result.notes);
    assert!(result.samples > 50, "only {} samples", result.samples);
    assert!(result.js_samples * 2 > result.samples, "{:?}", result.notes);
    assert!(!result.target_exited);
    assert!(result.notes.iter().any(|n| n.contains("JS frames symbolized")), "{:?}", result.notes);
    assert!(!dir.join("perf.data").exists(), "perf.data should be removed by default");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn target_exiting_mid_capture_keeps_partial_data() {
    if let Some(why) = perf_unavailable() {
        eprintln!("SKIPPED real perf test: {why}");
        return;
    }
    let node = spinning_node(2);
    let dir = temp_dir("exit");
    let started = std::time::Instant::now();
    let result = capture(node.0.id(), 10, 99, &dir).expect("capture with partial data");
    assert!(started.elapsed() < Duration::from_secs(8), "perf did not stop with the target");
    assert!(result.target_exited);
    assert!(result.notes.iter().any(|n| n.contains("exited during the capture")), "{:?}", result.notes);
    let folded = std::fs::read_to_string(&result.folded).expect("read folded");
    assert!(folded.contains(JS_NAME), "{folded}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_perf_binary_is_not_installed() {
    let dir = temp_dir("missing");
    let mut opts = CaptureOptions::new(std::process::id(), 1, 99, &dir);
    opts.perf_bin = PathBuf::from("/nonexistent/bin/perf");
    let err = capture_with(&opts).expect_err("must fail");
    assert!(matches!(err, PerfError::NotInstalled { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("perf is not installed") && msg.contains("/nonexistent/bin/perf"), "{msg}");
    assert_eq!(err.kind(), "not_installed");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_pid_is_process_not_found() {
    let dir = temp_dir("nopid");
    // Above the kernel's maximum pid_max (2^22), so never a live process.
    let err = capture(99_999_999, 1, 99, &dir).expect_err("must fail");
    assert!(matches!(err, PerfError::ProcessNotFound { pid: 99_999_999 }), "{err:?}");
    assert_eq!(err.to_string(), "process 99999999 not found");
    std::fs::remove_dir_all(&dir).ok();
}

fn fake_perf(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-perf");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake perf");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn perf_refusing_to_open_events_is_not_permitted() {
    let dir = temp_dir("eperm");
    let bin = fake_perf(
        &dir,
        "echo 'Error: Access to performance monitoring and observability operations is limited.' >&2\n\
         echo 'Consider adjusting /proc/sys/kernel/perf_event_paranoid setting' >&2\nexit 255",
    );
    let mut opts = CaptureOptions::new(std::process::id(), 1, 99, &dir);
    opts.perf_bin = bin;
    let err = capture_with(&opts).expect_err("must fail");
    assert!(matches!(err, PerfError::NotPermitted { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("CAP_PERFMON") && msg.contains("perf_event_paranoid"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

fn helper(args: &[&str], env_perf: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perf-flamegraph"));
    cmd.arg("perf-capture").args(args);
    if let Some(bin) = env_perf {
        cmd.env("PERF_AGENT_PERF_BIN", bin);
    }
    cmd.output().expect("run helper")
}

fn result_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).expect("result.json")).expect("json")
}

#[test]
fn helper_reports_missing_perf_from_env_var() {
    let dir = temp_dir("helper-missing");
    let pid = std::process::id().to_string();
    let out_dir = dir.display().to_string();
    let args = ["--pid", &pid, "--seconds", "1", "--frequency", "99", "--out-dir", &out_dir];
    let out = helper(&args, Some("/nonexistent/perf"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json = result_json(&dir);
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"]["kind"], "not_installed");
    assert!(json["error"]["message"].as_str().unwrap_or("").contains("PERF_AGENT_PERF_BIN"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn helper_captures_end_to_end() {
    if let Some(why) = perf_unavailable() {
        eprintln!("SKIPPED real perf test: {why}");
        return;
    }
    let node = spinning_node(8);
    let dir = temp_dir("helper-real");
    let pid = node.0.id().to_string();
    let out_dir = dir.display().to_string();
    let args = ["--pid", &pid, "--seconds", "2", "--frequency", "99", "--out-dir", &out_dir];
    let out = helper(&args, None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json = result_json(&dir);
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["js_symbols"], "perf_map", "{json}");
    assert!(json["notes"].as_array().is_some_and(|n| !n.is_empty()), "{json}");
    assert_js_and_native(&std::fs::read_to_string(dir.join("perf.folded")).expect("folded"));
    assert!(std::fs::read_to_string(dir.join("perf.svg")).expect("svg").contains(JS_NAME));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn node_without_perf_basic_prof_is_reported_unsymbolized() {
    if let Some(why) = perf_unavailable() {
        eprintln!("SKIPPED real perf test: {why}");
        return;
    }
    let script = "const end = Date.now() + 6000; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1);";
    let node = Node(node_command().args(["-e", script]).spawn().expect("start node"));
    std::thread::sleep(Duration::from_millis(500));
    let dir = temp_dir("nosym");
    let result = capture(node.0.id(), 1, 99, &dir).expect("capture");
    assert_eq!(result.js_symbols, JsSymbols::NotEnabled);
    assert_eq!(result.js_samples, 0);
    assert!(result.notes.iter().any(|n| n.contains("NOT symbolized")), "{:?}", result.notes);
    std::fs::remove_dir_all(&dir).ok();
}
