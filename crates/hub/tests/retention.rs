//! Pins, deletes and retention against a real hub (local-disk store) over raw HTTP: the oldest
//! unpinned artifacts go first, a pinned one stays, a deleted one keeps its record with who and
//! why; a hub that applies retention for the first time only announces what it will delete;
//! downloads honour `Range` on local disk too.

use perf_hub::operators::{self, NewToken, Role};
use perf_hub::store::{ArtifactRecord, ArtifactStatus};
use perf_hub::{HubConfig, RunningHub};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "test-token";

async fn http(addr: SocketAddr, method: &str, path: &str, token: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.expect("in time").expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
    (status, head, raw[split + 4..].to_vec())
}

async fn json(hub: &RunningHub, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http(hub.http_addr, method, path, token, "").await;
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

async fn start(dir: &std::path::Path, cap: Option<u64>, grace_ms: u64) -> RunningHub {
    let mut c = HubConfig::for_test(dir.to_path_buf());
    c.retain_max_bytes = cap;
    c.retention_grace_ms = grace_ms;
    // The test sweeps by hand (no waiting on the background task).
    c.retention_sweep_ms = 3_600_000;
    perf_hub::start(c).await.expect("hub")
}

/// A ready artifact of `size` bytes created at `created_at`, its file in the store.
async fn stored(hub: &RunningHub, id: &str, kind: &str, created_at: &str, bytes: &[u8]) -> ArtifactRecord {
    let mut a = ArtifactRecord::pending(id, ("feedface", "orders"), kind, "bin", "test", String::new());
    a.status = ArtifactStatus::Ready;
    a.size = Some(bytes.len() as u64);
    a.created_at = created_at.into();
    let local = hub.hub.artifacts.storage().local().expect("local disk");
    std::fs::write(local.path(&a.file_name), bytes).expect("bytes");
    hub.hub.artifacts.create(a.clone()).await.expect("insert");
    a
}

fn days_ago(days: u64) -> String {
    let t = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    humantime::format_rfc3339_millis(t).to_string()
}

#[tokio::test]
async fn over_the_cap_the_oldest_unpinned_go_first_and_a_pinned_one_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(dir.path(), Some(250), 0).await;
    let operator = {
        let store = perf_hub::store::Store::open(&dir.path().join("hub.db")).expect("store");
        let new = NewToken { name: "ops".into(), role: Role::Operator, apps: vec![], expires_at: None };
        operators::create(&store, new).expect("token")
    };
    let oldest = stored(&hub, "b0000001", "cpu_profile", &days_ago(9), &[1; 100]).await;
    let (status, pinned) = json(&hub, "POST", "/api/artifacts/b0000001/pin", &operator).await;
    assert_eq!((status, &pinned["pinned"]), (200, &serde_json::json!(true)), "an operator pins: {pinned}");
    let second = stored(&hub, "b0000002", "cpu_profile", &days_ago(8), &[2; 100]).await;
    let third = stored(&hub, "b0000003", "cpu_profile", &days_ago(7), &[3; 100]).await;
    let newest = stored(&hub, "b0000004", "cpu_profile", &days_ago(1), &[4; 100]).await;
    // 400 bytes, cap 250: the pinned oldest stays; the next two oldest go.
    assert_eq!(perf_hub::retention::sweep(&hub.hub).await.expect("sweep"), 2);
    let local = hub.hub.artifacts.storage().local().expect("local");
    for (a, kept) in [(&oldest, true), (&second, false), (&third, false), (&newest, true)] {
        let (_, now) = json(&hub, "GET", &format!("/api/artifacts/{}", a.id), ADMIN).await;
        let want = if kept { "ready" } else { "deleted" };
        assert_eq!(now["status"], want, "{now}");
        assert_eq!(local.path(&a.file_name).exists(), kept, "{}", a.id);
        if !kept {
            assert_eq!(now["deleted_by"], "retention");
            assert!(now["deleted_reason"].as_str().unwrap_or("").contains("cap"), "{now}");
        }
    }
    // Unpinned, the oldest goes at the next sweep.
    let (status, _) = json(&hub, "DELETE", "/api/artifacts/b0000001/pin", &operator).await;
    assert_eq!(status, 200);
    stored(&hub, "b0000005", "cpu_profile", &days_ago(0), &[5; 100]).await;
    assert_eq!(perf_hub::retention::sweep(&hub.hub).await.expect("sweep"), 1);
    assert_eq!(json(&hub, "GET", "/api/artifacts/b0000001", ADMIN).await.1["status"], "deleted");
}

