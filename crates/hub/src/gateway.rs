//! The agent gateway: accepts agent connections, authenticates control links, routes commands
//! and acks, and takes in artifact uploads on their own connections.

use crate::artifacts::Transition;
use crate::hub::Hub;
use crate::ids;
use crate::processes::ProcessState;
use crate::store::{now_rfc3339, ArtifactStatus, ProcessRecord};
use perf_protocol::{
    auth, Ack, CommandResult, ErrorCode, Frame, FrameReader, FrameWriter, Hello, Message, Outcome, ProtocolError,
    UploadHello, PROTOCOL_VERSION,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Record upload progress in the store every this many bytes.
const UPLOAD_PROGRESS_STEP: u64 = 8 << 20;

type Reader = FrameReader<OwnedReadHalf>;
type Writer = FrameWriter<OwnedWriteHalf>;

/// Accepts agent connections until aborted; aborting it also ends every open connection (the
/// tasks live in a JoinSet owned by this future).
pub async fn serve(hub: Arc<Hub>, listener: TcpListener) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connection tasks so the set doesn't grow.
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, remote)) => {
                let hub = hub.clone();
                connections.spawn(async move {
                    if let Err(e) = handle_connection(hub, stream, remote).await {
                        tracing::debug!(%remote, error = %e, "agent connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle_connection(hub: Arc<Hub>, stream: TcpStream, remote: SocketAddr) -> Result<(), ProtocolError> {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = FrameReader::new(r);
    let mut writer = FrameWriter::new(w);
    let first =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_message()).await.map_err(|_| ProtocolError::Closed)?;
    let first = match first {
        Ok(m) => m,
        Err(e) => {
            let _ = send_error(&mut writer, ErrorCode::BadRequest, &e.to_string()).await;
            return Err(e);
        }
    };
    match first {
        Message::Hello(hello) => control_session(hub, reader, writer, hello, remote).await,
        Message::UploadHello(up) => upload_session(hub, reader, writer, up, remote).await,
        other => {
            let msg = format!("expected hello or upload_hello, got {}", other.name());
            send_error(&mut writer, ErrorCode::BadRequest, &msg).await
        }
    }
}

async fn send_error(w: &mut Writer, code: ErrorCode, message: &str) -> Result<(), ProtocolError> {
    w.send(&Message::Error { code, message: message.to_string() }).await?;
    let _ = w.shutdown().await;
    Ok(())
}

fn validate_hello(h: &Hello) -> Result<(), String> {
    if h.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} is not supported (hub speaks {PROTOCOL_VERSION})",
            h.protocol_version
        ));
    }
    if !ids::is_valid_id(&h.instance_id) {
        return Err("instance_id must be 8-64 hex characters".into());
    }
    let too_long = |s: &str, n: usize| s.len() > n;
    if h.app.is_empty() || too_long(&h.app, 128) || too_long(&h.hostname, 255) || h.labels.len() > 64 {
        return Err("hello fields out of bounds".into());
    }
    if h.labels.iter().any(|(k, v)| too_long(k, 128) || too_long(v, 512)) || h.capabilities.len() > 64 {
        return Err("labels or capabilities out of bounds".into());
    }
    Ok(())
}

/// Challenge–response: returns whether the agent proved it knows its app's secret.
async fn authenticate(
    hub: &Hub,
    reader: &mut Reader,
    writer: &mut Writer,
    hello: &Hello,
) -> Result<bool, ProtocolError> {
    let nonce = ids::new_secret().map_err(|e| ProtocolError::Io(std::io::Error::other(e.to_string())))?;
    writer.send(&Message::Challenge { nonce: nonce.clone() }).await?;
    let answer =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_message()).await.map_err(|_| ProtocolError::Closed)??;
    let Message::Auth { mac } = answer else {
        return Err(ProtocolError::Unexpected { expected: "auth", got: answer.name().into() });
    };
    // An unknown app and a wrong secret look the same from outside.
    Ok(match hub.config.apps.get(&hello.app) {
        Some(secret) => auth::verify_mac(secret, &nonce, &hello.app, &hello.instance_id, &mac),
        None => false,
    })
}

