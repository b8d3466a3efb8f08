//! Issue 14, what the console's processes and rules views ask of the API, against a real hub over
//! real TCP with raw-protocol agents and raw HTTP/1.1 requests: a window of the stored metric
//! history (`since` and `until`, both included, kept across pages; a reversed one is a 400; a
//! `step` keeps the first sample of each step, for a chart of a long window), and
//! each rule's last capture in `GET /api/rules` (hub-side and agent-initiated firings, found
//! again after a restart).

use perf_hub::rules::{RuleSource, RuleSpec};
use perf_hub::{HubConfig, RunningHub};
use perf_protocol::{auth, AutoCapture, CommandKind, FrameReader, FrameWriter, Message, PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

struct Link {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
}

impl Link {
    /// The next message that is not a heartbeat.
    async fn next(&mut self) -> Message {
        loop {
            match tokio::time::timeout(WAIT, self.reader.read_message()).await.expect("in time").expect("message") {
                Message::Heartbeat { .. } => {}
                m => return m,
            }
        }
    }

    async fn send(&mut self, m: &Message) {
        self.writer.send(m).await.expect("send");
    }
}

async fn agent(hub: &RunningHub, id: &str, role: &str, caps: &[&str]) -> Link {
    let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
    let mut link = Link { reader: FrameReader::new(r), writer: FrameWriter::new(w) };
    let hello = serde_json::from_value(json!({
        "protocol_version": PROTOCOL_VERSION, "app": "orders", "instance_id": id, "hostname": "h", "pid": 7,
        "labels": {"role": role}, "node_version": "v20", "agent_version": "0.1.0", "capabilities": caps,
    }))
    .expect("hello");
    link.send(&Message::Hello(hello)).await;
    let Message::Challenge { nonce } = link.next().await else { panic!("challenge") };
    link.send(&Message::Auth { mac: auth::auth_mac("s3cret", &nonce, "orders", id) }).await;
    assert!(matches!(link.next().await, Message::Welcome { .. }));
    link
}

async fn hub_in(dir: &Path) -> RunningHub {
    let mut c = HubConfig::for_test(dir.to_path_buf());
    c.heartbeat_ms = 60_000;
    perf_hub::start(c).await.expect("hub")
}

/// `GET path` as the bootstrap admin: status, headers (lower-cased names) and body.
async fn get(hub: &RunningHub, path: &str) -> (u16, String, String) {
    let addr = hub.http_addr;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer test-token\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.expect("in time").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_lowercase(), body.to_string())
}

