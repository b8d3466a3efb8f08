//! Issue 14, the heap explorer's comparison of two snapshots against a real hub over real TCP
//! (raw HTTP/1.1): per constructor new / deleted / deltas once both indexes are built (`202` with
//! the progress of both before), then the new instances, each an object of the explorer; both
//! snapshots of one app, in the caller's scope; string contents for admins only.

use perf_hub::operators::{self, NewToken, Role};
use perf_hub::store::{ArtifactRecord, ArtifactStatus, Store};
use perf_hub::{HubConfig, RunningHub};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "test-token";

async fn get(hub: &RunningHub, path: &str, token: &str) -> (u16, Value) {
    let addr = hub.http_addr;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.expect("in time").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// `GET` until it is no longer `202` (an index being built).
async fn ready(hub: &RunningHub, path: &str, token: &str) -> (u16, Value) {
    let t0 = Instant::now();
    loop {
        let (status, body) = get(hub, path, token).await;
        if status != 202 || t0.elapsed() > Duration::from_secs(30) {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// root -> global -holder-> Array -[i]-> `foos` PerfCompareFoo objects (ids from 1001), each
/// -secret-> the string "hunter2"; global -other-> a Bar.
fn snapshot(foos: u32) -> String {
    let meta = r#"{"meta":{"node_fields":["type","name","id","self_size","edge_count","trace_node_id","detachedness"],"node_types":[["hidden","array","string","object","code","closure","regexp","number","native","synthetic","concatenated string","sliced string","symbol","bigint","object shape"],"string","number","number","number","number","number"],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["context","element","property","internal","hidden","shortcut","weak"],"string_or_number","node"],"location_fields":["object_index","script_id","line","column"]},"node_count":0,"edge_count":0,"trace_function_count":0}"#;
    let strings = ["", "global", "Array", "PerfCompareFoo", "holder", "secret", "hunter2", "Bar", "other"];
    // (type, name, id, size, edges); 0 root, 1 global, 2 array, 3 string, 4 Bar, 5.. foos
    let mut nodes = vec![(9, 0, 1, 0, 1), (3, 1, 3, 10, 2), (3, 2, 5, 16, foos), (2, 6, 7, 30, 0), (3, 7, 9, 12, 0)];
    let mut edges = vec![(5, 0, 1), (2, 4, 2), (2, 8, 4)];
    for i in 0..foos {
        edges.push((1, i, 5 + i));
    }
    for i in 0..foos {
        nodes.push((3, 3, 1001 + 2 * i, 20, 1));
        edges.push((2, 5, 3));
    }
    let nodes: Vec<String> = nodes.iter().map(|(t, n, i, s, e)| format!("{t},{n},{i},{s},{e},0,0")).collect();
    let edges: Vec<String> = edges.iter().map(|(t, n, to)| format!("{t},{n},{}", to * 7)).collect();
    let strings: Vec<String> = strings.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "{{\"snapshot\":{meta},\"nodes\":[{}],\"edges\":[{}],\"trace_function_infos\":[],\"trace_tree\":[],\"samples\":[],\"locations\":[],\"strings\":[{}]}}",
        nodes.join(","),
        edges.join(","),
        strings.join(",")
    )
}

async fn stored(hub: &RunningHub, id: &str, app: &str, kind: &str, body: String) {
    let ext = if kind == "heap_snapshot" { "heapsnapshot" } else { "cpuprofile" };
    let mut a = ArtifactRecord::pending(id, ("feedface", app), kind, ext, "test", "tok".into());
    a.status = ArtifactStatus::Ready;
    a.size = Some(body.len() as u64);
    hub.hub.artifacts.storage().write_small(&a.file_name, body.into_bytes()).await.expect("file");
    hub.hub.artifacts.create(a).await.expect("record");
}

fn token(dir: &std::path::Path, name: &str, role: Role, apps: &[&str]) -> String {
    let store = Store::open(&dir.join("hub.db")).expect("store");
    let apps = apps.iter().map(|a| a.to_string()).collect();
    operators::create(&store, NewToken { name: name.into(), role, apps, expires_at: None }).expect("token")
}

#[tokio::test]
async fn two_snapshots_compare_per_constructor_then_list_the_new_instances() {
    let dir = tempfile::tempdir().expect("dir");
    let hub = perf_hub::start(HubConfig::for_test(dir.path().to_path_buf())).await.expect("hub");
    stored(&hub, "cafe0001", "orders", "heap_snapshot", snapshot(2)).await;
    stored(&hub, "cafe0002", "orders", "heap_snapshot", snapshot(5)).await;
    stored(&hub, "cafe0003", "billing", "heap_snapshot", snapshot(1)).await;
    stored(&hub, "cafe0004", "orders", "cpu_profile", "{}".into()).await;
    let path = "/api/artifacts/cafe0002/heap/compare/cafe0001";

    // Neither index exists yet: the answer says how far both are.
    let (status, body) = get(&hub, path, ADMIN).await;
    assert_eq!(status, 202, "{body}");
    let sides: Vec<&str> =
        body["snapshots"].as_array().expect("snapshots").iter().filter_map(|s| s["artifact"].as_str()).collect();
    assert_eq!(sides, ["cafe0002", "cafe0001"], "{body}");

    let (status, body) = ready(&hub, path, ADMIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["same_process"], true);
    let rows = body["classes"]["items"].as_array().expect("rows");
    let foo = &rows[0];
    assert_eq!(foo["name"], "PerfCompareFoo", "largest size growth first: {body}");
    assert_eq!(
        (foo["new_count"].as_u64(), foo["count_delta"].as_i64(), foo["size_delta"].as_i64()),
        (Some(3), Some(3), Some(60))
    );
    assert_eq!(
        (foo["count_before"].as_u64(), foo["count_after"].as_u64(), foo["deleted_count"].as_u64()),
        (Some(2), Some(5), Some(0))
    );

    let index = foo["index"].as_u64().expect("index");
    let new_path = format!("{path}/classes/{index}/new?limit=2");
    let (status, new) = ready(&hub, &new_path, ADMIN).await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(new["total"], 3);
    let items = new["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|n| n["id"].as_u64().is_some_and(|id| id >= 1005)), "only ids not in the base: {new}");
    // A new instance opens in the explorer of the newer snapshot: held by the array, held by `holder`.
    let node = items[0]["node"].as_u64().expect("node");
    let (_, view) = get(&hub, &format!("/api/artifacts/cafe0002/heap/nodes/{node}"), ADMIN).await;
    assert_eq!(view["retainers"]["items"][0]["node"]["class"], "Array", "{view}");
    let array = view["retainers"]["items"][0]["node"]["node"].as_u64().expect("array");
    let (_, up) = get(&hub, &format!("/api/artifacts/cafe0002/heap/nodes/{array}"), ADMIN).await;
    assert_eq!(up["retainers"]["items"][0]["name"], "holder", "{up}");
    assert!(view.to_string().contains("hunter2"), "admins see string contents: {view}");

    // A viewer of the app sees the structure, not the strings; other apps don't exist for it.
    let viewer = token(dir.path(), "v", Role::Viewer, &["orders"]);
    let (status, rows_v) = get(&hub, path, &viewer).await;
    assert_eq!(status, 200, "{rows_v}");
    let (_, view_v) = get(&hub, &format!("/api/artifacts/cafe0002/heap/nodes/{node}"), &viewer).await;
    assert!(!view_v.to_string().contains("hunter2"), "{view_v}");
    let (status, _) = get(&hub, "/api/artifacts/cafe0003/heap/compare/cafe0001", &viewer).await;
    assert_eq!(status, 404, "another app's snapshot is out of scope");

    // Both heap snapshots, of one app; unknown ids are 404.
    let (status, body) = get(&hub, "/api/artifacts/cafe0003/heap/compare/cafe0001", ADMIN).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("billing") && e.contains("one app")), "{body}");
    let (status, body) = get(&hub, "/api/artifacts/cafe0004/heap/compare/cafe0001", ADMIN).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("not a heap snapshot")), "{body}");
    assert_eq!(get(&hub, "/api/artifacts/cafe0002/heap/compare/cafe9999", ADMIN).await.0, 404);
    assert_eq!(get(&hub, &format!("{path}/classes/999/new"), ADMIN).await.0, 404);
}

#[tokio::test]
async fn two_snapshots_too_big_to_cache_together_still_compare() {
    // A budget smaller than either index: each one built evicts the other from the cache, so
    // the comparison must hold the first while the second is built, not rebuild them in turn.
    let dir = tempfile::tempdir().expect("dir");
    let mut config = HubConfig::for_test(dir.path().to_path_buf());
    config.heap_index_budget_bytes = 1;
    let hub = perf_hub::start(config).await.expect("hub");
    stored(&hub, "beef0001", "orders", "heap_snapshot", snapshot(2)).await;
    stored(&hub, "beef0002", "orders", "heap_snapshot", snapshot(4)).await;
    let (status, body) = ready(&hub, "/api/artifacts/beef0002/heap/compare/beef0001", ADMIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["classes"]["items"][0]["new_count"], 2, "{body}");
    let index = body["classes"]["items"][0]["index"].as_u64().expect("index");
    let (status, new) =
        ready(&hub, &format!("/api/artifacts/beef0002/heap/compare/beef0001/classes/{index}/new"), ADMIN).await;
    assert_eq!((status, new["total"].as_u64()), (200, Some(2)), "{new}");
}
