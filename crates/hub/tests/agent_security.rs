//! Issue 11, the agent port: a real hub over real TCP, driven by raw protocol clients as an
//! attacker on the network would. Each test fails on the hub as it was before the fix:
//! takeover of another app's process, pre-auth limits, agent floods (sample size, rate, key
//! cardinality, processes per app), private files, hashed upload tokens, `.part` cleanup, and
//! forged-upload auditing.

use perf_hub::sample_limits::DropReason;
use perf_hub::store::{ArtifactRecord, ArtifactStatus};
use perf_hub::{HubConfig, RunningHub};
use perf_protocol::{auth, ErrorCode, FrameReader, FrameWriter, Message, ProtocolError, UploadHello, PROTOCOL_VERSION};
use sha2::Digest;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const ORDERS: (&str, &str) = ("orders", "s3cret");
const BILLING: (&str, &str) = ("billing", "billing-secret");
const WAIT: Duration = Duration::from_secs(15);

fn config(dir: &Path) -> HubConfig {
    let mut c = HubConfig::for_test(dir.to_path_buf());
    c.apps.insert(BILLING.0.into(), BILLING.1.into());
    c
}

async fn start(c: HubConfig) -> RunningHub {
    perf_hub::start(c).await.expect("hub")
}

struct Link {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
}

impl Link {
    async fn connect(hub: &RunningHub) -> Link {
        let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
        Link { reader: FrameReader::new(r), writer: FrameWriter::new(w) }
    }

    async fn recv(&mut self) -> Result<Message, ProtocolError> {
        tokio::time::timeout(WAIT, self.reader.read_message()).await.expect("an answer in time")
    }

    async fn send(&mut self, m: &Message) {
        self.writer.send(m).await.expect("send");
    }
}

/// A hello of `app` for process `id`, built from JSON so optional fields added later default.
fn hello(app: &str, id: &str, labels: serde_json::Value, caps: &[&str]) -> Message {
    Message::Hello(
        serde_json::from_value(serde_json::json!({
            "protocol_version": PROTOCOL_VERSION, "app": app, "instance_id": id, "hostname": "host-1",
            "pid": 42, "labels": labels, "node_version": "v20", "agent_version": "0.1.0", "capabilities": caps,
        }))
        .expect("hello"),
    )
}

/// Runs the handshake; returns the link and the hub's last answer (`Welcome` or an error).
async fn handshake(hub: &RunningHub, app: (&str, &str), id: &str, labels: serde_json::Value) -> (Link, Message) {
    let mut link = Link::connect(hub).await;
    link.send(&hello(app.0, id, labels, &["heap_snapshot"])).await;
    let nonce = match link.recv().await.expect("challenge") {
        Message::Challenge { nonce } => nonce,
        other => return (link, other),
    };
    link.send(&Message::Auth { mac: auth::auth_mac(app.1, &nonce, app.0, id) }).await;
    let answer = link.recv().await.expect("answer");
    (link, answer)
}

async fn agent(hub: &RunningHub, app: (&str, &str), id: &str) -> Link {
    let (link, answer) = handshake(hub, app, id, serde_json::json!({})).await;
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    link
}

/// Polls `f` until it returns `Some` (bounded: the test fails with `what` instead of hanging).
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audit_actions(hub: &RunningHub, action: &str) -> usize {
    hub.hub.audit.list(10_000).await.expect("audit").iter().filter(|a| a.action == action).count()
}

fn sample(v: serde_json::Value) -> Message {
    Message::Metrics { sample: Box::new(serde_json::from_value(v).expect("sample")) }
}

async fn stored_samples(hub: &RunningHub, id: &str) -> Vec<serde_json::Value> {
    hub.hub.metrics.flush().await;
    hub.hub.metrics.history(id, 0, 100_000).await.expect("history")
}

// ---- finding 1: a process id belongs to its app ----

