//! The agent core against a real perf-hub (in this process, over real TCP): registration,
//! auth, a snapshot command end to end, busy refusal, and reconnect after a hub restart.
//! The executor here stands in for the inspector worker (which needs Node and is covered by
//! the `__test__/` suite); it produces bytes through the same JobHandle calls.

use perf_agent_core::{Agent, AgentConfig, Executor, JobSpec};
use perf_hub::store::ArtifactStatus;
use perf_hub::HubConfig;
use perf_protocol::CommandKind;
use sha2::Digest;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the stand-in executor hands over its bytes.
#[derive(Clone, Copy)]
enum Writer {
    /// In chunks through the job handle (CPU profiles, the inspector's streamed snapshot).
    Chunks,
    /// Into the spool file the handle names, as `v8.writeHeapSnapshot()` on the main thread does.
    File,
}

/// Produces `payload` from its own thread, as the worker does.
struct ThreadExecutor {
    agent: Arc<Mutex<Option<Arc<Agent>>>>,
    payload: Vec<u8>,
    hold: Arc<Mutex<bool>>,
    writer: Writer,
}

impl Executor for ThreadExecutor {
    fn dispatch(&self, job: JobSpec) -> Result<(), String> {
        let agent = self.agent.lock().map_err(|_| "poisoned")?.clone().ok_or("no agent")?;
        let payload = self.payload.clone();
        let hold = self.hold.clone();
        let writer = self.writer;
        std::thread::spawn(move || {
            let h = agent.job(&job.id).expect("job handle");
            if matches!(job.kind, CommandKind::HeapSnapshot) && h.preflight_snapshot(1 << 20).is_err() {
                return;
            }
            while *hold.lock().expect("lock") {
                std::thread::sleep(Duration::from_millis(20));
            }
            match writer {
                Writer::Chunks => {
                    for (i, c) in payload.chunks(1000).enumerate() {
                        h.write_chunk(c).expect("chunk");
                        h.progress("capture", i as u64, payload.len() as u64 / 1000);
                    }
                }
                Writer::File => {
                    let path = h.snapshot_target().expect("spool path");
                    assert!(h.snapshot_target().is_err(), "the spool file is handed over once");
                    std::fs::write(&path, &payload).expect("external write");
                    assert_eq!(h.spooled_bytes(), payload.len() as u64);
                }
            }
            h.finish(vec![]).expect("finish");
        });
        Ok(())
    }
}

fn hub_config(dir: &std::path::Path) -> HubConfig {
    let mut c = HubConfig::for_test(dir.to_path_buf());
    c.heartbeat_ms = 500;
    c
}

fn agent_config(hub: std::net::SocketAddr, secret: &str, spool: &std::path::Path) -> AgentConfig {
    let mut c = AgentConfig::new(&hub.to_string(), "orders", secret).expect("config");
    c.labels.insert("role".into(), "worker".into());
    c.hostname = "test-host".into();
    c.node_version = "v20-test".into();
    c.spool_dir = spool.to_path_buf();
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(300);
    c
}

fn start_agent(config: AgentConfig, payload: Vec<u8>) -> (Arc<Agent>, Arc<Mutex<bool>>) {
    start_agent_writing(config, payload, Writer::Chunks)
}

