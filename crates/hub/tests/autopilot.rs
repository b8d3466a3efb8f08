//! Issue 13, the autopilot on the agent link: a real hub over real TCP, driven by raw protocol
//! clients. Stall rules go down the link only to agents that announce the `rules` capability
//! (an older agent would drop the link on an unknown message), and again on every change; an
//! older agent's stall is caught by the hub from its samples; an agent-initiated capture is
//! recorded as the rule's, and one over the hourly cap is cancelled.

use perf_hub::rules::{RuleSource, RuleSpec};
use perf_hub::{HubConfig, RunningHub};
use perf_protocol::{
    auth, AutoCapture, CommandKind, FrameReader, FrameWriter, Message, ProtocolError, PROTOCOL_VERSION,
};
use std::time::{Duration, Instant};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

struct Link {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
}

impl Link {
    async fn recv(&mut self) -> Result<Message, ProtocolError> {
        tokio::time::timeout(WAIT, self.reader.read_message()).await.expect("an answer in time")
    }

    /// The next message that is not a heartbeat.
    async fn next(&mut self) -> Message {
        loop {
            match self.recv().await.expect("message") {
                Message::Heartbeat { .. } => {}
                m => return m,
            }
        }
    }

    async fn send(&mut self, m: &Message) {
        self.writer.send(m).await.expect("send");
    }
}

async fn agent(hub: &RunningHub, id: &str, caps: &[&str]) -> Link {
    let (r, w) = TcpStream::connect(hub.agent_addr).await.expect("connect").into_split();
    let mut link = Link { reader: FrameReader::new(r), writer: FrameWriter::new(w) };
    let hello = serde_json::from_value(serde_json::json!({
        "protocol_version": PROTOCOL_VERSION, "app": "orders", "instance_id": id, "hostname": "h", "pid": 7,
        "labels": {"role": "web"}, "node_version": "v20", "agent_version": "0.1.0", "capabilities": caps,
    }))
    .expect("hello");
    link.send(&Message::Hello(hello)).await;
    let Message::Challenge { nonce } = link.recv().await.expect("challenge") else { panic!("challenge") };
    link.send(&Message::Auth { mac: auth::auth_mac("s3cret", &nonce, "orders", id) }).await;
    assert!(matches!(link.recv().await.expect("welcome"), Message::Welcome { .. }));
    link
}

fn stall_rule(name: &str, cooldown_secs: u64) -> perf_hub::rules::Rule {
    let spec: RuleSpec = serde_json::from_value(serde_json::json!({
        "name": name, "when": {"blocked_ms": 1000}, "capture": {"kind": "cpu_profile", "seconds": 2},
        "cooldown_secs": cooldown_secs,
    }))
    .expect("spec");
    spec.validate(300, "token:test", RuleSource::Api).expect("rule")
}

async fn hub_with(cap: u32) -> RunningHub {
    let dir = tempfile::tempdir().expect("dir").keep();
    let mut c = HubConfig::for_test(dir);
    c.autopilot_max_captures_per_hour = cap;
    c.heartbeat_ms = 60_000;
    perf_hub::start(c).await.expect("hub")
}

#[tokio::test]
async fn stall_rules_go_only_to_agents_that_understand_them_and_follow_every_change() {
    let hub = hub_with(20).await;
    hub.hub.rules.add(stall_rule("stall", 60)).await.expect("rule");
    let mut new = agent(&hub, "aaaaaaaaaaaaaaaa", &["cpu_profile", "rules"]).await;
    let Message::Rules { rules } = new.next().await else { panic!("rules after the welcome") };
    assert_eq!((rules.len(), rules[0].name.as_str(), rules[0].blocked_ms), (1, "stall", 1000));

    // An older agent gets no `rules` message; its stall is caught from its samples instead.
    let mut old = agent(&hub, "bbbbbbbbbbbbbbbb", &["cpu_profile"]).await;
    let sample = serde_json::json!({"state": "blocked", "blocked_ms": 1250, "js": null});
    old.send(&Message::Metrics { sample: Box::new(serde_json::from_value(sample).expect("sample")) }).await;
    let Message::Command(cmd) = old.next().await else { panic!("the hub-side rule's command, not a rules message") };
    assert!(matches!(cmd.kind, CommandKind::CpuProfile { seconds: 2, .. }), "{cmd:?}");
    let a = hub.hub.artifacts.get(&cmd.id).await.expect("get").expect("artifact");
    assert_eq!(a.requested_by, "rule:stall");
    assert_eq!(a.trigger.as_ref().map(|t| t.rule.as_str()), Some("stall"));

    // A change reaches the agent that runs rules at once, whole.
    hub.hub.rules.remove("stall").await.expect("remove");
    perf_hub::rules::fire::push_to_agents(&hub.hub).await;
    let Message::Rules { rules } = new.next().await else { panic!("rules after the change") };
    assert!(rules.is_empty());
}

#[tokio::test]
async fn an_agent_initiated_capture_is_the_rules_and_one_over_the_hourly_cap_is_cancelled() {
    let hub = hub_with(1).await;
    hub.hub.rules.add(stall_rule("stall", 1)).await.expect("rule");
    let mut link = agent(&hub, "cccccccccccccccc", &["cpu_profile", "rules"]).await;
    assert!(matches!(link.next().await, Message::Rules { .. }));
    let announce = |id: &str| {
        Message::AutoCapture(AutoCapture {
            command_id: id.to_string(),
            rule: "stall".into(),
            reason: "event loop blocked for 1010 ms".into(),
            blocked_ms: 1010,
            kind: CommandKind::CpuProfile { seconds: 2, interval_us: None },
            upload_token: "ef".repeat(32),
        })
    };
    let first = "0123456789abcdef0123456789abcdef";
    link.send(&announce(first)).await;
    let t0 = Instant::now();
    let a = loop {
        if let Some(a) = hub.hub.artifacts.get(first).await.expect("get") {
            break a;
        }
        assert!(t0.elapsed() < WAIT, "the artifact is recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(a.requested_by, "rule:stall");
    assert!(a.trigger.is_some_and(|t| t.reason.contains("1010 ms")));
    assert!(
        perf_hub::artifacts::upload_token_matches(&a.upload_token, &"ef".repeat(32)),
        "the agent's token uploads it"
    );

    // Past the cooldown but over the hourly cap of 1: the hub tells the agent to drop it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = "fedcba9876543210fedcba9876543210";
    link.send(&announce(second)).await;
    let Message::Cancel { command_id, reason } = link.next().await else { panic!("cancel") };
    assert_eq!(command_id, second);
    assert!(reason.contains("hourly cap of 1"), "{reason}");
    assert!(hub.hub.artifacts.get(second).await.expect("get").is_none());
    let audit = hub.hub.audit.list(100).await.expect("audit");
    assert!(audit.iter().any(|e| e.actor == "rule:stall" && e.result.contains("hourly cap")));
}