#[tokio::test]
async fn a_hello_for_another_apps_process_is_refused_audited_and_stays_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let victim_id = "aaaa0000aaaa0001";
    let mut victim = agent(&hub, ORDERS, victim_id).await;

    // App B's valid secret with app A's live process id.
    let (_attacker, answer) = handshake(&hub, BILLING, victim_id, serde_json::json!({})).await;
    assert!(matches!(answer, Message::Error { code: ErrorCode::AuthFailed, .. }), "{answer:?}");
    let p = hub.hub.processes.get(victim_id).await.expect("store").expect("record");
    assert_eq!((p.app.as_str(), p.connected), ("orders", true), "the record and the link stay the victim's");
    assert_eq!(audit_actions(&hub, "agent.takeover_refused").await, 1);

    // The victim's link still works, and an attacker waiting for it to go gets nothing either.
    victim.send(&Message::Goodbye { reason: "bye".into() }).await;
    eventually("the victim to disconnect", async || (!hub.hub.processes.is_connected(victim_id)).then_some(())).await;
    let (_again, answer) = handshake(&hub, BILLING, victim_id, serde_json::json!({})).await;
    assert!(matches!(answer, Message::Error { code: ErrorCode::AuthFailed, .. }), "{answer:?}");

    // The owner is persisted: a restarted hub still refuses.
    drop(hub);
    let hub = start(config(dir.path())).await;
    let (_later, answer) = handshake(&hub, BILLING, victim_id, serde_json::json!({})).await;
    assert!(matches!(answer, Message::Error { code: ErrorCode::AuthFailed, .. }), "{answer:?}");
    agent(&hub, ORDERS, victim_id).await;
}

#[tokio::test]
async fn an_upload_with_another_artifacts_token_is_refused_and_forgeries_are_audited_once_a_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let hash = perf_hub::artifacts::hash_upload_token;
    for (id, token) in [("c0000001", "token-of-x-0123456789"), ("c0000002", "token-of-y-0123456789")] {
        let mut a =
            ArtifactRecord::pending(id, ("feedface", "orders"), "heap_snapshot", "heapsnapshot", "t", hash(token));
        a.status = ArtifactStatus::Running;
        hub.hub.artifacts.create(a).await.expect("insert");
    }
    for _ in 0..20 {
        let (_up, reply) = upload(&hub, "c0000001", "token-of-y-0123456789", b"forged").await;
        assert!(matches!(reply, Message::Error { code: ErrorCode::AuthFailed, .. }), "{reply:?}");
    }
    let a = hub.hub.artifacts.get("c0000001").await.expect("store").expect("artifact");
    assert_eq!(a.status, ArtifactStatus::Running, "a forged upload changes nothing");
    assert_eq!(audit_actions(&hub, "upload.token_refused").await, 1, "20 attempts, one entry with their count");
    // A log-injection attempt in the id is refused like any bad id.
    let (_up, reply) = upload(&hub, "c0000001\n2026 INFO fake line", "x", b"x").await;
    assert!(matches!(reply, Message::Error { code: ErrorCode::AuthFailed, .. }), "{reply:?}");
}

async fn upload(hub: &RunningHub, id: &str, token: &str, payload: &[u8]) -> (Link, Message) {
    let mut link = Link::connect(hub).await;
    let up = UploadHello {
        protocol_version: PROTOCOL_VERSION,
        command_id: id.into(),
        token: token.into(),
        size: payload.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(payload)),
    };
    link.send(&Message::UploadHello(up)).await;
    let reply = link.recv().await.expect("reply");
    (link, reply)
}

// ---- finding 2 (and 9): pre-auth limits ----

#[tokio::test]
async fn a_big_frame_before_authentication_is_refused_from_its_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let mut link = Link::connect(&hub).await;
    // The header of a 4 MiB - 1 frame, and nothing more: the hub must not wait for (or buffer) it.
    let header = ((4u32 << 20) - 1).to_be_bytes();
    let (r, mut w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
    w.write_all(&header).await.expect("header");
    w.write_all(&[1u8]).await.expect("kind");
    let mut reader = FrameReader::new(r);
    let reply = tokio::time::timeout(WAIT, reader.read_message()).await.expect("in time");
    assert!(
        matches!(&reply, Ok(Message::Error { code: ErrorCode::BadRequest, message }) if message.contains(&format!("limit of {}", perf_protocol::PRE_AUTH_MAX_FRAME_LEN))),
        "{reply:?}"
    );
    // A hello of a normal size still goes through.
    link.send(&hello("orders", "abcd0000abcd0001", serde_json::json!({}), &[])).await;
    assert!(matches!(link.recv().await, Ok(Message::Challenge { .. })));
}

