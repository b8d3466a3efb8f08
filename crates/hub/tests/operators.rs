//! Operators' tokens and damaged rows against a real hub over real TCP (raw HTTP/1.1 requests):
//! an expired token is a 401; a corrupt process or artifact row in `hub.db` is skipped (and
//! logged) instead of stopping the hub or failing the lists.

use perf_hub::operators::{self, NewToken, Role};
use perf_hub::store::{ArtifactRecord, Store};
use perf_hub::HubConfig;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` with a bearer token; returns the status and the body.
async fn get(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.expect("in time").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn an_expired_token_is_refused_and_a_live_one_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (expired, live) = {
        let store = Store::open(&dir.path().join("hub.db")).expect("store");
        let past = SystemTime::now() - Duration::from_secs(1);
        let expired = operators::create(
            &store,
            NewToken { name: "old".into(), role: Role::Admin, apps: vec![], expires_at: Some(past) },
        )
        .expect("create");
        let live = operators::create(
            &store,
            NewToken {
                name: "new".into(),
                role: Role::Viewer,
                apps: vec![],
                expires_at: Some(operators::expiry_in_days(1).expect("days")),
            },
        )
        .expect("create");
        (expired, live)
    };
    let hub = perf_hub::start(HubConfig::for_test(dir.path().to_path_buf())).await.expect("hub");
    let (status, body) = get(hub.http_addr, "/api/processes", &expired).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(get(hub.http_addr, "/api/processes", &live).await.0, 200);
    assert_eq!(get(hub.http_addr, "/api/audit", &live).await.0, 403, "a viewer can't read the audit");
}

#[tokio::test]
async fn a_corrupt_process_or_artifact_row_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.db");
    {
        let store = Store::open(&db).expect("store");
        let good =
            ArtifactRecord::pending("aaaa0001", ("feedface", "orders"), "cpu_profile", "cpuprofile", "t", "tok".into());
        store.insert_artifact(&good).expect("artifact");
        let conn = rusqlite::Connection::open(&db).expect("sqlite");
        conn.execute(
            "INSERT INTO processes (id, doc, last_seen) VALUES ('bad0', '{\"id\": \"bad0\", \"app\": 7', '2026-01-01')",
            [],
        )
        .expect("bad process row");
        conn.execute(
            "INSERT INTO processes (id, doc, last_seen) VALUES ('bad1', '{\"id\": \"bad1\"}', '2026-01-01')",
            [],
        )
        .expect("process row missing fields");
        conn.execute(
            "INSERT INTO artifacts (id, process_id, status, created_at, doc)
             VALUES ('bbbb0002', 'feedface', 'ready', '2026-01-01', 'not json')",
            [],
        )
        .expect("bad artifact row");
    }
    // Before: `Processes::open` failed on the first bad row and the hub did not start.
    let hub = perf_hub::start(HubConfig::for_test(dir.path().to_path_buf())).await.expect("the hub starts");
    let (status, body) = get(hub.http_addr, "/api/processes", "test-token").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, body) = get(hub.http_addr, "/api/artifacts", "test-token").await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(listed.iter().map(|a| a["id"].as_str().unwrap_or("")).collect::<Vec<_>>(), vec!["aaaa0001"]);
    assert_eq!(get(hub.http_addr, "/api/artifacts/bbbb0002", "test-token").await.0, 404);
    assert_eq!(get(hub.http_addr, "/metrics", "test-token").await.0, 200);
}
