//! A data directory that fills up (a real 16 MiB tmpfs, mounted by the test; it needs root and
//! says so loudly when it can't mount): the upload that hits "no space" fails with that reason
//! (its `.part` removed, the agent told), the hub keeps serving, the next captures are refused
//! with the reason before they start (a command answers 409), and all works again once space
//! returns. A heap snapshot whose estimated file doesn't fit is refused when the agent accepts it,
//! and an agent that understands `cancel` is told to drop it.

use perf_hub::store::{ArtifactRecord, ArtifactStatus};
use perf_hub::{HubConfig, RunningHub};
use perf_protocol::{auth, FrameReader, FrameWriter, Message, UploadHello, PROTOCOL_VERSION};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const TOKEN: &str = "upload-token-0123456789abcdef";
const MIB: usize = 1 << 20;
const WAIT: Duration = Duration::from_secs(15);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

struct Conn {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
}

impl Conn {
    async fn open(hub: &RunningHub) -> Conn {
        let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
        Conn { reader: FrameReader::new(r), writer: FrameWriter::new(w) }
    }

    async fn recv(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.reader.read_message()).await.expect("in time").expect("message")
    }
}

async fn insert(hub: &RunningHub, id: &str) {
    let mut a = ArtifactRecord::pending(id, ("feedface", "orders"), "heap_snapshot", "heapsnapshot", "t", TOKEN.into());
    a.status = ArtifactStatus::Running;
    hub.hub.artifacts.create(a).await.expect("insert");
}

/// Opens the upload of `id` for `bytes`; the hub's first answer.
async fn open_upload(hub: &RunningHub, id: &str, bytes: &[u8]) -> (Conn, Message) {
    let mut c = Conn::open(hub).await;
    let hello = UploadHello {
        protocol_version: PROTOCOL_VERSION,
        command_id: id.into(),
        token: TOKEN.into(),
        size: bytes.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
    };
    c.writer.send(&Message::UploadHello(hello)).await.expect("hello");
    let first = c.recv().await;
    (c, first)
}

async fn send(c: &mut Conn, bytes: &[u8]) -> bool {
    for chunk in bytes.chunks(256 * 1024) {
        if c.writer.send_data(chunk).await.is_err() {
            return false;
        }
    }
    true
}

async fn artifact(hub: &RunningHub, id: &str) -> ArtifactRecord {
    hub.hub.artifacts.get(id).await.expect("store").expect("artifact")
}

async fn http(hub: &RunningHub, method: &str, path: &str, body: &str) -> (u16, String) {
    http_at(hub.http_addr, method, path, body).await
}