#[tokio::test]
async fn unauthenticated_connections_from_one_address_are_capped_authenticated_ones_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.max_unauthenticated_per_addr = 5;
    let hub = start(c).await;
    let mut agents = Vec::new();
    for i in 0..8 {
        agents.push(agent(&hub, ORDERS, &format!("bbbb0000bbbb{i:04}")).await);
    }
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(Link::connect(&hub).await);
    }
    // Let the hub accept those five first.
    eventually("5 pre-auth connections", async || (hub.hub.admission.open().1 == 5).then_some(())).await;
    let mut sixth = Link::connect(&hub).await;
    let reply = sixth.recv().await;
    assert!(matches!(reply, Ok(Message::Error { code: ErrorCode::Busy, .. })), "{reply:?}");
    // Once one authenticates, its slot is free again.
    let mut first = idle.remove(0);
    first.send(&hello("orders", "bbbb0000cccc0001", serde_json::json!({}), &[])).await;
    assert!(matches!(first.recv().await, Ok(Message::Challenge { .. })));
    drop(first);
    eventually("the slot to be free", async || (hub.hub.admission.open().1 == 4).then_some(())).await;
    agent(&hub, ORDERS, "bbbb0000cccc0002").await;
}

#[tokio::test]
async fn the_default_limits_admit_a_thousand_handshakes_from_one_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let limits = hub.hub.admission.limits();
    assert!(limits.unauthenticated_per_addr >= 1000 && limits.unauthenticated >= 1000, "{limits:?}");
    assert!(limits.connections >= 1000, "connections limit from the fd limit: {limits:?}");
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(Link::connect(&hub).await);
    }
    eventually("1000 pre-auth connections", async || (hub.hub.admission.open().1 == 1000).then_some(())).await;
    drop(idle.pop());
    agent(&hub, ORDERS, "dddd0000dddd0001").await;
}

#[tokio::test]
async fn agent_connections_beyond_the_limit_are_closed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.max_agent_connections = Some(3);
    let hub = start(c).await;
    let _a = agent(&hub, ORDERS, "eeee0000eeee0001").await;
    let _b = agent(&hub, ORDERS, "eeee0000eeee0002").await;
    let _idle = Link::connect(&hub).await;
    eventually("3 connections", async || (hub.hub.admission.open().0 == 3).then_some(())).await;
    let mut fourth = Link::connect(&hub).await;
    let reply = fourth.recv().await;
    assert!(matches!(reply, Ok(Message::Error { code: ErrorCode::Busy, .. })), "{reply:?}");
    assert_eq!(hub.hub.admission.refused(perf_hub::admission::Refusal::TooManyConnections), 1);
    let text = hub.hub.metrics.prometheus_text(|_| true).await.expect("metrics");
    assert!(text.contains("perf_hub_agent_connections_refused_total{reason=\"connections\"} 1"), "{text}");
}

// ---- finding 7: agent floods ----

#[tokio::test]
async fn an_oversized_sample_is_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let id = "ffff0000ffff0001";
    let mut link = agent(&hub, ORDERS, id).await;
    link.send(&sample(serde_json::json!({"ts": 1, "padding": "x".repeat(100 * 1024)}))).await;
    link.send(&sample(serde_json::json!({"ts": 2, "state": "running"}))).await;
    let stored = eventually("the small sample", async || {
        let s = stored_samples(&hub, id).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(stored.len(), 1, "only the small sample is stored");
    assert_eq!(stored[0]["ts"], 2);
    assert_eq!(hub.hub.metrics.drops.samples_dropped(DropReason::TooLarge), 1);
    let text = hub.hub.metrics.prometheus_text(|_| true).await.expect("metrics");
    assert!(text.contains("perf_hub_samples_dropped_total{reason=\"too_large\"} 1"), "{text}");
}

#[tokio::test]
async fn samples_over_the_links_rate_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.samples_per_sec = 0.0;
    c.sample_burst = 5.0;
    let hub = start(c).await;
    let id = "ffff0000ffff0002";
    let mut link = agent(&hub, ORDERS, id).await;
    for ts in 0..50 {
        link.send(&sample(serde_json::json!({"ts": ts}))).await;
    }
    eventually("45 drops", async || (hub.hub.metrics.drops.samples_dropped(DropReason::Rate) == 45).then_some(()))
        .await;
    assert_eq!(stored_samples(&hub, id).await.len(), 5, "the burst is stored, the rest dropped");
}

