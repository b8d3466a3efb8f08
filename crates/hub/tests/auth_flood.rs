//! A flood of agents with a wrong secret, as raw-protocol clients over real TCP: each is refused,
//! and the audit holds one aggregated `agent.auth_failed` entry for the source with the exact
//! count — not one row per attempt — so the real entries stay listed.

use perf_hub::HubConfig;
use perf_protocol::{ErrorCode, FrameReader, FrameWriter, Hello, Message, PROTOCOL_VERSION};
use std::time::Duration;
use tokio::net::TcpStream;

/// One handshake with a wrong secret; returns the hub's final answer.
async fn wrong_secret_hello(addr: std::net::SocketAddr, i: u32) -> Message {
    let (r, w) = TcpStream::connect(addr).await.expect("connect").into_split();
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        app: "orders".into(),
        instance_id: format!("{i:032x}"),
        hostname: "attacker".into(),
        pid: i,
        labels: Default::default(),
        node_version: "v20".into(),
        agent_version: "0".into(),
        capabilities: vec![],
        active_commands: vec![],
        hub_nonce: None,
    };
    writer.send(&Message::Hello(hello.clone())).await.expect("hello");
    let Message::Challenge { nonce } = read(&mut reader).await else { panic!("expected a challenge") };
    let mac = perf_protocol::auth::auth_mac("not-the-secret", &nonce, &hello.app, &hello.instance_id);
    writer.send(&Message::Auth { mac }).await.expect("auth");
    read(&mut reader).await
}

async fn read(reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), reader.read_message()).await.expect("in time").expect("message")
}

#[tokio::test]
async fn a_flood_of_wrong_secrets_is_one_aggregated_audit_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = perf_hub::start(HubConfig::for_test(dir.path().to_path_buf())).await.expect("hub");
    hub.hub.audit.record("bootstrap@127.0.0.1", "command.request", "p1", serde_json::json!({}), "accepted").await;
    const N: u32 = 300;
    for i in 0..N {
        match wrong_secret_hello(hub.agent_addr, i).await {
            Message::Error { code: ErrorCode::AuthFailed, .. } => {}
            other => panic!("attempt {i}: expected auth_failed, got {other:?}"),
        }
    }
    let audit = hub.hub.audit.list(10_000).await.expect("audit");
    let failed: Vec<_> = audit.iter().filter(|e| e.action == "agent.auth_failed").collect();
    assert_eq!(failed.len(), 1, "one entry, not {N}: {:?}", audit.len());
    assert_eq!(failed[0].actor, "agent@127.0.0.1");
    assert_eq!(failed[0].detail["count"], N);
    assert!(audit.iter().any(|e| e.action == "command.request"), "the real entry is still listed");
    let log = std::fs::read_to_string(dir.path().join("audit.log")).expect("audit.log");
    assert!(log.lines().count() <= 4, "audit.log: {} lines", log.lines().count());
}
