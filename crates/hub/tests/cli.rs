//! `perf-hub analyze | diff | flamegraph` as a user runs them: the real binary, real files.

use std::process::Command;

fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perf-hub"))
}

#[test]
fn flamegraph_renders_folded_stacks_to_svg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("p.folded");
    std::fs::write(&input, "main;perfAgentHotLoop 90\nmain;idle 10\n").expect("write");
    let svg = dir.path().join("p.svg");
    let out = hub().args(["flamegraph"]).arg(&input).arg("-o").arg(&svg).args(["--title", "t"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).expect("svg");
    assert!(text.contains("<svg") && text.contains("perfAgentHotLoop"));
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let out = hub().args(["analyze"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<FILE>"));
    let out = hub().args(["diff", "a.heapsnapshot", "b.heapsnapshot", "--model", "chrome"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("devtools"));
}

#[test]
fn analyze_reports_a_missing_file_as_a_failure() {
    let out = hub().args(["analyze", "/nonexistent/x.heapsnapshot", "--quiet"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error"));
}