fn start_agent_writing(config: AgentConfig, payload: Vec<u8>, writer: Writer) -> (Arc<Agent>, Arc<Mutex<bool>>) {
    let agent = Arc::new(Agent::start(config).expect("agent"));
    let slot = Arc::new(Mutex::new(Some(agent.clone())));
    let hold = Arc::new(Mutex::new(false));
    agent.set_executor(Some(Arc::new(ThreadExecutor { agent: slot, payload, hold: hold.clone(), writer })));
    (agent, hold)
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ready(hub: &perf_hub::Hub, id: &str) -> perf_hub::store::ArtifactRecord {
    let t0 = Instant::now();
    loop {
        let a = hub.artifacts.get(id).await.expect("store").expect("artifact");
        if a.status.is_final() {
            return a;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "artifact stuck in {:?}", a.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_end_to_end_and_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = perf_hub::start(hub_config(&dir.path().join("hub"))).await.expect("hub");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (agent, hold) =
        start_agent(agent_config(running.agent_addr, "s3cret", &dir.path().join("spool")), payload.clone());
    wait_until("agent connected", Duration::from_secs(10), || agent.status().connected).await;
    let pid = agent.status().process_id.expect("process id");
    let p = running.hub.processes.get(&pid).await.expect("store").expect("registered");
    assert!(p.connected);
    assert_eq!(p.labels.get("role").map(String::as_str), Some("worker"));

    *hold.lock().expect("lock") = true;
    let (first, refusal) =
        running.hub.request_command(&pid, CommandKind::HeapSnapshot, false, "test").await.expect("send");
    assert_eq!(refusal, None);
    assert_eq!(first.status, ArtifactStatus::Running);
    assert!(first.estimate.is_some(), "snapshot ack carries the cost estimate");
    let (second, refusal) =
        running.hub.request_command(&pid, CommandKind::HeapSnapshot, false, "test").await.expect("send");
    assert!(refusal.as_deref().unwrap_or("").contains("busy"), "{refusal:?}");
    assert_eq!(second.status, ArtifactStatus::Failed);
    *hold.lock().expect("lock") = false;

    let a = wait_ready(&running.hub, &first.id).await;
    assert_eq!(a.status, ArtifactStatus::Ready, "{:?}", a.error);
    let stored = std::fs::read(running.hub.artifacts.storage().local().expect("local store").path(&a.file_name))
        .expect("artifact file");
    assert_eq!(stored, payload);
    assert_eq!(a.sha256.as_deref(), Some(hex::encode(sha2::Sha256::digest(&payload)).as_str()));
    // The spool is removed once the hub confirmed the checksum.
    wait_until("spool cleaned", Duration::from_secs(5), || {
        std::fs::read_dir(dir.path().join("spool")).map(|d| d.count() == 0).unwrap_or(true)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_written_into_the_spool_file_is_checksummed_and_uploaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = perf_hub::start(hub_config(&dir.path().join("hub"))).await.expect("hub");
    let mut payload = b"{\"snapshot\":{},\"strings\":[".to_vec();
    payload.extend((0..100_000u32).map(|i| b'a' + (i % 26) as u8));
    payload.extend_from_slice(b"]}\n");
    let config = agent_config(running.agent_addr, "s3cret", &dir.path().join("spool"));
    let (agent, _hold) = start_agent_writing(config, payload.clone(), Writer::File);
    wait_until("agent connected", Duration::from_secs(10), || agent.status().connected).await;
    let pid = agent.status().process_id.expect("process id");
    let (art, refusal) =
        running.hub.request_command(&pid, CommandKind::HeapSnapshot, false, "test").await.expect("send");
    assert_eq!(refusal, None);
    let a = wait_ready(&running.hub, &art.id).await;
    assert_eq!(a.status, ArtifactStatus::Ready, "{:?}", a.error);
    assert_eq!(
        std::fs::read(running.hub.artifacts.storage().local().expect("local store").path(&a.file_name))
            .expect("artifact file"),
        payload
    );
    assert_eq!(a.sha256.as_deref(), Some(hex::encode(sha2::Sha256::digest(&payload)).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_snapshot_file_fails_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = perf_hub::start(hub_config(&dir.path().join("hub"))).await.expect("hub");
    let config = agent_config(running.agent_addr, "s3cret", &dir.path().join("spool"));
    let (agent, _hold) = start_agent_writing(config, b"{\"snapshot\":{},\"nodes\":[1,2,".to_vec(), Writer::File);
    wait_until("agent connected", Duration::from_secs(10), || agent.status().connected).await;
    let pid = agent.status().process_id.expect("process id");
    let (art, _) = running.hub.request_command(&pid, CommandKind::HeapSnapshot, false, "test").await.expect("send");
    let a = wait_ready(&running.hub, &art.id).await;
    assert_eq!(a.status, ArtifactStatus::Failed);
    assert!(a.error.as_deref().unwrap_or("").contains("incomplete"), "{:?}", a.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = perf_hub::start(hub_config(&dir.path().join("hub"))).await.expect("hub");
    let (agent, _) = start_agent(agent_config(running.agent_addr, "wrong-secret", &dir.path().join("spool")), vec![]);
    wait_until("auth error", Duration::from_secs(10), || {
        agent.status().last_error.unwrap_or_default().contains("AuthFailed")
    })
    .await;
    assert!(!agent.status().connected);
    assert!(running.hub.processes.list().await.expect("list").is_empty());
    let audit = running.hub.audit.list(10).await.expect("audit");
    assert!(audit.iter().any(|a| a.action == "agent.auth_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_hub_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub_dir = dir.path().join("hub");
    let running = perf_hub::start(hub_config(&hub_dir)).await.expect("hub");
    let addr = running.agent_addr;
    let (agent, _) = start_agent(agent_config(addr, "s3cret", &dir.path().join("spool")), b"after restart".to_vec());
    wait_until("first connect", Duration::from_secs(10), || agent.status().connected).await;
    drop(running);
    wait_until("link down", Duration::from_secs(10), || !agent.status().connected).await;

    // Same ports, same data directory: the hub comes back with its metadata.
    let mut config = hub_config(&hub_dir);
    config.agent_addr = addr;
    let running = loop {
        match perf_hub::start(config.clone()).await {
            Ok(r) => break r,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    wait_until("reconnect", Duration::from_secs(10), || agent.status().connected && agent.status().connects >= 2).await;
    let pid = agent.status().process_id.expect("pid");
    let (a, refusal) = running.hub.request_command(&pid, CommandKind::HeapSnapshot, false, "test").await.expect("send");
    assert_eq!(refusal, None);
    let a = wait_ready(&running.hub, &a.id).await;
    assert_eq!(a.status, ArtifactStatus::Ready, "{:?}", a.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resumes_from_the_hubs_offset_and_bad_tokens_are_refused() {
    use perf_agent_core::upload::{upload_with_retry, UploadError, UploadJob};
    use perf_agent_core::{backoff::Backoff, spool::SpoolWriter};
    let dir = tempfile::tempdir().expect("tempdir");
    let running = perf_hub::start(hub_config(&dir.path().join("hub"))).await.expect("hub");
    // An artifact the hub issued, with half of its bytes already received before a cut.
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let id = "0123456789abcdef0123456789abcdef";
    let mut rec = perf_hub::store::ArtifactRecord::pending(
        id,
        ("feedfacefeedface", "orders"),
        "heap_snapshot",
        "heapsnapshot",
        "test",
        "tok-1234".into(),
    );
    rec.status = ArtifactStatus::Uploading;
    running.hub.artifacts.create(rec.clone()).await.expect("insert");
    std::fs::write(running.hub.artifacts.storage().local().expect("local store").part_path(id), &payload[..400_000])
        .expect("part");

    perf_agent_core::spool_dir::prepare(&dir.path().join("spool")).expect("spool dir");
    let mut w = SpoolWriter::create(&dir.path().join("spool"), "x.heapsnapshot", 1 << 30).expect("spool");
    w.write(&payload).expect("write");
    let file = w.finish().expect("finish");
    let quick = || Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let (_tx, cancel) = tokio::sync::watch::channel(false);

    let transport =
        std::sync::Arc::new(perf_agent_core::transport::Transport::plaintext(&running.agent_addr.to_string()));
    let bad =
        UploadJob { transport: transport.clone(), command_id: id.into(), token: "wrong".into(), file: file.clone() };
    let refused = upload_with_retry(&bad, quick(), cancel.clone()).await;
    assert!(matches!(refused, Err(UploadError::Refused(ref m)) if m.contains("token")), "{refused:?}");

    let job = UploadJob { transport, command_id: id.into(), token: "tok-1234".into(), file };
    upload_with_retry(&job, quick(), cancel).await.expect("upload");
    let a = running.hub.artifacts.get(id).await.expect("store").expect("artifact");
    assert_eq!(a.status, ArtifactStatus::Ready);
    assert_eq!(
        std::fs::read(running.hub.artifacts.storage().local().expect("local store").path(&a.file_name)).expect("file"),
        payload
    );
    // Had the agent sent from zero instead of the hub's offset, the hub would have refused the
    // excess bytes and the file would not match.
    assert_eq!(a.uploaded_bytes, payload.len() as u64);
}
