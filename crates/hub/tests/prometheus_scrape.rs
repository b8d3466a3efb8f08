//! Issue 11 (low): process labels `x-y`, `x_y` and `x.y` all sanitise to `label_x_y`; with
//! them on one series a real Prometheus rejected the whole scrape (`label name "label_x_y" is
//! not unique`), blanking every process's metrics. This test runs Debian's `prometheus`
//! (2.42) against a real hub's `/metrics` with the bearer token and asks Prometheus's HTTP API
//! whether the target is up. Skipped, loudly, only if the binary is missing.

use perf_hub::HubConfig;
use perf_protocol::{auth, FrameReader, FrameWriter, Message, PROTOCOL_VERSION};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMETHEUS: &str = "prometheus";

/// Kills the Prometheus this test started (by its own handle) when the test ends.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// GET `path` from `port` over plain HTTP/1.0; the JSON body.
async fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.ok()?;
    let text = String::from_utf8_lossy(&body);
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// An authenticated agent of `orders` whose labels collide once sanitised.
async fn agent_with_colliding_labels(addr: std::net::SocketAddr) -> (FrameReader<impl Sized>, FrameWriter<impl Sized>) {
    let (r, w) = TcpStream::connect(addr).await.expect("connect").into_split();
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let id = "12340000abcd0001";
    let hello = serde_json::json!({
        "protocol_version": PROTOCOL_VERSION, "app": "orders", "instance_id": id, "hostname": "h1", "pid": 1,
        "labels": {"x-y": "dash", "x_y": "underscore", "x.y": "dot", "role": "web"},
        "node_version": "v20", "agent_version": "0.1.0",
    });
    writer.send(&Message::Hello(serde_json::from_value(hello).expect("hello"))).await.expect("hello");
    let Ok(Message::Challenge { nonce }) = reader.read_message().await else { panic!("no challenge") };
    writer.send(&Message::Auth { mac: auth::auth_mac("s3cret", &nonce, "orders", id) }).await.expect("auth");
    assert!(matches!(reader.read_message().await, Ok(Message::Welcome { .. })));
    (reader, writer)
}

#[tokio::test]
async fn a_real_prometheus_scrapes_a_process_with_labels_that_sanitise_alike() {
    if Command::new(PROMETHEUS).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("\n\n*** SKIPPED: `{PROMETHEUS}` is not installed (apt-get install -y prometheus) ***\n\n");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = perf_hub::start(HubConfig::for_test(dir.path().join("hub"))).await.expect("hub");
    let _agent = agent_with_colliding_labels(hub.agent_addr).await;
    let text = hub.hub.metrics.prometheus_text(|_| true).await.expect("metrics");
    assert!(text.contains("label_x_y="), "{text}");

    let config = dir.path().join("prometheus.yml");
    let token = hub.hub.config.token.clone();
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n  - job_name: hub\n    authorization: {{credentials: \"{token}\"}}\n    \
             static_configs: [{{targets: [\"{}\"]}}]\n",
            hub.http_addr
        ),
    )
    .expect("config");
    let port = free_port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = Started(child);

    // The first scrape that ends decides: "up", or "down" with Prometheus's reason.
    let t0 = Instant::now();
    let target = loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "prometheus never scraped the hub");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(t) = get_json(port, "/api/v1/targets").await else { continue };
        let target = t["data"]["activeTargets"][0].clone();
        if matches!(target["health"].as_str(), Some("up" | "down")) {
            break target;
        }
    };
    assert_eq!(target["health"], "up", "Prometheus rejected the scrape: {}", target["lastError"]);
    // And the process's own series made it in (not only the hub's).
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(30), "no perf_process_up series in Prometheus");
        if let Some(q) = get_json(port, "/api/v1/query?query=perf_process_up").await {
            if let Some(r) = q["data"]["result"].as_array().and_then(|r| r.first()) {
                assert_eq!(r["metric"]["process_id"], "12340000abcd0001");
                assert_eq!(r["metric"]["label_role"], "web");
                assert_eq!(r["value"][1], "1");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
