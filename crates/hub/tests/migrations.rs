//! A `hub.db` written by an earlier release opens and migrates in place. Each fixture under
//! `tests/fixtures/` is a database as that release left it (written by a real hub with a real
//! agent: one process, a heap snapshot, a CPU profile, metrics, audit entries).

use perf_hub::store::{ArtifactStatus, Store, StoreError, SCHEMA_VERSION};

fn copy_fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.db");
    std::fs::copy(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")), &path).expect("fixture");
    (dir, path)
}

#[test]
fn a_database_of_release_0_1_0_opens_and_keeps_its_records() {
    let (_dir, path) = copy_fixture("hub-0.1.0.db");
    let store = Store::open(&path).expect("open and migrate");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let processes = store.list_processes().expect("processes");
    assert_eq!(processes.len(), 1);
    let p = &processes[0];
    assert_eq!(p.app, "orders");
    let artifacts = store.list_artifacts(Some(&p.id), false, 10).expect("artifacts");
    let kinds: Vec<_> = artifacts.iter().map(|a| (a.kind.as_str(), a.status)).collect();
    assert!(kinds.contains(&("heap_snapshot", ArtifactStatus::Ready)), "{kinds:?}");
    assert!(kinds.contains(&("cpu_profile", ArtifactStatus::Ready)), "{kinds:?}");
    assert!(artifacts.iter().all(|a| !a.upload_token.is_empty()), "tokens survive");
    // 0.1.0 kept upload tokens in plain text; migration 5 keeps only their hash.
    assert!(artifacts.iter().all(|a| a.upload_token.starts_with("sha256:")), "tokens hashed: {artifacts:?}");
    assert!(!store.list_metrics(&p.id, 0, 100).expect("metrics").is_empty());
    assert!(store.list_audit(100).expect("audit").iter().any(|a| a.action == "command.request"));
    drop(store);
    // Opening again is a no-op.
    assert_eq!(Store::open(&path).expect("reopen").schema_version().expect("version"), SCHEMA_VERSION);
}

#[test]
fn a_database_from_a_newer_hub_is_refused_with_a_clear_error() {
    let (_dir, path) = copy_fixture("hub-0.1.0.db");
    Store::open(&path).expect("migrate");
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    conn.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION + 1]).expect("bump");
    drop(conn);
    match Store::open(&path) {
        Err(e @ StoreError::TooNew { .. }) => assert!(e.to_string().contains("newer perf-hub"), "{e}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a newer database must not be opened"),
    }
}