async fn control_session(
    hub: Arc<Hub>,
    mut reader: Reader,
    mut writer: Writer,
    hello: Hello,
    remote: SocketAddr,
) -> Result<(), ProtocolError> {
    if let Err(msg) = validate_hello(&hello) {
        let code = if hello.protocol_version != PROTOCOL_VERSION {
            ErrorCode::UnsupportedVersion
        } else {
            ErrorCode::BadRequest
        };
        return send_error(&mut writer, code, &msg).await;
    }
    if !authenticate(&hub, &mut reader, &mut writer, &hello).await? {
        let detail = serde_json::json!({"pid": hello.pid, "hostname": hello.hostname});
        hub.audit.record_failure("agent", "agent.auth_failed", remote.ip(), &hello.app, detail).await;
        return send_error(&mut writer, ErrorCode::AuthFailed, "authentication failed: unknown app or wrong secret")
            .await;
    }
    let process_id = hello.instance_id.clone();
    let (tx, rx) = mpsc::channel::<Message>(256);
    let generation = hub.processes.register_link(&process_id, tx);
    hub.processes.connected(process_record(&hello, remote)).await;
    reconcile_in_flight(&hub, &hello).await;
    tracing::info!(process = %process_id, app = %hello.app, pid = hello.pid, %remote, "agent connected");
    writer.send(&Message::Welcome { process_id: process_id.clone(), heartbeat_ms: hub.config.heartbeat_ms }).await?;

    let writer_task = AbortOnDrop(tokio::spawn(write_loop(writer, rx, hub.config.heartbeat_ms)));
    let result = read_loop(&hub, &mut reader, &process_id).await;
    drop(writer_task);
    if hub.processes.unregister_link(&process_id, generation) {
        let reason = match &result {
            Ok(()) => "agent said goodbye".to_string(),
            Err(e) => e.to_string(),
        };
        hub.process_disconnected(&process_id, &reason).await;
        tracing::info!(process = %process_id, reason, "agent disconnected");
    }
    result
}

/// Ends a spawned task when its owner goes away (also when the owner itself is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn process_record(hello: &Hello, remote: SocketAddr) -> ProcessRecord {
    let now = now_rfc3339();
    ProcessRecord {
        id: hello.instance_id.clone(),
        app: hello.app.clone(),
        hostname: hello.hostname.clone(),
        pid: hello.pid,
        labels: hello.labels.clone(),
        node_version: hello.node_version.clone(),
        agent_version: hello.agent_version.clone(),
        capabilities: hello.capabilities.clone(),
        connected: true,
        state: "running".into(),
        blocked_ms: 0,
        connected_at: now.clone(),
        last_seen: now,
        remote_addr: remote.to_string(),
    }
}

/// After a reconnect (e.g. the hub restarted), commands the agent no longer works on are lost.
async fn reconcile_in_flight(hub: &Hub, hello: &Hello) {
    let lost = "the process reconnected without this command in flight (lost across a restart)";
    hub.artifacts.fail_unfinished(&hello.instance_id, lost, |a| !hello.active_commands.contains(&a.id)).await;
}

async fn write_loop(mut writer: Writer, mut rx: mpsc::Receiver<Message>, heartbeat_ms: u64) {
    let mut beat = tokio::time::interval(Duration::from_millis(heartbeat_ms));
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = beat.tick() => Message::Heartbeat { ts_ms: perf_protocol::unix_ms() },
        };
        if writer.send(&msg).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(hub: &Hub, reader: &mut Reader, process_id: &str) -> Result<(), ProtocolError> {
    let idle = Duration::from_millis(hub.config.heartbeat_ms * 3);
    loop {
        let msg = tokio::time::timeout(idle, reader.read_message()).await.map_err(|_| {
            ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no heartbeat from agent"))
        })??;
        match msg {
            Message::Heartbeat { .. } => hub.processes.seen(process_id),
            Message::Ack(ack) => on_ack(hub, process_id, ack).await,
            Message::Progress(p) => {
                let progress = serde_json::json!({"stage": p.stage, "done": p.done, "total": p.total});
                let t = Transition::Progress { progress };
                hub.artifacts.transition_or_log(&p.command_id, Some(process_id), t).await;
            }
            Message::CommandResult(r) => on_result(hub, process_id, r).await,
            Message::Metrics { sample } => on_metrics(hub, process_id, &sample).await,
            Message::Goodbye { reason } => {
                tracing::info!(process = %process_id, reason, "agent goodbye");
                return Ok(());
            }
            other => tracing::warn!(process = %process_id, msg = other.name(), "unexpected message from agent"),
        }
    }
}