#[tokio::test]
async fn a_hub_applying_retention_for_the_first_time_only_announces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(dir.path(), Some(0), 24 * 3_600_000).await;
    stored(&hub, "b0000011", "cpu_profile", &days_ago(90), &[1; 10]).await;
    assert_eq!(perf_hub::retention::sweep(&hub.hub).await.expect("sweep"), 0, "nothing deleted in the first 24 h");
    assert_eq!(json(&hub, "GET", "/api/artifacts/b0000011", ADMIN).await.1["status"], "ready");
    let store = perf_hub::store::Store::open(&dir.path().join("hub.db")).expect("store");
    assert!(store.setting("retention_since").expect("setting").is_some(), "the first run is recorded");
}

#[tokio::test]
async fn an_admin_deletes_an_artifact_and_its_record_says_who_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(dir.path(), None, 0).await;
    let operator = {
        let store = perf_hub::store::Store::open(&dir.path().join("hub.db")).expect("store");
        let new = NewToken { name: "ops".into(), role: Role::Operator, apps: vec![], expires_at: None };
        operators::create(&store, new).expect("token")
    };
    let a = stored(&hub, "b0000021", "heap_snapshot", &days_ago(0), b"{\"snapshot\":1}").await;
    let path = "/api/artifacts/b0000021?reason=holds%20a%20customer%27s%20data";
    assert_eq!(json(&hub, "DELETE", path, &operator).await.0, 403, "deleting needs admin");
    let (status, deleted) = json(&hub, "DELETE", path, ADMIN).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(deleted["deleted_by"], "bootstrap");
    assert_eq!(deleted["deleted_reason"], "holds a customer's data");
    assert!(!hub.hub.artifacts.storage().local().expect("local").path(&a.file_name).exists(), "the bytes are gone");
    assert_eq!(json(&hub, "GET", "/api/artifacts/b0000021/download", ADMIN).await.0, 409);
    assert_eq!(json(&hub, "DELETE", path, ADMIN).await.0, 409, "deleted once");
    assert_eq!(json(&hub, "POST", "/api/artifacts/b0000021/pin", ADMIN).await.0, 409);
    let (_, audit) = json(&hub, "GET", "/api/audit", ADMIN).await;
    let entry = audit.as_array().expect("audit").iter().find(|e| e["action"] == "artifact.delete").cloned();
    assert!(entry.is_some_and(|e| e.to_string().contains("bootstrap")), "audited: {audit}");
}

#[tokio::test]
async fn a_local_download_honours_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(dir.path(), None, 0).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    stored(&hub, "b0000031", "cpu_profile", &days_ago(0), &bytes).await;
    let path = "/api/artifacts/b0000031/download";
    let (status, head, body) = http(hub.http_addr, "GET", path, ADMIN, "Range: bytes=1000-1099\r\n").await;
    assert_eq!(status, 206, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-range: bytes 1000-1099/10000"), "{head}");
    assert_eq!(body, &bytes[1000..1100]);
    let (status, head, body) = http(hub.http_addr, "GET", path, ADMIN, "").await;
    assert_eq!((status, body.len()), (200, bytes.len()));
    assert!(head.to_ascii_lowercase().contains("accept-ranges: bytes"), "{head}");
    let (status, head, _) = http(hub.http_addr, "GET", path, ADMIN, "Range: bytes=20000-\r\n").await;
    assert_eq!(status, 416);
    assert!(head.to_ascii_lowercase().contains("content-range: bytes */10000"), "{head}");
}
