//! The agent against a hub it should not trust blindly: a fake hub over real TCP that completes
//! the handshake and sends hostile commands. Ids that are not the hub's own form never reach
//! the executor or a file path, and a hub that can't prove it knows the app secret (no or a
//! wrong `hub_proof` in its welcome) is dropped before it can order anything.

use perf_agent_core::{Agent, AgentConfig, Executor, JobSpec};
use perf_protocol::{auth, Command, CommandKind, FrameReader, FrameWriter, Message};
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

type Reader = FrameReader<tokio::net::tcp::OwnedReadHalf>;
type Writer = FrameWriter<tokio::net::tcp::OwnedWriteHalf>;

/// What the fake hub puts in its welcome as `hub_proof`.
enum Proof {
    /// The right proof: this fake hub knows the secret.
    Right,
    /// A proof made with another secret.
    WrongSecret,
    /// None at all (a v1 hub, or an impostor that can't make one).
    Missing,
}

/// Accepts the agent's connection and runs the handshake as a hub would, up to its welcome.
async fn handshake(listener: &TcpListener, proof: Proof) -> (Reader, Writer) {
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("agent connects")
        .expect("accept");
    let (r, w) = stream.into_split();
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let Message::Hello(hello) = reader.read_message().await.expect("hello") else { panic!("not a hello") };
    let hub_nonce = hello.hub_nonce.clone().expect("the agent challenges the hub");
    let nonce = "00".repeat(16);
    writer.send(&Message::Challenge { nonce: nonce.clone() }).await.expect("challenge");
    assert!(matches!(reader.read_message().await.expect("auth"), Message::Auth { .. }));
    let proof_with = |secret: &str| auth::hub_proof(secret, &hub_nonce, &nonce, &hello.app, &hello.instance_id);
    let hub_proof = match proof {
        Proof::Right => Some(proof_with("s3cret")),
        Proof::WrongSecret => Some(proof_with("not-the-secret")),
        Proof::Missing => None,
    };
    writer
        .send(&Message::Welcome { process_id: "feedface".into(), heartbeat_ms: 5000, hub_proof })
        .await
        .expect("welcome");
    (reader, writer)
}

fn agent_for(listener: &TcpListener, spool: &std::path::Path) -> (Agent, Arc<Recorder>) {
    let mut config =
        AgentConfig::new(&listener.local_addr().expect("addr").to_string(), "orders", "s3cret").expect("config");
    config.spool_dir = spool.to_path_buf();
    config.capabilities = vec!["heap_snapshot".into(), "cpu_profile".into()];
    config.metrics_interval = Duration::ZERO;
    let agent = Agent::start(config).expect("agent");
    let recorder = Arc::new(Recorder::default());
    agent.set_executor(Some(recorder.clone()));
    (agent, recorder)
}

async fn next_ack(reader: &mut Reader) -> perf_protocol::Ack {
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
    let (agent, recorder) = agent_for(&listener, &dir.path().join("spool"));
    let (mut reader, mut writer) = handshake(&listener, Proof::Right).await;

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

/// A fake hub that doesn't know the app secret orders a forced heap snapshot: the agent drops the
/// link at the welcome, so the command is never read, acked or run, and its status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_cannot_prove_the_app_secret_is_never_obeyed() {
    for (proof, why) in [(Proof::Missing, "no hub_proof"), (Proof::WrongSecret, "hub_proof is wrong")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (agent, recorder) = agent_for(&listener, &dir.path().join("spool"));
        let (mut reader, mut writer) = handshake(&listener, proof).await;
        let cmd = Command {
            id: "0123456789abcdef0123456789abcdef".into(),
            kind: CommandKind::HeapSnapshot,
            upload_token: "t".into(),
            force: true,
        };
        // The agent may already have closed: a failed send is fine too.
        let _ = writer.send(&Message::Command(cmd)).await;
        // The agent hangs up without a word about the command (no ack, no progress).
        loop {
            match tokio::time::timeout(Duration::from_secs(10), reader.read_message()).await.expect("agent hangs up") {
                Ok(Message::Heartbeat { .. }) => {}
                Ok(other) => panic!("the agent answered an untrusted hub: {other:?}"),
                Err(_) => break,
            }
        }
        let t0 = std::time::Instant::now();
        let status = loop {
            let s = agent.status();
            if s.last_error.is_some() || t0.elapsed() > Duration::from_secs(10) {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let err = status.last_error.unwrap_or_default();
        assert!(err.contains("not trusted") && err.contains(why), "{err}");
        assert!(!status.connected);
        assert!(recorder.0.lock().expect("lock").is_empty(), "the command reached the executor");
        tokio::task::spawn_blocking(move || agent.stop(Duration::from_secs(1))).await.expect("stopped");
    }
}