/// A sample goes into the metrics; its stall state into the process record.
async fn on_metrics(hub: &Hub, process_id: &str, sample: &perf_protocol::MetricsSample) {
    hub.metrics.ingest(process_id, sample);
    let state = match sample.is_blocked() {
        true => ProcessState::Blocked { for_ms: sample.blocked_ms.unwrap_or(0) },
        false => ProcessState::Running,
    };
    hub.processes.observed(process_id, state).await;
}

async fn on_ack(hub: &Hub, process_id: &str, ack: Ack) {
    let estimate = ack.estimate.as_ref().and_then(|e| serde_json::to_value(e).ok());
    let t = if ack.accepted {
        Transition::Accepted { estimate }
    } else {
        Transition::Refused { error: ack.error.clone().unwrap_or_else(|| "refused by the agent".into()), estimate }
    };
    // Only the process that owns the command may answer the operator waiting for it.
    if hub.artifacts.transition_or_log(&ack.command_id, Some(process_id), t).await.is_some() {
        hub.processes.deliver_ack(ack);
    }
}

async fn on_result(hub: &Hub, process_id: &str, r: CommandResult) {
    let t = match r.outcome {
        Outcome::Captured { size, sha256, notes } => Transition::Captured { size, sha256, notes },
        Outcome::Failed { error } => Transition::Failed { error },
    };
    if let Some(a) = hub.artifacts.transition_or_log(&r.command_id, Some(process_id), t).await {
        let detail = serde_json::json!({"kind": a.kind});
        hub.audit.record("agent", "command.result", &a.id, detail, a.status.as_str()).await;
    }
}

async fn upload_session(
    hub: Arc<Hub>,
    mut reader: Reader,
    mut writer: Writer,
    up: UploadHello,
    remote: SocketAddr,
) -> Result<(), ProtocolError> {
    let artifact = match check_upload(&hub, &up).await {
        Ok(a) => a,
        Err(msg) => {
            tracing::warn!(%remote, command = %up.command_id, msg, "upload refused");
            return send_error(&mut writer, ErrorCode::AuthFailed, &msg).await;
        }
    };
    if artifact.status == ArtifactStatus::Ready {
        // Already stored (the agent missed our ack): confirm so it can drop its spool.
        let same = artifact.sha256.as_deref() == Some(up.sha256.as_str());
        let error = (!same).then(|| "artifact already stored with another checksum".to_string());
        return writer.send(&Message::UploadAck { ok: same, error }).await;
    }
    let id = artifact.id.clone();
    let Some(_slot) = hub.artifacts.uploads.claim(&id) else {
        tracing::warn!(%remote, artifact = %id, "second concurrent upload refused");
        return send_error(&mut writer, ErrorCode::Busy, "another upload of this artifact is in progress").await;
    };
    let blobs = hub.artifacts.blobs();
    let mut offset = blobs.part_len(&id).await;
    if offset > up.size {
        blobs.discard_part(&id).await;
        offset = 0;
    }
    let started = Transition::UploadStarted { size: up.size, sha256: up.sha256.clone(), offset };
    if let Err(e) = hub.artifacts.transition(&id, None, started).await {
        tracing::warn!(%remote, artifact = %id, reason = %e, "upload refused");
        return send_error(&mut writer, ErrorCode::AuthFailed, &e.to_string()).await;
    }
    writer.send(&Message::UploadOffset { offset }).await?;
    match receive_data(&hub, &mut reader, &id, offset, up.size).await {
        Ok(()) => finish_upload(&hub, &mut writer, &artifact.file_name, &up).await,
        // The link broke: keep the part, the agent resumes from its length.
        Err(UploadFailure::Link(e)) => Err(e),
        Err(UploadFailure::Storage(e)) => {
            let reason = storage_failure(&e);
            blobs.discard_part(&id).await;
            hub.artifacts.fail(&id, &reason).await;
            send_error(&mut writer, ErrorCode::Internal, &reason).await
        }
    }
}

/// Why an upload stopped: the agent's link (worth resuming) or the hub's own storage (not).
enum UploadFailure {
    Link(ProtocolError),
    Storage(std::io::Error),
}

impl From<ProtocolError> for UploadFailure {
    fn from(e: ProtocolError) -> Self {
        UploadFailure::Link(e)
    }
}

