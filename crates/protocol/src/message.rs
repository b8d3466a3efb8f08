//! The messages carried in control frames, as a serde-tagged enum (`{"type": "...", ...}`).
//!
//! JSON keeps the link debuggable and lets either side add optional fields without breaking
//! the other; unknown message types are refused as errors.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every control message, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    // ---- control link handshake ----
    /// Agent → hub, first frame of a control link.
    Hello(Hello),
    /// Hub → agent: prove you know the app secret by MACing this nonce.
    Challenge {
        nonce: String,
    },
    /// Agent → hub: `auth::auth_mac(secret, nonce, app, instance_id)`.
    Auth {
        mac: String,
    },
    /// Hub → agent: authenticated.
    Welcome {
        process_id: String,
        heartbeat_ms: u64,
        /// `auth::hub_proof(secret, hub_nonce, nonce, app, instance_id)`: the hub's proof that it
        /// knows the app secret too, sent when the hello carried a `hub_nonce` (optional, so v1
        /// agents without it are still served).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub_proof: Option<String>,
    },

    // ---- both directions ----
    Heartbeat {
        ts_ms: u64,
    },
    /// A refusal or failure the peer should show to a human; the connection usually closes after.
    Error {
        code: ErrorCode,
        message: String,
    },
    Goodbye {
        reason: String,
    },

    // ---- commands ----
    /// Hub → agent.
    Command(Command),
    /// Agent → hub: the command was accepted (and is running) or refused (busy, no headroom...).
    Ack(Ack),
    /// Agent → hub: how far a running command is.
    Progress(Progress),
    /// Agent → hub: the capture is complete (the artifact now uploads) or failed.
    CommandResult(CommandResult),
    /// Agent → hub: a metrics sample ([`MetricsSample`](crate::MetricsSample): every field
    /// optional, unknown ones kept). Boxed: it is much larger than the other messages.
    Metrics {
        sample: Box<crate::MetricsSample>,
    },

    // ---- autopilot (only with agents whose hello lists the `rules` capability) ----
    /// Hub → agent: the stall rules that apply to this process, whole (sent after the welcome
    /// and on every change; an empty list clears them). The agent's stall watcher fires them
    /// itself, without a round trip to the hub.
    Rules {
        rules: Vec<AgentRule>,
    },
    /// Agent → hub: a rule fired and the agent already started its capture under an id and an
    /// upload token it chose; the hub records the artifact (or answers `cancel`).
    AutoCapture(AutoCapture),
    /// Hub → agent: drop this command's capture (the hub did not take it: hourly cap, rule gone).
    Cancel {
        command_id: String,
        reason: String,
    },

    // ---- upload stream ----
    /// Agent → hub, first frame of an upload connection.
    UploadHello(UploadHello),
    /// Hub → agent: bytes of this artifact the hub already holds; send from there.
    UploadOffset {
        offset: u64,
    },
    /// Agent → hub: all data frames are sent.
    UploadDone,
    /// Hub → agent: the artifact is stored and its checksum verified (or why not).
    UploadAck {
        ok: bool,
        error: Option<String>,
    },
}

impl Message {
    /// Short name for logs and "unexpected message" errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Challenge { .. } => "challenge",
            Message::Auth { .. } => "auth",
            Message::Welcome { .. } => "welcome",
            Message::Heartbeat { .. } => "heartbeat",
            Message::Error { .. } => "error",
            Message::Goodbye { .. } => "goodbye",
            Message::Command(_) => "command",
            Message::Ack(_) => "ack",
            Message::Progress(_) => "progress",
            Message::CommandResult(_) => "command_result",
            Message::Metrics { .. } => "metrics",
            Message::Rules { .. } => "rules",
            Message::AutoCapture(_) => "auto_capture",
            Message::Cancel { .. } => "cancel",
            Message::UploadHello(_) => "upload_hello",
            Message::UploadOffset { .. } => "upload_offset",
            Message::UploadDone => "upload_done",
            Message::UploadAck { .. } => "upload_ack",
        }
    }
}

/// Who the agent is. `instance_id` is random per agent start and names the process in the hub,
/// so a reconnect after a network blip or hub restart maps to the same process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub app: String,
    pub instance_id: String,
    pub hostname: String,
    pub pid: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub node_version: String,
    pub agent_version: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Commands this agent is still working on (capturing or uploading) — after a reconnect
    /// the hub fails the others it thought were in flight.
    #[serde(default)]
    pub active_commands: Vec<String>,
    /// Random challenge of the agent to the hub (hex): the hub answers it with `hub_proof` in
    /// its `Welcome`, so an agent obeys only a hub that knows its app secret. Optional: older
    /// agents don't send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_nonce: Option<String>,
}

/// The hello capability of an agent that understands `rules`, `auto_capture` and `cancel`
/// (older agents treat an unknown message as a protocol error, so they are never sent one).
pub const RULES_CAPABILITY: &str = "rules";

/// Most stall rules the hub pushes to one agent.
pub const MAX_AGENT_RULES: usize = 64;

/// A stall rule as the agent runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRule {
    pub name: String,
    /// Fire once the event loop has been blocked this long.
    pub blocked_ms: u64,
    /// The capture to start (a CPU profile, typically).
    pub capture: CommandKind,
    /// At most one firing per this many seconds (the hub applies it too, with its hourly cap).
    pub cooldown_secs: u64,
}

/// An agent-initiated capture, announced right after it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoCapture {
    /// The artifact id, chosen by the agent (the hub's id form: 32 hex characters).
    pub command_id: String,
    pub rule: String,
    /// What fired it, for the artifact's `trigger.reason`.
    pub reason: String,
    pub blocked_ms: u64,
    #[serde(flatten)]
    pub kind: CommandKind,
    /// The one-time secret the agent's upload stream will present (the hub keeps its hash).
    pub upload_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    AuthFailed,
    UnsupportedVersion,
    BadRequest,
    Busy,
    Internal,
}