async fn get_json(hub: &RunningHub, path: &str) -> Value {
    let (status, _, body) = get(hub, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// Polls `f` until it answers `Some` (the hub writes history in batches, links in tasks).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ts_of(samples: &Value) -> Vec<u64> {
    samples.as_array().expect("array").iter().map(|s| s["ts"].as_u64().expect("ts")).collect()
}

#[tokio::test]
async fn metric_history_is_read_in_a_window_and_by_step_both_kept_across_pages() {
    let dir = tempfile::tempdir().expect("dir");
    let hub = hub_in(dir.path()).await;
    let mut link = agent(&hub, "aaaaaaaaaaaaaaaa", "web", &["cpu_profile"]).await;
    // Five samples a minute apart, an hour ago: stored history, not the live figures.
    let base = perf_protocol::unix_ms() - 3_600_000;
    for i in 0..5 {
        let sample = json!({"ts": base + i * 60_000, "state": "running", "blocked_ms": 0});
        link.send(&Message::Metrics { sample: Box::new(serde_json::from_value(sample).expect("sample")) }).await;
    }
    let all = format!("/api/processes/aaaaaaaaaaaaaaaa/metrics?since={base}");
    eventually("the history", || async { (ts_of(&get_json(&hub, &all).await).len() == 5).then_some(()) }).await;

    let (from, to) = (base + 60_000, base + 180_000);
    let window = get_json(&hub, &format!("/api/processes/aaaaaaaaaaaaaaaa/metrics?since={from}&until={to}")).await;
    assert_eq!(ts_of(&window), vec![from, from + 60_000, to], "both ends included");

    // Pages of a window stay in the window.
    let (status, head, body) =
        get(&hub, &format!("/api/processes/aaaaaaaaaaaaaaaa/metrics?since={from}&until={to}&limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(ts_of(&serde_json::from_str(&body).expect("json")), vec![from, from + 60_000]);
    let link_header = head.lines().find_map(|l| l.strip_prefix("link: ")).expect("a Link header").to_string();
    assert!(link_header.contains(&format!("until={to}")), "{link_header}");
    let next = link_header.trim_start_matches('<').split('>').next().expect("url").to_string();
    assert_eq!(ts_of(&get_json(&hub, &next).await), vec![to]);

    // One sample per two minutes: the first of each step, the step kept in the next page's URL.
    let mut firsts: Vec<u64> = vec![];
    for t in (0..5).map(|i| base + i * 60_000) {
        if firsts.last().is_none_or(|f| f / 120_000 != t / 120_000) {
            firsts.push(t);
        }
    }
    let stepped = format!("/api/processes/aaaaaaaaaaaaaaaa/metrics?since={base}&step=120000");
    assert_eq!(ts_of(&get_json(&hub, &stepped).await), firsts);
    let (_, head, body) = get(&hub, &format!("{stepped}&limit=1")).await;
    assert_eq!(ts_of(&serde_json::from_str(&body).expect("json")), vec![firsts[0]]);
    let next = head.lines().find_map(|l| l.strip_prefix("link: ")).expect("a Link header");
    assert!(next.contains("step=120000"), "{next}");

    for bad in [format!("since={to}&until={from}"), "until=soon".to_string(), "step=10".to_string()] {
        let (status, _, body) = get(&hub, &format!("/api/processes/aaaaaaaaaaaaaaaa/metrics?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

/// A stall rule for the processes labelled `role`.
fn stall_rule(name: &str, role: &str) -> perf_hub::rules::Rule {
    let spec: RuleSpec = serde_json::from_value(json!({
        "name": name, "when": {"blocked_ms": 1000}, "capture": {"kind": "cpu_profile", "seconds": 2},
        "cooldown_secs": 60, "labels": {"role": role},
    }))
    .expect("spec");
    spec.validate(300, "token:test", RuleSource::Api).expect("rule")
}

fn rule<'a>(rules: &'a Value, name: &str) -> &'a Value {
    rules.as_array().expect("array").iter().find(|r| r["name"] == name).expect("the rule is listed")
}

#[tokio::test]
async fn each_rule_lists_its_last_capture_hub_side_and_agent_side_also_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let hub = hub_in(dir.path()).await;
    for (name, role) in [("stall", "old"), ("agent-stall", "new"), ("quiet", "none")] {
        hub.hub.rules.add(stall_rule(name, role)).await.expect("rule");
    }
    let rules = get_json(&hub, "/api/rules").await;
    assert!(rule(&rules, "stall")["last_fired"].is_null(), "never fired: {rules}");

    // An agent without the `rules` capability: the hub catches its stall from a sample.
    let mut old = agent(&hub, "bbbbbbbbbbbbbbbb", "old", &["cpu_profile"]).await;
    let sample = json!({"state": "blocked", "blocked_ms": 1250, "js": null});
    old.send(&Message::Metrics { sample: Box::new(serde_json::from_value(sample).expect("sample")) }).await;
    let Message::Command(cmd) = old.next().await else { panic!("the rule's command") };

    // An agent that runs its stall rules itself announces its capture.
    let mut new = agent(&hub, "cccccccccccccccc", "new", &["cpu_profile", "rules"]).await;
    assert!(matches!(new.next().await, Message::Rules { .. }));
    let announced = "0123456789abcdef0123456789abcdef";
    new.send(&Message::AutoCapture(AutoCapture {
        command_id: announced.into(),
        rule: "agent-stall".into(),
        reason: "event loop blocked for 1010 ms".into(),
        blocked_ms: 1010,
        kind: CommandKind::CpuProfile { seconds: 2, interval_us: None },
        upload_token: "ef".repeat(32),
    }))
    .await;

    let check = |rules: &Value| {
        let hub_side = &rule(rules, "stall")["last_fired"];
        assert_eq!(hub_side["artifact"], cmd.id.as_str(), "{rules}");
        assert_eq!(hub_side["process_id"], "bbbbbbbbbbbbbbbb");
        assert!(hub_side["reason"].as_str().is_some_and(|r| r.contains("1250")), "{hub_side}");
        assert!(hub_side["at"].as_str().is_some_and(|t| t.len() >= 20), "{hub_side}");
        let agent_side = &rule(rules, "agent-stall")["last_fired"];
        assert_eq!(agent_side["artifact"], announced);
        assert_eq!(agent_side["reason"], "event loop blocked for 1010 ms");
        assert!(rule(rules, "quiet")["last_fired"].is_null());
    };
    let rules = eventually("both firings listed", || async {
        let r = get_json(&hub, "/api/rules").await;
        (!rule(&r, "agent-stall")["last_fired"].is_null() && !rule(&r, "stall")["last_fired"].is_null()).then_some(r)
    })
    .await;
    check(&rules);

    // After a restart the artifacts tell again.
    drop((old, new));
    hub.abort();
    drop(hub);
    let again = hub_in(dir.path()).await;
    check(&get_json(&again, "/api/rules").await);

    // A new rule of a deleted rule's name has not fired.
    again.hub.rules.remove("stall").await.expect("remove");
    again.hub.rules.add(stall_rule("stall", "old")).await.expect("again");
    assert!(rule(&get_json(&again, "/api/rules").await, "stall")["last_fired"].is_null());
}
