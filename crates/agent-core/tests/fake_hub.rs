//! The agent against a hub it should not trust blindly: a fake hub over real TCP that completes
//! the handshake and sends hostile commands. Ids that are not the hub's own form never reach
//! the executor or a file path.

use perf_agent_core::{Agent, AgentConfig, Executor, JobSpec};
use perf_protocol::{Command, CommandKind, FrameReader, FrameWriter, Message};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Executor for Recorder {
    fn dispatch(&self, job: JobSpec) -> Result<(), String> {
        self.0.lock().map_err(|_| "poisoned")?.push(job.id);
        Ok(())
    }
}

async fn next_ack(reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>) -> perf_protocol::Ack {
    loop {
        let m =
            tokio::time::timeout(Duration::from_secs(10), reader.read_message()).await.expect("in time").expect("msg");
        if let Message::Ack(a) = m {
            return a;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_with_malformed_ids_are_refused_before_they_touch_a_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config =
        AgentConfig::new(&listener.local_addr().expect("addr").to_string(), "orders", "s3cret").expect("config");
    config.spool_dir = dir.path().join("spool");
    config.capabilities = vec!["heap_snapshot".into(), "cpu_profile".into()];
    config.metrics_interval = Duration::ZERO;
    let agent = Agent::start(config).expect("agent");
    let recorder = Arc::new(Recorder::default());
    agent.set_executor(Some(recorder.clone()));

    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("agent connects")
        .expect("accept");
    let (r, w) = stream.into_split();
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    assert!(matches!(reader.read_message().await.expect("hello"), Message::Hello(_)));
    writer.send(&Message::Challenge { nonce: "00".repeat(16) }).await.expect("challenge");
    assert!(matches!(reader.read_message().await.expect("auth"), Message::Auth { .. }));
    writer.send(&Message::Welcome { process_id: "feedface".into(), heartbeat_ms: 5000 }).await.expect("welcome");

    for evil in ["../../../../tmp/perf-agent-evil", "a/b", "", "x".repeat(65).as_str(), "0123456789abcdeg"] {
        let kind = CommandKind::CpuProfile { seconds: 1, interval_us: None };
        let cmd = Command { id: evil.to_string(), kind, upload_token: "t".into(), force: true };
        writer.send(&Message::Command(cmd)).await.expect("command");
        let ack = next_ack(&mut reader).await;
        assert!(!ack.accepted, "{evil:?} accepted");
        assert_eq!(ack.error.as_deref(), Some("malformed command id"));
    }
    assert!(recorder.0.lock().expect("lock").is_empty(), "nothing reached the executor");
    assert!(!std::path::Path::new("/tmp/perf-agent-evil.cpuprofile").exists());

    // The hub's own id form still works.
    let good = "0123456789abcdef0123456789abcdef";
    let kind = CommandKind::CpuProfile { seconds: 1, interval_us: None };
    writer
        .send(&Message::Command(Command { id: good.into(), kind, upload_token: "t".into(), force: false }))
        .await
        .expect("command");
    let ack = next_ack(&mut reader).await;
    assert!(ack.accepted, "{:?}", ack.error);
    assert_eq!(recorder.0.lock().expect("lock").as_slice(), [good.to_string()]);
    // The agent owns a runtime: stop it off this one.
    tokio::task::spawn_blocking(move || agent.stop(Duration::from_secs(1))).await.expect("stopped");
}