#[tokio::test]
async fn a_hello_beyond_the_apps_process_limit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.max_processes_per_app = 3;
    let hub = start(c).await;
    let mut links = Vec::new();
    for i in 0..3 {
        links.push(agent(&hub, ORDERS, &format!("99990000aaaa{i:04}")).await);
    }
    let (_l, answer) = handshake(&hub, ORDERS, "99990000aaaa0009", serde_json::json!({})).await;
    assert!(
        matches!(&answer, Message::Error { code: ErrorCode::Busy, message } if message.contains("limit")),
        "{answer:?}"
    );
    // A listed process reconnects, and another app has its own budget.
    drop(links.pop());
    agent(&hub, ORDERS, "99990000aaaa0002").await;
    agent(&hub, BILLING, "99990000bbbb0001").await;
    assert_eq!(hub.hub.processes.list().await.expect("list").len(), 4);
}

#[tokio::test]
async fn metric_key_cardinality_is_capped_per_sample_and_per_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let id = "77770000aaaa0001";
    let mut link = agent(&hub, ORDERS, id).await;
    for round in 0..10 {
        let kinds: serde_json::Map<String, serde_json::Value> =
            (0..500).map(|i| (format!("kind_{round}_{i}"), serde_json::json!({"count": 1, "pause_ms": 1}))).collect();
        let spaces: serde_json::Map<String, serde_json::Value> =
            (0..500).map(|i| (format!("space_{round}_{i}"), serde_json::json!({"used_bytes": 1}))).collect();
        link.send(&sample(
            serde_json::json!({"ts": round, "js": {"gc": {"by_kind": kinds}, "heap": {"spaces": spaces}}}),
        ))
        .await;
    }
    eventually("10 samples", async || (stored_samples(&hub, id).await.len() == 10).then_some(())).await;
    let text = hub.hub.metrics.prometheus_text(|_| true).await.expect("metrics");
    let series = |name: &str| text.lines().filter(|l| l.starts_with(&format!("{name}{{"))).count();
    assert!(series("perf_process_gc_total") <= 128, "gc kinds: {}", series("perf_process_gc_total"));
    assert!(
        series("perf_process_heap_space_used_bytes") <= 64,
        "spaces: {}",
        series("perf_process_heap_space_used_bytes")
    );
    assert!(hub.hub.metrics.drops.keys_dropped() > 0);
    let stored = stored_samples(&hub, id).await;
    assert!(stored.iter().all(|s| s["js"]["gc"]["by_kind"].as_object().is_some_and(|m| m.len() <= 64)));
}

// ---- finding 3: private files, hashed tokens ----

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).permissions().mode() & 0o777
}