async fn http_at(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw)).await.expect("in time").expect("read");
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
    (status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// A control link of an agent that can take heap snapshots.
async fn agent(hub: &RunningHub, id: &str) -> Conn {
    agent_with(hub, id, &["heap_snapshot"]).await
}

async fn agent_with(hub: &RunningHub, id: &str, capabilities: &[&str]) -> Conn {
    let mut link = Conn::open(hub).await;
    let hello: perf_protocol::Hello = serde_json::from_value(serde_json::json!({
        "protocol_version": PROTOCOL_VERSION, "app": "orders", "instance_id": id, "hostname": "h",
        "pid": 42, "labels": {}, "node_version": "v20", "agent_version": "0.1.0", "capabilities": capabilities,
    }))
    .expect("hello");
    link.writer.send(&Message::Hello(hello)).await.expect("hello");
    let Message::Challenge { nonce } = link.recv().await else { panic!("no challenge") };
    let mac = auth::auth_mac("s3cret", &nonce, "orders", id);
    link.writer.send(&Message::Auth { mac }).await.expect("auth");
    assert!(matches!(link.recv().await, Message::Welcome { .. }));
    link
}

/// Fills the file system of `dir` with one file until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0xa5u8; 256 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_an_upload_fails_it_with_no_space_and_refuses_the_next_capture() {
    let base = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(&base.path().join("mnt"), "16m") else {
        eprintln!("SKIPPED disk_full: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data = fs.0.join("data");
    let mut c = HubConfig::for_test(data.clone());
    c.min_free_bytes = MIB as u64;
    let hub = perf_hub::start(c).await.expect("hub");

    // The disk fills while the upload runs: "no space", the part removed, the agent told.
    insert(&hub, "d0000001").await;
    let big = vec![7u8; 6 * MIB];
    let (mut up, first) = open_upload(&hub, "d0000001", &big).await;
    assert!(matches!(first, Message::UploadOffset { offset: 0 }), "{first:?}");
    assert!(send(&mut up, &big[..MIB]).await);
    let filler = fill(&fs.0);
    if send(&mut up, &big[MIB..]).await {
        let _ = up.writer.send(&Message::UploadDone).await;
    }
    let told = up.recv().await;
    assert!(matches!(&told, Message::Error { message, .. } if message.contains("no space")), "{told:?}");
    let a = artifact(&hub, "d0000001").await;
    assert_eq!(a.status, ArtifactStatus::Failed);
    assert!(a.error.as_deref().unwrap_or("").contains("no space"), "{:?}", a.error);
    assert!(!data.join("uploads/d0000001.part").exists(), "the partial upload is removed");

    // The hub still serves, and refuses the next captures with the reason.
    assert_eq!(http(&hub, "GET", "/api/processes", "").await.0, 200);
    insert(&hub, "d0000002").await;
    let (_up, first) = open_upload(&hub, "d0000002", &vec![1u8; 2 * MIB]).await;
    assert!(matches!(&first, Message::Error { message, .. } if message.contains("no space")), "{first:?}");
    assert!(artifact(&hub, "d0000002").await.error.unwrap_or_default().contains("no space"));
    let _link = agent(&hub, "feedface").await;
    let (status, body) = http(&hub, "POST", "/api/processes/feedface/commands", r#"{"kind":"heap_snapshot"}"#).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no space"), "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(refused["artifact"]["status"], "failed", "{body}");

    // Space returns: uploads work again.
    std::fs::remove_file(filler).expect("free");
    insert(&hub, "d0000003").await;
    let small = vec![3u8; 2 * MIB];
    let (mut up, first) = open_upload(&hub, "d0000003", &small).await;
    assert!(matches!(first, Message::UploadOffset { offset: 0 }), "{first:?}");
    assert!(send(&mut up, &small).await);
    up.writer.send(&Message::UploadDone).await.expect("done");
    assert!(matches!(up.recv().await, Message::UploadAck { ok: true, .. }));
    assert_eq!(artifact(&hub, "d0000003").await.status, ArtifactStatus::Ready);
    drop(hub);
}

/// The agent's side of one heap snapshot command: accepts it with an estimate of `file_bytes`,
/// then returns the next message the hub sends on the link, if any within a second.
async fn accept_with_estimate(link: &mut Conn, file_bytes: u64) -> (String, Option<Message>) {
    // A link that understands rules gets them first.
    let cmd = loop {
        match link.recv().await {
            Message::Command(cmd) => break cmd,
            Message::Rules { .. } | Message::Heartbeat { .. } => continue,
            other => panic!("expected a command, got {other:?}"),
        }
    };
    let estimate = perf_protocol::SnapshotEstimate {
        heap_used_bytes: file_bytes / 2,
        extra_memory_bytes: 0,
        pause_ms: 10,
        file_bytes,
        headroom_bytes: None,
    };
    let ack = perf_protocol::Ack { command_id: cmd.id.clone(), accepted: true, error: None, estimate: Some(estimate) };
    link.writer.send(&Message::Ack(ack)).await.expect("ack");
    let next = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match link.reader.read_message().await {
                Ok(Message::Heartbeat { .. }) => continue,
                other => return other.ok(),
            }
        }
    });
    (cmd.id, next.await.ok().flatten())
}

#[tokio::test]
async fn a_snapshot_whose_estimate_does_not_fit_is_refused_at_accept_and_the_agent_told_to_drop_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = HubConfig::for_test(dir.path().to_path_buf());
    c.retain_max_bytes = Some(8 * MIB as u64);
    let hub = perf_hub::start(c).await.expect("hub");
    for (id, caps, told) in
        [("feedface", &["heap_snapshot", "rules"][..], true), ("beefcafe", &["heap_snapshot"][..], false)]
    {
        let mut link = agent_with(&hub, id, caps).await;
        let path = format!("/api/processes/{id}/commands");
        let request = tokio::spawn({
            let addr = hub.http_addr;
            async move { http_at(addr, "POST", &path, r#"{"kind":"heap_snapshot"}"#).await }
        });
        let (command_id, next) = accept_with_estimate(&mut link, 64 * MIB as u64).await;
        let (status, body) = request.await.expect("request");
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("over the retention cap"), "{body}");
        assert_eq!(artifact(&hub, &command_id).await.status, ArtifactStatus::Failed);
        match next {
            Some(Message::Cancel { command_id: c, reason }) if told => {
                assert_eq!(c, command_id);
                assert!(reason.contains("over the retention cap"), "{reason}");
            }
            None if !told => {} // an older agent would take `cancel` as a protocol error
            other => panic!("agent {id} (told: {told}) got {other:?}"),
        }
    }
}