/// A command for one process. `id` is the artifact id the result will be stored under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    #[serde(flatten)]
    pub kind: CommandKind,
    /// One-time secret that authorises the upload stream of this artifact.
    pub upload_token: String,
    /// Skip safety checks (memory headroom) the operator has been warned about.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandKind {
    HeapSnapshot,
    CpuProfile {
        seconds: u32,
        #[serde(default)]
        interval_us: Option<u32>,
    },
    PerfFlamegraph {
        seconds: u32,
        #[serde(default)]
        frequency: Option<u32>,
    },
    HeapSampling {
        seconds: u32,
        #[serde(default)]
        interval_bytes: Option<u32>,
    },
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        self.capture().name
    }

    /// File extension of the artifact this command produces.
    pub fn file_extension(&self) -> &'static str {
        self.capture().file_extension
    }
}

/// What a heap snapshot will cost the process, estimated from its current heap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEstimate {
    pub heap_used_bytes: u64,
    /// Extra memory V8 needs while writing the snapshot (13-14x the live heap, measured per line).
    pub extra_memory_bytes: u64,
    /// How long the JS thread will be paused (62-115 ms per MB of live heap, measured per line).
    pub pause_ms: u64,
    /// Expected file size (1.8-2x the live heap).
    pub file_bytes: u64,
    /// How much the process may still grow (tighter of cgroup limit and MemAvailable), if known.
    pub headroom_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub command_id: String,
    pub accepted: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub estimate: Option<SnapshotEstimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub command_id: String,
    pub stage: String,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Captured; the upload stream follows.
    Captured {
        size: u64,
        sha256: String,
        #[serde(default)]
        notes: Vec<String>,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadHello {
    pub protocol_version: u32,
    pub command_id: String,
    pub token: String,
    pub size: u64,
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_wire_shape_is_flat() {
        let cmd = Message::Command(Command {
            id: "a1".into(),
            kind: CommandKind::CpuProfile { seconds: 3, interval_us: None },
            upload_token: "t".into(),
            force: false,
        });
        let v: serde_json::Value = serde_json::to_value(&cmd).expect("serialize");
        assert_eq!(v["type"], "command");
        assert_eq!(v["kind"], "cpu_profile");
        assert_eq!(v["seconds"], 3);
        let back: Message = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, cmd);
    }

    #[test]
    fn outcome_roundtrip() {
        let m = Message::CommandResult(CommandResult {
            command_id: "x".into(),
            outcome: Outcome::Failed { error: "boom".into() },
        });
        let s = serde_json::to_string(&m).expect("serialize");
        assert!(s.contains(r#""status":"failed""#), "{s}");
        assert_eq!(serde_json::from_str::<Message>(&s).expect("deserialize"), m);
    }

    #[test]
    fn mutual_auth_fields_are_optional_both_ways() {
        // A v1 welcome (no hub_proof) still parses, and one without a proof is sent without it.
        let old: Message =
            serde_json::from_str(r#"{"type":"welcome","process_id":"p","heartbeat_ms":5000}"#).expect("v1 welcome");
        assert_eq!(old, Message::Welcome { process_id: "p".into(), heartbeat_ms: 5000, hub_proof: None });
        assert!(!serde_json::to_string(&old).expect("serialize").contains("hub_proof"));
        // A v1 agent's welcome parser ignores the new field (serde skips unknown fields).
        let new = Message::Welcome { process_id: "p".into(), heartbeat_ms: 1, hub_proof: Some("ab".into()) };
        assert!(serde_json::to_string(&new).expect("serialize").contains(r#""hub_proof":"ab""#));
        let hello: Message = serde_json::from_str(
            r#"{"type":"hello","protocol_version":1,"app":"a","instance_id":"0123456789abcdef","hostname":"h",
                "pid":1,"node_version":"v20","agent_version":"0.1.0"}"#,
        )
        .expect("v1 hello");
        let Message::Hello(hello) = hello else { panic!("hello") };
        assert_eq!(hello.hub_nonce, None);
    }

    #[test]
    fn autopilot_messages_wire_shape() {
        let rules = Message::Rules {
            rules: vec![AgentRule {
                name: "stall".into(),
                blocked_ms: 1000,
                capture: CommandKind::CpuProfile { seconds: 5, interval_us: None },
                cooldown_secs: 300,
            }],
        };
        let v = serde_json::to_value(&rules).expect("json");
        assert_eq!(v["type"], "rules");
        assert_eq!(v["rules"][0]["capture"]["kind"], "cpu_profile");
        assert_eq!(serde_json::from_value::<Message>(v).expect("back"), rules);
        let auto = Message::AutoCapture(AutoCapture {
            command_id: "ab".repeat(16),
            rule: "stall".into(),
            reason: "blocked".into(),
            blocked_ms: 1020,
            kind: CommandKind::CpuProfile { seconds: 5, interval_us: None },
            upload_token: "cd".repeat(32),
        });
        let v = serde_json::to_value(&auto).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["kind"].as_str(), v["seconds"].as_u64()),
            (Some("auto_capture"), Some("cpu_profile"), Some(5))
        );
        assert_eq!(serde_json::from_value::<Message>(v).expect("back"), auto);
        let cancel: Message =
            serde_json::from_str(r#"{"type":"cancel","command_id":"x","reason":"cap"}"#).expect("cancel");
        assert_eq!(cancel.name(), "cancel");
        // An agent without the `rules` capability would refuse these: the hub never sends them one.
        assert_eq!(RULES_CAPABILITY, "rules");
    }
}
