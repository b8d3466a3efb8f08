//! `perf-hub reindex` on the local-disk store: a hub whose `hub.db` is lost gets its artifact
//! index back from the sidecars beside the artifacts (the S3 case: `s3_storage.rs`).

use perf_hub::store::ArtifactStatus;
use perf_hub::HubConfig;
use perf_protocol::{FrameReader, FrameWriter, Message, UploadHello, PROTOCOL_VERSION};
use sha2::Digest;
use tokio::net::TcpStream;

const TOKEN: &str = "upload-token-0123456789abcdef";

#[tokio::test]
async fn a_lost_hub_db_is_rebuilt_from_the_sidecars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = b"{\"snapshot\":{}}".to_vec();
    {
        let hub = perf_hub::start(HubConfig::for_test(dir.path().to_path_buf())).await.expect("hub");
        for id in ["e0000001", "e0000002"] {
            let mut a = perf_hub::store::ArtifactRecord::pending(
                id,
                ("feedface", "orders"),
                "heap_snapshot",
                "heapsnapshot",
                "t",
                TOKEN.into(),
            );
            a.status = ArtifactStatus::Running;
            hub.hub.artifacts.create(a).await.expect("insert");
            let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
            let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
            let hello = UploadHello {
                protocol_version: PROTOCOL_VERSION,
                command_id: id.into(),
                token: TOKEN.into(),
                size: bytes.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            };
            writer.send(&Message::UploadHello(hello)).await.expect("hello");
            assert!(matches!(reader.read_message().await.expect("offset"), Message::UploadOffset { .. }));
            writer.send_data(&bytes).await.expect("data");
            writer.send(&Message::UploadDone).await.expect("done");
            assert!(matches!(reader.read_message().await.expect("ack"), Message::UploadAck { ok: true, .. }));
        }
        hub.hub.artifacts.delete("e0000002", "token:ops", "no longer needed").await.expect("delete");
        hub.abort();
    }
    for f in ["hub.db", "hub.db-wal", "hub.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perf-hub"))
        .arg("reindex")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("reindex");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 artifacts restored"), "{stdout}");
    let store = perf_hub::store::Store::open(&dir.path().join("hub.db")).expect("store");
    let ready = store.get_artifact("e0000001").expect("get").expect("restored");
    assert_eq!((ready.status, ready.size), (ArtifactStatus::Ready, Some(bytes.len() as u64)));
    let deleted = store.get_artifact("e0000002").expect("get").expect("restored");
    assert_eq!(deleted.status, ArtifactStatus::Deleted, "a deleted artifact stays deleted");
    assert_eq!(deleted.deleted_reason.as_deref(), Some("no longer needed"));
}