fn storage_failure(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::StorageFull {
        "the hub's storage has no space left for this artifact".into()
    } else {
        format!("the hub could not write the artifact: {e}")
    }
}

async fn check_upload(hub: &Hub, up: &UploadHello) -> Result<crate::store::ArtifactRecord, String> {
    if !ids::is_valid_id(&up.command_id) {
        return Err("bad artifact id".into());
    }
    let found = hub.artifacts.get(&up.command_id).await.map_err(|e| format!("store error: {e}"))?;
    let a = found.ok_or_else(|| "unknown artifact".to_string())?;
    if a.upload_token.is_empty() || !auth::tokens_equal(&a.upload_token, &up.token) {
        return Err("bad upload token".into());
    }
    if up.size > hub.config.max_artifact_bytes {
        return Err(format!(
            "artifact of {} bytes exceeds the hub's limit of {}",
            up.size, hub.config.max_artifact_bytes
        ));
    }
    if up.sha256.len() != 64 || !up.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("bad sha256".into());
    }
    Ok(a)
}

/// Appends data frames to the partial file until `UploadDone`.
async fn receive_data(
    hub: &Hub,
    reader: &mut Reader,
    id: &str,
    mut offset: u64,
    size: u64,
) -> Result<(), UploadFailure> {
    let path = hub.artifacts.blobs().part_path(id);
    let mut file =
        tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await.map_err(UploadFailure::Storage)?;
    let mut next_report = offset + UPLOAD_PROGRESS_STEP;
    loop {
        let frame = tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, reader.read_frame())
            .await
            .map_err(|_| ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "upload stalled")))?
            .map_err(UploadFailure::Link)?;
        match frame {
            Frame::Data(d) => {
                if offset + d.len() as u64 > size {
                    return Err(ProtocolError::Unexpected {
                        expected: "no more data than announced",
                        got: "excess data".into(),
                    }
                    .into());
                }
                file.write_all(&d).await.map_err(UploadFailure::Storage)?;
                offset += d.len() as u64;
                if offset >= next_report {
                    next_report = offset + UPLOAD_PROGRESS_STEP;
                    hub.artifacts.transition_or_log(id, None, Transition::UploadProgress { offset }).await;
                }
            }
            Frame::Message(Message::UploadDone) => break,
            Frame::Message(m) => {
                return Err(ProtocolError::Unexpected { expected: "data or upload_done", got: m.name().into() }.into())
            }
        }
    }
    file.flush().await.map_err(UploadFailure::Storage)?;
    file.sync_all().await.map_err(UploadFailure::Storage)?;
    Ok(())
}

async fn finish_upload(hub: &Hub, writer: &mut Writer, file_name: &str, up: &UploadHello) -> Result<(), ProtocolError> {
    let id = &up.command_id;
    let blobs = hub.artifacts.blobs();
    match blobs.commit(id, file_name, up.size, &up.sha256).await {
        Ok(()) => {
            if let Err(e) = hub.artifacts.transition(id, None, Transition::Stored { size: up.size }).await {
                // The file is in place but the record can't say so: fail it with the reason
                // rather than leave it "uploading" forever.
                tracing::error!(artifact = %id, error = %e, "artifact stored but its record could not be updated");
                hub.artifacts.fail(id, &format!("the hub could not record the stored artifact: {e}")).await;
                return writer
                    .send(&Message::UploadAck {
                        ok: false,
                        error: Some("the hub could not record the artifact".into()),
                    })
                    .await;
            }
            let detail = serde_json::json!({"size": up.size, "sha256": up.sha256});
            hub.audit.record("agent", "artifact.stored", id, detail, "ok").await;
            writer.send(&Message::UploadAck { ok: true, error: None }).await
        }
        Err(e @ crate::blobs::BlobError::Io { .. }) => {
            // The hub's own storage failed: retrying the same bytes won't help.
            blobs.discard_part(id).await;
            let reason = format!("the hub could not store the artifact: {e}");
            hub.artifacts.fail(id, &reason).await;
            send_error(writer, ErrorCode::Internal, &reason).await
        }
        Err(e) => {
            // A corrupt part can't be resumed; the agent retries from zero.
            blobs.discard_part(id).await;
            tracing::warn!(artifact = %id, error = %e, "upload rejected");
            writer.send(&Message::UploadAck { ok: false, error: Some(e.to_string()) }).await
        }
    }
}