/// An agent that takes one heap snapshot command and uploads `payload` with the token it got.
async fn capture_through_the_command_path(hub: &RunningHub, id: &str, payload: &[u8]) -> (ArtifactRecord, String) {
    let mut link = agent(hub, ORDERS, id).await;
    let h = hub.hub.clone();
    let pid = id.to_string();
    let request = tokio::spawn(async move {
        h.request_command(&pid, perf_protocol::CommandKind::HeapSnapshot, false, "test").await.expect("command")
    });
    let command = loop {
        match link.recv().await.expect("command") {
            Message::Command(c) => break c,
            Message::Heartbeat { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    link.send(&Message::Ack(perf_protocol::Ack {
        command_id: command.id.clone(),
        accepted: true,
        error: None,
        estimate: None,
    }))
    .await;
    request.await.expect("request");
    let (mut up, reply) = upload(hub, &command.id, &command.upload_token, payload).await;
    assert!(matches!(reply, Message::UploadOffset { offset: 0 }), "{reply:?}");
    up.writer.send_data(payload).await.expect("data");
    up.send(&Message::UploadDone).await;
    assert!(matches!(up.recv().await, Ok(Message::UploadAck { ok: true, .. })));
    let a = hub.hub.artifacts.get(&command.id).await.expect("store").expect("artifact");
    (a, command.upload_token)
}

#[tokio::test]
async fn the_data_dir_and_every_file_the_hub_writes_are_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // A data dir an older hub left world-readable.
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let hub = start(config(&data)).await;
    let (a, _) = capture_through_the_command_path(&hub, "55550000aaaa0001", b"{\"snapshot\":1}").await;
    assert_eq!(a.status, ArtifactStatus::Ready);
    for d in [data.clone(), data.join("artifacts"), data.join("uploads")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let mut files = vec![
        data.join("hub.db"),
        data.join("audit.log"),
        hub.hub.artifacts.storage().local().expect("local").path(&a.file_name),
    ];
    files.extend(["hub.db-wal", "hub.db-shm"].iter().map(|f| data.join(f)).filter(|p| p.exists()));
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[tokio::test]
async fn upload_tokens_are_stored_hashed_and_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let (a, token) = capture_through_the_command_path(&hub, "55550000aaaa0002", b"{}").await;
    assert_eq!(a.status, ArtifactStatus::Ready, "the agent's token still authorises its upload");
    let shown = serde_json::to_string(&a).expect("json");
    assert!(!shown.contains("upload_token") && !shown.contains(&token), "{shown}");
    let db = rusqlite::Connection::open(dir.path().join("hub.db")).expect("open hub.db");
    let docs: Vec<String> = db
        .prepare("SELECT doc FROM artifacts")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(docs.len(), 1);
    assert!(!docs[0].contains(&token), "the token is in hub.db in plain text: {}", docs[0]);
    for f in ["hub.db", "hub.db-wal"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "token bytes in {f}");
    }
}

#[tokio::test]
async fn plain_tokens_an_older_hub_stored_are_hashed_by_the_migration_and_still_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = perf_hub::store::Store::open(&dir.path().join("hub.db")).expect("store");
        let mut a = ArtifactRecord::pending(
            "c0000003",
            ("feedface", "orders"),
            "heap_snapshot",
            "heapsnapshot",
            "t",
            "legacy-plain-token".into(),
        );
        a.status = ArtifactStatus::Running;
        store.insert_artifact(&a).expect("insert");
    }
    // As a hub of schema 4 left it: the next open runs migration 5.
    let db = rusqlite::Connection::open(dir.path().join("hub.db")).expect("open hub.db");
    db.execute("UPDATE schema_version SET version = 4", []).expect("downgrade");
    drop(db);
    let hub = start(config(dir.path())).await;
    let (mut up, reply) = upload(&hub, "c0000003", "legacy-plain-token", b"{}").await;
    assert!(matches!(reply, Message::UploadOffset { .. }), "{reply:?}");
    up.writer.send_data(b"{}").await.expect("data");
    up.send(&Message::UploadDone).await;
    assert!(matches!(up.recv().await, Ok(Message::UploadAck { ok: true, .. })));
    let db = rusqlite::Connection::open(dir.path().join("hub.db")).expect("open hub.db");
    let doc: String = db.query_row("SELECT doc FROM artifacts", [], |r| r.get(0)).expect("row");
    assert!(!doc.contains("legacy-plain-token"), "{doc}");
}

// ---- low findings ----

