//! The hub's upload intake over real TCP, driven by a raw protocol client: the artifact
//! lifecycle refuses what doesn't fit the artifact's state, one stream per artifact, and a
//! storage failure ends the artifact `failed` with its reason instead of leaving it `uploading`.

use perf_hub::store::{ArtifactRecord, ArtifactStatus};
use perf_hub::{HubConfig, RunningHub};
use perf_protocol::{ErrorCode, FrameReader, FrameWriter, Message, UploadHello, PROTOCOL_VERSION};
use sha2::Digest;
use std::time::{Duration, Instant};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const TOKEN: &str = "upload-token-0123456789abcdef";

async fn hub(dir: &std::path::Path) -> RunningHub {
    perf_hub::start(HubConfig::for_test(dir.to_path_buf())).await.expect("hub")
}

fn local(hub: &RunningHub) -> &perf_hub::storage::local::LocalStore {
    hub.hub.artifacts.storage().local().expect("local disk")
}

async fn insert(hub: &RunningHub, id: &str, status: ArtifactStatus) -> ArtifactRecord {
    let mut a =
        ArtifactRecord::pending(id, ("feedface", "orders"), "heap_snapshot", "heapsnapshot", "test", TOKEN.into());
    a.status = status;
    hub.hub.artifacts.create(a.clone()).await.expect("insert");
    a
}

struct Upload {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
}

/// Opens an upload stream for `id` announcing `payload`; returns the stream and the hub's reply.
async fn open(hub: &RunningHub, id: &str, payload: &[u8]) -> (Upload, Message) {
    let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
    let mut up = Upload { reader: FrameReader::new(r), writer: FrameWriter::new(w) };
    let hello = UploadHello {
        protocol_version: PROTOCOL_VERSION,
        command_id: id.into(),
        token: TOKEN.into(),
        size: payload.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(payload)),
    };
    up.writer.send(&Message::UploadHello(hello)).await.expect("hello");
    let reply = tokio::time::timeout(Duration::from_secs(10), up.reader.read_message())
        .await
        .expect("reply in time")
        .expect("reply");
    (up, reply)
}

async fn send_all(up: &mut Upload, payload: &[u8]) -> Message {
    up.writer.send_data(payload).await.expect("data");
    up.writer.send(&Message::UploadDone).await.expect("done");
    tokio::time::timeout(Duration::from_secs(10), up.reader.read_message())
        .await
        .expect("answer in time")
        .expect("answer")
}

async fn final_state(hub: &RunningHub, id: &str) -> ArtifactRecord {
    let t0 = Instant::now();
    loop {
        let a = hub.hub.artifacts.get(id).await.expect("store").expect("artifact");
        if a.status.is_final() || t0.elapsed() > Duration::from_secs(10) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_upload_completes_a_running_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(dir.path()).await;
    insert(&hub, "a0000001", ArtifactStatus::Running).await;
    let (mut up, reply) = open(&hub, "a0000001", b"{}").await;
    assert!(matches!(reply, Message::UploadOffset { offset: 0 }), "{reply:?}");
    assert!(matches!(send_all(&mut up, b"{}").await, Message::UploadAck { ok: true, .. }));
    assert_eq!(final_state(&hub, "a0000001").await.status, ArtifactStatus::Ready);
}

#[tokio::test]
async fn a_late_upload_cannot_revive_a_failed_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(dir.path()).await;
    insert(&hub, "a0000002", ArtifactStatus::Failed).await;
    let (_up, reply) = open(&hub, "a0000002", b"forged").await;
    assert!(matches!(reply, Message::Error { code: ErrorCode::AuthFailed, .. }), "{reply:?}");
    let a = hub.hub.artifacts.get("a0000002").await.expect("store").expect("artifact");
    assert_eq!(a.status, ArtifactStatus::Failed);
    assert!(!local(&hub).path(&a.file_name).exists());
}

#[tokio::test]
async fn a_second_concurrent_upload_with_the_same_token_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(dir.path()).await;
    insert(&hub, "a0000003", ArtifactStatus::Running).await;
    let payload = b"{\"first\":true}";
    let (mut first, reply) = open(&hub, "a0000003", payload).await;
    assert!(matches!(reply, Message::UploadOffset { .. }), "{reply:?}");
    let (_second, reply) = open(&hub, "a0000003", payload).await;
    assert!(matches!(reply, Message::Error { code: ErrorCode::Busy, .. }), "{reply:?}");
    assert!(matches!(send_all(&mut first, payload).await, Message::UploadAck { ok: true, .. }));
    let a = final_state(&hub, "a0000003").await;
    assert_eq!(a.status, ArtifactStatus::Ready);
    assert_eq!(std::fs::read(local(&hub).path(&a.file_name)).expect("stored"), payload);
}

#[tokio::test]
async fn a_storage_error_on_commit_fails_the_artifact_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(dir.path()).await;
    let a = insert(&hub, "a0000004", ArtifactStatus::Running).await;
    // A non-empty directory where the artifact should go: the final rename fails.
    std::fs::create_dir_all(local(&hub).path(&a.file_name).join("occupied")).expect("obstacle");
    let (mut up, _) = open(&hub, "a0000004", b"{}").await;
    let answer = send_all(&mut up, b"{}").await;
    assert!(matches!(answer, Message::Error { code: ErrorCode::Internal, .. }), "{answer:?}");
    let a = final_state(&hub, "a0000004").await;
    assert_eq!(a.status, ArtifactStatus::Failed);
    assert!(a.error.as_deref().unwrap_or("").contains("could not store"), "{:?}", a.error);
    assert_eq!(local(&hub).part_len("a0000004").await, 0, "the partial upload is removed");
}

#[tokio::test]
async fn a_write_error_during_the_upload_fails_the_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = hub(dir.path()).await;
    insert(&hub, "a0000005", ArtifactStatus::Running).await;
    // The partial file can't be opened for appending (a directory is in its place).
    std::fs::create_dir_all(local(&hub).part_path("a0000005").join("x")).expect("obstacle");
    let (_up, reply) = open(&hub, "a0000005", b"{}").await;
    assert!(matches!(reply, Message::Error { code: ErrorCode::Internal, .. }), "the agent is told: {reply:?}");
    let a = final_state(&hub, "a0000005").await;
    assert_eq!(a.status, ArtifactStatus::Failed);
    assert!(a.error.as_deref().unwrap_or("").contains("could not store"), "{:?}", a.error);
}
