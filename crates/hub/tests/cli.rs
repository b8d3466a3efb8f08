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

#[test]
fn token_create_prints_the_token_last_and_list_never_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| hub().arg("token").args(args).output().expect("run");
    let data = dir.path().to_str().expect("utf-8 path");
    let out = run(&["create", "--data-dir", data, "--name", "ci", "--role", "viewer", "--apps", "orders,pay"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = stdout.split_whitespace().last().expect("a last word").to_string();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()), "{stdout}");
    let list = String::from_utf8_lossy(&run(&["list", "--data-dir", data]).stdout).into_owned();
    assert!(list.contains("ci") && list.contains("viewer") && list.contains("orders,pay"), "{list}");
    assert!(!list.contains(&token), "{list}");
    // Names are unique; roles are checked; unknown names can't be revoked.
    assert!(!run(&["create", "--data-dir", data, "--name", "ci", "--role", "admin"]).status.success());
    assert_eq!(run(&["create", "--data-dir", data, "--name", "x", "--role", "root"]).status.code(), Some(2));
    assert!(run(&["revoke", "--data-dir", data, "ci"]).status.success());
    let out = run(&["revoke", "--data-dir", data, "nope"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no token named 'nope'"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("hub.db")).expect("hub.db").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a hub.db made by `token create` is the owner's only");
    }
    // The database keeps the hash only.
    let conn = rusqlite::Connection::open(dir.path().join("hub.db")).expect("sqlite");
    let hash: String = conn.query_row("SELECT hash FROM tokens WHERE name = 'ci'", [], |r| r.get(0)).expect("row");
    assert_ne!(hash, token);
    assert_eq!(hash, perf_hub::operators::hash_secret(&token));
}