#[tokio::test]
async fn the_part_of_an_upload_that_can_no_longer_complete_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let id = "66660000aaaa0001";
    let mut link = agent(&hub, ORDERS, id).await;
    let token = "part-token-0123456789";
    let mut a = ArtifactRecord::pending(
        "c0000004",
        (id, "orders"),
        "heap_snapshot",
        "heapsnapshot",
        "t",
        perf_hub::artifacts::hash_upload_token(token),
    );
    a.status = ArtifactStatus::Running;
    hub.hub.artifacts.create(a).await.expect("insert");
    let payload = vec![7u8; 4096];
    let (mut up, reply) = upload(&hub, "c0000004", token, &payload).await;
    assert!(matches!(reply, Message::UploadOffset { .. }), "{reply:?}");
    up.writer.send_data(&payload[..1000]).await.expect("half");
    let blobs = hub.hub.artifacts.storage().local().expect("local");
    eventually("the partial upload", async || (blobs.part_len("c0000004").await == 1000).then_some(())).await;
    drop(up);
    // The process goes away: its artifact fails and the part can never complete.
    link.send(&Message::Goodbye { reason: "exit".into() }).await;
    let a = eventually("the artifact to fail", async || {
        let a = hub.hub.artifacts.get("c0000004").await.expect("store").expect("artifact");
        a.status.is_final().then_some(a)
    })
    .await;
    assert_eq!(a.status, ArtifactStatus::Failed);
    eventually("the part to be removed", async || (!blobs.part_path("c0000004").exists()).then_some(())).await;
}

#[tokio::test]
async fn parts_of_artifacts_that_ended_are_removed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = perf_hub::store::Store::open(&dir.path().join("hub.db")).expect("store");
        let mut a = ArtifactRecord::pending(
            "c0000005",
            ("feedface", "orders"),
            "heap_snapshot",
            "heapsnapshot",
            "t",
            String::new(),
        );
        a.status = ArtifactStatus::Failed;
        store.insert_artifact(&a).expect("insert");
        std::fs::create_dir_all(dir.path().join("uploads")).expect("mkdir");
        std::fs::write(dir.path().join("uploads/c0000005.part"), b"stale").expect("part");
    }
    let hub = start(config(dir.path())).await;
    assert!(!hub.hub.artifacts.storage().local().expect("local").part_path("c0000005").exists());
}

#[tokio::test]
async fn labels_over_their_total_bound_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..16).map(|i| (format!("k{i}"), serde_json::json!("v".repeat(500)))).collect();
    let (_l, answer) = handshake(&hub, ORDERS, "88880000aaaa0001", serde_json::Value::Object(labels)).await;
    assert!(matches!(answer, Message::Error { code: ErrorCode::BadRequest, .. }), "{answer:?}");
    let (_l, answer) = handshake(&hub, ORDERS, "88880000aaaa0002", serde_json::json!({"role": "web"})).await;
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
}

#[tokio::test]
async fn acks_progress_and_results_count_only_from_the_link_that_owns_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start(config(dir.path())).await;
    let (owner, other) = ("44440000aaaa0001", "44440000bbbb0001");
    let _owner_link = agent(&hub, ORDERS, owner).await;
    let mut intruder = agent(&hub, BILLING, other).await;
    let a = ArtifactRecord::pending("c0000006", (owner, "orders"), "heap_snapshot", "heapsnapshot", "t", String::new());
    hub.hub.artifacts.create(a).await.expect("insert");
    let id = "c0000006".to_string();
    intruder
        .send(&Message::Ack(perf_protocol::Ack {
            command_id: id.clone(),
            accepted: false,
            error: None,
            estimate: None,
        }))
        .await;
    let progress = perf_protocol::Progress { command_id: id.clone(), stage: "forged".into(), done: 1, total: 2 };
    intruder.send(&Message::Progress(progress)).await;
    let outcome = perf_protocol::Outcome::Captured { size: 1, sha256: "0".repeat(64), notes: vec![] };
    intruder.send(&Message::CommandResult(perf_protocol::CommandResult { command_id: id.clone(), outcome })).await;
    // A sample after them: once it is stored, the messages before it were handled.
    intruder.send(&sample(serde_json::json!({"ts": 1}))).await;
    eventually("the intruder's sample", async || (!stored_samples(&hub, other).await.is_empty()).then_some(())).await;
    let a = hub.hub.artifacts.get("c0000006").await.expect("store").expect("artifact");
    assert_eq!(a.status, ArtifactStatus::Pending, "another process's ack or result changes nothing");
    assert_eq!(a.progress, None, "nor its progress");
}
