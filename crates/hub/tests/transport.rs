//! The hub's transport security over real TCP: an HTTP client that never finishes its header is
//! closed, an app with two secrets (rotation) welcomes agents proving either and answers each
//! with a proof made with the secret it used, a v1 agent (no `hub_nonce`) is still served,
//! connections beyond the HTTP cap wait for a free slot; and the binary refuses a public
//! plaintext listener and reads `--app-secrets-file`.

use perf_hub::config::AppSecrets;
use perf_hub::{HubConfig, RunningHub};
use perf_protocol::{auth, FrameReader, FrameWriter, Hello, Message, PROTOCOL_VERSION};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const APP: &str = "orders";

fn hello(instance_id: &str, hub_nonce: Option<&str>) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        app: APP.into(),
        instance_id: instance_id.into(),
        hostname: "test-host".into(),
        pid: 4242,
        labels: Default::default(),
        node_version: "v20.20.2".into(),
        agent_version: "0.1.0".into(),
        capabilities: vec!["heap_snapshot".into()],
        active_commands: vec![],
        hub_nonce: hub_nonce.map(str::to_string),
    }
}

/// Runs the agent's side of the handshake with `secret`; returns the hub's last handshake reply
/// and the challenge nonce it sent.
async fn handshake(hub: &RunningHub, secret: &str, hello: Hello) -> (Message, String) {
    let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let instance_id = hello.instance_id.clone();
    writer.send(&Message::Hello(hello)).await.expect("hello");
    let Message::Challenge { nonce } = reader.read_message().await.expect("challenge") else { panic!("no challenge") };
    let mac = auth::auth_mac(secret, &nonce, APP, &instance_id);
    writer.send(&Message::Auth { mac }).await.expect("auth");
    (reader.read_message().await.expect("reply"), nonce)
}

#[tokio::test]
async fn an_app_with_two_secrets_welcomes_both_and_proves_with_the_one_that_matched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = HubConfig::for_test(dir.path().to_path_buf());
    let mut secrets = AppSecrets::from("old-secret-1");
    secrets.add(APP, "new-secret-2".into()).expect("second secret");
    config.apps.insert(APP.into(), secrets);
    let hub = perf_hub::start(config).await.expect("hub");

    for (i, secret) in ["old-secret-1", "new-secret-2"].into_iter().enumerate() {
        let id = format!("{:016x}", 0xabc0 + i);
        let hub_nonce = format!("{:032x}", 0x5eed + i);
        let (reply, nonce) = handshake(&hub, secret, hello(&id, Some(&hub_nonce))).await;
        let Message::Welcome { hub_proof: Some(proof), .. } = reply else { panic!("{secret}: {reply:?}") };
        assert!(auth::verify_hub_proof(secret, &hub_nonce, &nonce, APP, &id, &proof), "{secret}: proof");
    }
    let (reply, _) = handshake(&hub, "third-secret-3", hello("00000000000000ff", Some("ab"))).await;
    assert!(matches!(reply, Message::Error { .. }), "an unknown secret is refused: {reply:?}");
    // A v1 agent sends no hub_nonce: welcomed, without a proof.
    let (reply, _) = handshake(&hub, "new-secret-2", hello("00000000000000fe", None)).await;
    assert!(matches!(reply, Message::Welcome { hub_proof: None, .. }), "{reply:?}");
}

#[tokio::test]
async fn an_http_client_that_never_finishes_its_header_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = HubConfig::for_test(dir.path().to_path_buf());
    config.http_header_timeout_ms = 300;
    let hub = perf_hub::start(config).await.expect("hub");
    let mut slow = TcpStream::connect(hub.http_addr).await.expect("connect");
    slow.write_all(b"GET /api/processes HTTP/1.1\r\nHost: hub\r\nX-Half: ").await.expect("half a header");
    let mut buf = [0u8; 1024];
    // The hub closes it (EOF, maybe after a 408 response, or a reset); the deadline only keeps
    // a hub without a header timeout from hanging the test.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the hub kept a half-sent header open");
    // Others are still served meanwhile and after.
    let mut ok = TcpStream::connect(hub.http_addr).await.expect("connect");
    ok.write_all(b"GET /api/processes HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n").await.expect("request");
    let mut answer = String::new();
    ok.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

fn hub_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_perf-hub"))
}

#[test]
fn a_public_plaintext_listener_is_refused_with_the_ways_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = hub_bin()
        .args(["serve", "--agent-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0", "--token", "tok-0123456789abcdef"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0") && stderr.contains("--tls-cert") && stderr.contains("--insecure-plaintext"));
}

#[test]
fn a_bad_secrets_file_or_a_third_secret_stops_the_hub_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("apps.secrets");
    std::fs::write(&file, "orders:secret-one-1\norders:secret-two-2\norders:secret-three-3\n").expect("write");
    let out = hub_bin()
        .args(["serve", "--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--token", "tok-0123456789abcdef"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--app-secrets-file")
        .arg(&file)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 3") && stderr.contains("more than 2 secrets"), "{stderr}");
    assert!(!stderr.contains("secret-three-3"), "the secret is not printed: {stderr}");
}

#[tokio::test]
async fn http_connections_beyond_the_cap_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = HubConfig::for_test(dir.path().to_path_buf());
    config.http_max_connections = 2;
    let hub = perf_hub::start(config).await.expect("hub");
    let request = b"GET /api/processes HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n";
    // Two idle connections take both slots (accepted in connect order from the backlog).
    let first = TcpStream::connect(hub.http_addr).await.expect("connect");
    let mut second = TcpStream::connect(hub.http_addr).await.expect("connect");
    let mut third = TcpStream::connect(hub.http_addr).await.expect("connect");
    third.write_all(request).await.expect("request");
    let mut buf = [0u8; 64];
    // While the slots are taken the third isn't served (a hub without the cap answers at once;
    // a capped one can't answer at all, so this wait can't make the test flaky).
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    drop(first);
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), third.read_to_string(&mut answer))
        .await
        .expect("served once a slot is free")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // The second slot's holder is still served normally.
    second.write_all(request).await.expect("request");
    let mut answer = String::new();
    second.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn a_missing_certificate_stops_the_hub_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("missing-cert.pem");
    let out = hub_bin()
        .args(["serve", "--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--token", "tok-0123456789abcdef"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(dir.path().join("missing-key.pem"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("TLS certificate") && stderr.contains("missing-cert.pem"), "{stderr}");
}
