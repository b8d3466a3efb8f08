//! The agent gateway: accepts agent connections, authenticates control links, routes commands
//! and acks, and takes in artifact uploads on their own connections.
//!
//! Before a connection has authenticated it holds a pre-auth [`Permit`] and may send frames of
//! at most [`PRE_AUTH_MAX_FRAME_LEN`] ([`crate::admission`]); a control link then binds its
//! process id to its app ([`admit_identity`]), an upload stream proves its artifact's token.
//! Metrics samples are bounded in size and rate per link ([`crate::sample_limits`]).

use crate::admission::{Permit, Refusal};
use crate::artifacts::Transition;
use crate::hub::Hub;
use crate::ids;
use crate::processes::{ClaimError, ProcessState};
use crate::sample_limits::{DropReason, SampleRate};
use crate::store::{now_rfc3339, ArtifactStatus, ProcessRecord};
use perf_protocol::{
    auth, Ack, CommandResult, ErrorCode, Frame, FrameReader, FrameWriter, Hello, Message, Outcome, ProtocolError,
    UploadHello, MAX_FRAME_LEN, PRE_AUTH_MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Socket reads of a connection that has not authenticated go through a buffer this big (a
/// hello is a few hundred bytes): with the pre-auth frame limit, what one such connection can
/// make the hub hold.
const PRE_AUTH_READ_BUFFER: usize = 8 * 1024;
/// Most bytes of label keys and values one process may have.
const MAX_LABEL_BYTES: usize = 4096;
/// Record upload progress in the store every this many bytes.
const UPLOAD_PROGRESS_STEP: u64 = 8 << 20;

/// Stream halves of a plaintext or a TLS connection alike.
type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
type Reader = FrameReader<BoxRead>;
type Writer = FrameWriter<BoxWrite>;

/// Accepts agent connections until aborted; aborting it also ends every open connection (the
/// tasks live in a JoinSet owned by this future). With `tls`, every connection speaks TLS; its
/// handshake runs in the connection's own task, so a stalled one never holds up the accepts.
pub async fn serve(hub: Arc<Hub>, listener: TcpListener, tls: Option<crate::tls::TlsAcceptor>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connection tasks so the set doesn't grow.
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, remote)) => {
                let permit = match hub.admission.admit(remote.ip()) {
                    Ok(p) => p,
                    Err(refusal) => {
                        refuse_connection(stream, refusal);
                        continue;
                    }
                };
                let (hub, tls) = (hub.clone(), tls.clone());
                connections.spawn(async move {
                    if let Err(e) = handle_connection(hub, stream, remote, permit, tls).await {
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

/// A connection over the limits is told why (one small frame, if the socket takes it at once)
/// and closed: it never gets a task or a buffer.
fn refuse_connection(stream: TcpStream, refusal: Refusal) {
    let mut frame = Vec::new();
    let msg = Message::Error { code: ErrorCode::Busy, message: refusal.to_string() };
    if perf_protocol::encode_message(&msg, &mut frame).is_ok() {
        let _ = stream.try_write(&frame);
    }
}

/// The connection proved who it is: it leaves the pre-auth limits and may send full frames.
fn authenticated(permit: &mut Permit, reader: &mut Reader) {
    permit.authenticated();
    reader.set_max_frame_len(MAX_FRAME_LEN);
    reader.set_read_buffer(Reader::DEFAULT_READ_BUFFER);
}

/// The connection's read and write halves, after the TLS handshake when TLS is on (within the
/// handshake deadline, still holding the pre-auth admission permit).
async fn open_stream(
    hub: &Hub,
    stream: TcpStream,
    tls: Option<crate::tls::TlsAcceptor>,
) -> Result<(BoxRead, BoxWrite), ProtocolError> {
    let _ = stream.set_nodelay(true);
    Ok(match tls {
        None => {
            let (r, w) = stream.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(acceptor) => {
            let timeout = Duration::from_millis(hub.config.tls_handshake_timeout_ms);
            let (r, w) = tokio::io::split(crate::tls::accept(&acceptor, stream, timeout).await?);
            (Box::new(r), Box::new(w))
        }
    })
}

async fn handle_connection(
    hub: Arc<Hub>,
    stream: TcpStream,
    remote: SocketAddr,
    permit: Permit,
    tls: Option<crate::tls::TlsAcceptor>,
) -> Result<(), ProtocolError> {
    let (r, w) = open_stream(&hub, stream, tls).await?;
    let mut reader = FrameReader::with_read_buffer(r, PRE_AUTH_READ_BUFFER);
    reader.set_max_frame_len(PRE_AUTH_MAX_FRAME_LEN);
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
        Message::Hello(hello) => control_session(hub, reader, writer, hello, remote, permit).await,
        Message::UploadHello(up) => upload_session(hub, reader, writer, up, remote, permit).await,
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
    // Every series of the process carries its labels in `/metrics`: bound them as a whole too.
    if h.labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_LABEL_BYTES {
        return Err(format!("labels take more than {MAX_LABEL_BYTES} bytes"));
    }
    if h.active_commands.len() > 64 || !h.active_commands.iter().all(|c| ids::is_valid_id(c)) {
        return Err("active_commands must be at most 64 artifact ids".into());
    }
    let versions = [&h.node_version, &h.agent_version];
    if h.capabilities.iter().any(|c| too_long(c, 64)) || versions.iter().any(|v| too_long(v, 64)) {
        return Err("capability or version names out of bounds".into());
    }
    Ok(())
}

/// Longest `hub_nonce` the hub answers (the agent sends 32 hex characters).
const MAX_HUB_NONCE_LEN: usize = 128;

/// An agent that proved it knows one of its app's secrets (two during a rotation).
struct Proven {
    /// The answer to the agent's `hub_nonce`, made with the secret that matched (`None` for an
    /// older agent that sent no nonce).
    hub_proof: Option<String>,
}

/// Challenge–response: `None` when the agent did not prove it knows its app's secret.
async fn authenticate(
    hub: &Hub,
    reader: &mut Reader,
    writer: &mut Writer,
    hello: &Hello,
) -> Result<Option<Proven>, ProtocolError> {
    if hello.hub_nonce.as_ref().is_some_and(|n| n.is_empty() || n.len() > MAX_HUB_NONCE_LEN) {
        return Ok(None);
    }
    let nonce = ids::new_secret().map_err(|e| ProtocolError::Io(std::io::Error::other(e.to_string())))?;
    writer.send(&Message::Challenge { nonce: nonce.clone() }).await?;
    let answer =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_message()).await.map_err(|_| ProtocolError::Closed)??;
    let Message::Auth { mac } = answer else {
        return Err(ProtocolError::Unexpected { expected: "auth", got: answer.name().into() });
    };
    // An unknown app and a wrong secret look the same from outside.
    let Some(secrets) = hub.config.apps.get(&hello.app) else { return Ok(None) };
    let Some(secret) = secrets.iter().find(|s| auth::verify_mac(s, &nonce, &hello.app, &hello.instance_id, &mac))
    else {
        return Ok(None);
    };
    let hub_proof =
        hello.hub_nonce.as_deref().map(|n| auth::hub_proof(secret, n, &nonce, &hello.app, &hello.instance_id));
    Ok(Some(Proven { hub_proof }))
}

async fn control_session(
    hub: Arc<Hub>,
    mut reader: Reader,
    mut writer: Writer,
    hello: Hello,
    remote: SocketAddr,
    mut permit: Permit,
) -> Result<(), ProtocolError> {
    if let Err(msg) = validate_hello(&hello) {
        let code = if hello.protocol_version != PROTOCOL_VERSION {
            ErrorCode::UnsupportedVersion
        } else {
            ErrorCode::BadRequest
        };
        return send_error(&mut writer, code, &msg).await;
    }
    let Some(Proven { hub_proof }) = authenticate(&hub, &mut reader, &mut writer, &hello).await? else {
        let detail = serde_json::json!({"pid": hello.pid, "hostname": hello.hostname});
        hub.audit.record_failure("agent", "agent.auth_failed", remote.ip(), &hello.app, detail).await;
        return send_error(&mut writer, ErrorCode::AuthFailed, "authentication failed: unknown app or wrong secret")
            .await;
    };
    if let Err((code, msg)) = admit_identity(&hub, &hello, remote).await {
        return send_error(&mut writer, code, &msg).await;
    }
    authenticated(&mut permit, &mut reader);
    let process_id = hello.instance_id.clone();
    let (tx, rx) = mpsc::channel::<Message>(256);
    let generation = hub.processes.register_link(&process_id, tx);
    let record = process_record(&hello, remote);
    hub.processes.connected(record.clone()).await;
    reconcile_in_flight(&hub, &hello).await;
    tracing::info!(process = %process_id, app = %hello.app, pid = hello.pid, %remote, "agent connected");
    let heartbeat_ms = hub.config.heartbeat_ms;
    writer.send(&Message::Welcome { process_id: process_id.clone(), heartbeat_ms, hub_proof }).await?;
    if let Some(rules) = crate::rules::fire::rules_message(&hub, &record) {
        writer.send(&rules).await?;
    }

    let writer_task = AbortOnDrop(tokio::spawn(write_loop(writer, rx, hub.config.heartbeat_ms)));
    let rate = SampleRate::new(hub.config.samples_per_sec, hub.config.sample_burst);
    let result = read_loop(&hub, &mut reader, &record, rate).await;
    drop(writer_task);
    hub.rules.forget(&process_id);
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

/// Binds the hello's process id to its app: an id another app registered is refused (and
/// audited, at most once a minute per source with a count), as is one more process than the
/// app may have. Comes before the link is registered, so no link ever displaces another app's.
async fn admit_identity(hub: &Hub, hello: &Hello, remote: SocketAddr) -> Result<(), (ErrorCode, String)> {
    let limit = hub.config.max_processes_per_app;
    match hub.processes.claim(&hello.instance_id, &hello.app, limit) {
        Ok(()) => Ok(()),
        Err(ClaimError::OwnedByOtherApp { owner, .. }) => {
            if let Some(earlier) = hub.agent_refusals.hit(&format!("takeover {}", remote.ip())) {
                let detail = serde_json::json!({
                    "app": hello.app, "owner_app": owner, "hostname": hello.hostname, "pid": hello.pid,
                    "refused_since_last_entry": earlier,
                });
                let actor = format!("agent@{remote}");
                hub.audit.record(&actor, "agent.takeover_refused", &hello.instance_id, detail, "denied").await;
            }
            tracing::warn!(process = %hello.instance_id, app = %hello.app, %remote, "hello for another app's process refused");
            Err((ErrorCode::AuthFailed, "this process id is registered by another app".into()))
        }
        Err(e @ ClaimError::TooManyProcesses { .. }) => {
            if let Some(earlier) = hub.agent_refusals.hit(&format!("process-limit {}", hello.app)) {
                tracing::warn!(app = %hello.app, %remote, refused_since_last_report = earlier, "{e}");
            }
            Err((ErrorCode::Busy, e.to_string()))
        }
    }
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

async fn read_loop(
    hub: &Arc<Hub>,
    reader: &mut Reader,
    process: &ProcessRecord,
    mut rate: SampleRate,
) -> Result<(), ProtocolError> {
    let process_id = process.id.as_str();
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
            Message::Metrics { sample } => match sample_refusal(hub, reader.last_frame_len(), &mut rate) {
                None => on_metrics(hub, process, *sample).await,
                Some(reason) => {
                    hub.metrics.refused(reason);
                    if let Some(earlier) = hub.agent_refusals.hit(&format!("sample {process_id}")) {
                        let reason = reason.as_str();
                        tracing::warn!(process = %process_id, reason, dropped_since_last_report = earlier, "sample dropped");
                    }
                }
            },
            Message::AutoCapture(a) => on_auto_capture(hub, process, a).await,
            Message::Goodbye { reason } => {
                tracing::info!(process = %process_id, reason, "agent goodbye");
                return Ok(());
            }
            other => tracing::warn!(process = %process_id, msg = other.name(), "unexpected message from agent"),
        }
    }
}

/// Why a sample of `frame_len` bytes is dropped, if it is: over the link's rate (every sample
/// takes a token, an oversized one too), or too large.
fn sample_refusal(hub: &Hub, frame_len: usize, rate: &mut SampleRate) -> Option<DropReason> {
    if !rate.allow() {
        Some(DropReason::Rate)
    } else if frame_len > hub.config.max_sample_bytes {
        Some(DropReason::TooLarge)
    } else {
        None
    }
}

/// A sample goes into the metrics, past the capture rules; its stall state into the process record.
async fn on_metrics(hub: &Arc<Hub>, process: &ProcessRecord, sample: perf_protocol::MetricsSample) {
    let process_id = process.id.as_str();
    crate::rules::fire::on_sample(hub, process, &sample);
    let state = match sample.is_blocked() {
        true => ProcessState::Blocked { for_ms: sample.blocked_ms.unwrap_or(0) },
        false => ProcessState::Running,
    };
    hub.metrics.ingest(process_id, sample);
    hub.processes.observed(process_id, state).await;
}

/// The agent's stall watcher started a rule's capture: the hub records it, or tells the agent
/// to drop it. Handled in line, so the artifact exists before the ack that follows it.
async fn on_auto_capture(hub: &Hub, process: &ProcessRecord, a: perf_protocol::AutoCapture) {
    let id = a.command_id.clone();
    if let Err(reason) = crate::rules::fire::on_agent_capture(hub, process, a).await {
        // At most one line a minute per process: a broken agent must not flood the log.
        if let Some(earlier) = hub.agent_refusals.hit(&format!("auto-capture {}", process.id)) {
            let command = loggable_id(&id);
            tracing::info!(process = %process.id, %command, reason, refused_since_last_report = earlier, "agent-initiated capture not taken");
        }
        if perf_protocol::is_valid_id(&id) {
            let _ = hub.processes.send(&process.id, crate::rules::fire::cancel(&id, reason));
        }
    }
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
    mut permit: Permit,
) -> Result<(), ProtocolError> {
    let artifact = match check_upload(&hub, &up).await {
        Ok(a) => a,
        Err(refusal) => {
            let msg = refusal.to_string();
            let command = loggable_id(&up.command_id);
            tracing::warn!(%remote, %command, msg, "upload refused");
            if refusal.is_forgery() {
                audit_forged_upload(&hub, remote, &command).await;
            }
            return send_error(&mut writer, ErrorCode::AuthFailed, &msg).await;
        }
    };
    authenticated(&mut permit, &mut reader);
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
    let storage = hub.artifacts.storage();
    let have = match storage.local() {
        Some(l) => l.part_len(&id).await.min(up.size),
        None => 0,
    };
    let reserve = hub.config.min_free_bytes;
    if let Some(reason) = hub.artifacts.capacity_refusal(Some(up.size - have), reserve, None).await {
        return fail_upload(&hub, &mut writer, &id, &reason).await;
    }
    let mut upload = match storage.begin_upload(&id, &artifact.file_name, up.size).await {
        Ok(u) => u,
        Err(e) => return fail_upload(&hub, &mut writer, &id, &e.reason()).await,
    };
    let offset = upload.offset();
    let started = Transition::UploadStarted { size: up.size, sha256: up.sha256.clone(), offset };
    if let Err(e) = hub.artifacts.transition(&id, None, started).await {
        tracing::warn!(%remote, artifact = %id, reason = %e, "upload refused");
        upload.suspend().await;
        return send_error(&mut writer, ErrorCode::AuthFailed, &e.to_string()).await;
    }
    writer.send(&Message::UploadOffset { offset }).await?;
    match receive_data(&hub, &mut reader, &id, &mut upload, up.size).await {
        Ok(()) => finish_upload(&hub, &mut writer, upload, &artifact, &up).await,
        // The link broke: a `.part` stays for the agent to resume; a multipart is aborted.
        Err(UploadFailure::Link(e)) => {
            upload.suspend().await;
            Err(e)
        }
        Err(UploadFailure::Storage(e)) => {
            upload.suspend().await;
            fail_upload(&hub, &mut writer, &id, &e.reason()).await
        }
    }
}

/// The hub's storage failed: the artifact fails with the reason (retrying the same bytes won't
/// help), its partial data goes, and the agent is told (it drops its spool).
async fn fail_upload(hub: &Hub, writer: &mut Writer, id: &str, reason: &str) -> Result<(), ProtocolError> {
    hub.artifacts.storage().discard_upload(id).await;
    hub.artifacts.fail(id, reason).await;
    send_error(writer, ErrorCode::Internal, reason).await
}

/// Why an upload stopped: the agent's link (worth resuming) or the hub's own storage (not).
enum UploadFailure {
    Link(ProtocolError),
    Storage(crate::storage::StorageError),
}

impl From<ProtocolError> for UploadFailure {
    fn from(e: ProtocolError) -> Self {
        UploadFailure::Link(e)
    }
}

/// Why an upload stream was refused.
#[derive(Debug, thiserror::Error)]
enum UploadRefusal {
    #[error("bad artifact id")]
    BadId,
    #[error("unknown artifact")]
    Unknown,
    #[error("bad upload token")]
    BadToken,
    #[error("artifact of {size} bytes exceeds the hub's limit of {limit}")]
    TooBig { size: u64, limit: u64 },
    #[error("bad sha256")]
    BadChecksum,
    #[error("store error: {0}")]
    Store(String),
}

impl UploadRefusal {
    /// A stream without its artifact's token: someone guessing or forging, not a broken agent.
    fn is_forgery(&self) -> bool {
        matches!(self, UploadRefusal::BadId | UploadRefusal::Unknown | UploadRefusal::BadToken)
    }
}

/// An id from an unauthenticated peer, safe for a log line: a valid id as is, anything else
/// escaped and cut (it could carry newlines or terminal escapes).
fn loggable_id(id: &str) -> String {
    if ids::is_valid_id(id) {
        return id.to_string();
    }
    let escaped: String = id.chars().take(64).flat_map(char::escape_default).collect();
    format!("invalid:{escaped}")
}

/// Forged-token uploads are on the audit trail, at most one entry per source per minute (with
/// the count since the last), so a flood can't fill it.
async fn audit_forged_upload(hub: &Hub, remote: SocketAddr, command: &str) {
    if let Some(earlier) = hub.agent_refusals.hit(&format!("upload {}", remote.ip())) {
        let detail = serde_json::json!({"refused_since_last_entry": earlier});
        hub.audit.record(&format!("agent@{remote}"), "upload.token_refused", command, detail, "denied").await;
    }
}

async fn check_upload(hub: &Hub, up: &UploadHello) -> Result<crate::store::ArtifactRecord, UploadRefusal> {
    if !ids::is_valid_id(&up.command_id) {
        return Err(UploadRefusal::BadId);
    }
    let found = hub.artifacts.get(&up.command_id).await.map_err(|e| UploadRefusal::Store(e.to_string()))?;
    let a = found.ok_or(UploadRefusal::Unknown)?;
    if !crate::artifacts::upload_token_matches(&a.upload_token, &up.token) {
        return Err(UploadRefusal::BadToken);
    }
    if up.size > hub.config.max_artifact_bytes {
        return Err(UploadRefusal::TooBig { size: up.size, limit: hub.config.max_artifact_bytes });
    }
    if up.sha256.len() != 64 || !up.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UploadRefusal::BadChecksum);
    }
    Ok(a)
}

/// Streams data frames into the store until `UploadDone`.
async fn receive_data(
    hub: &Hub,
    reader: &mut Reader,
    id: &str,
    upload: &mut crate::storage::Upload,
    size: u64,
) -> Result<(), UploadFailure> {
    let mut offset = upload.offset();
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
                upload.write(&d).await.map_err(UploadFailure::Storage)?;
                offset += d.len() as u64;
                if offset >= next_report {
                    next_report = offset + UPLOAD_PROGRESS_STEP;
                    hub.artifacts.transition_or_log(id, None, Transition::UploadProgress { offset }).await;
                }
            }
            Frame::Message(Message::UploadDone) => return Ok(()),
            Frame::Message(m) => {
                return Err(ProtocolError::Unexpected { expected: "data or upload_done", got: m.name().into() }.into())
            }
        }
    }
}

async fn finish_upload(
    hub: &Hub,
    writer: &mut Writer,
    upload: crate::storage::Upload,
    artifact: &crate::store::ArtifactRecord,
    up: &UploadHello,
) -> Result<(), ProtocolError> {
    let id = &up.command_id;
    let storage = hub.artifacts.storage();
    match storage.commit_upload(upload, &artifact.file_name, up.size, &up.sha256).await {
        Ok(()) => match hub.artifacts.transition(id, None, Transition::Stored { size: up.size }).await {
            Ok(stored) => {
                hub.artifacts.write_sidecar(&stored).await;
                let detail = serde_json::json!({"size": up.size, "sha256": up.sha256});
                hub.audit.record("agent", "artifact.stored", id, detail, "ok").await;
                writer.send(&Message::UploadAck { ok: true, error: None }).await
            }
            Err(e) => {
                // The object is in place but the record can't say so: fail it with the reason
                // rather than leave it "uploading" forever.
                tracing::error!(artifact = %id, error = %e, "artifact stored but its record could not be updated");
                hub.artifacts.fail(id, &format!("the hub could not record the stored artifact: {e}")).await;
                let error = Some("the hub could not record the artifact".into());
                writer.send(&Message::UploadAck { ok: false, error }).await
            }
        },
        Err(e) if e.is_integrity() => {
            // A corrupt upload (already removed by the store) can't be resumed; the agent
            // retries from zero.
            tracing::warn!(artifact = %id, error = %e, "upload rejected");
            writer.send(&Message::UploadAck { ok: false, error: Some(e.to_string()) }).await
        }
        Err(e) => fail_upload(hub, writer, id, &e.reason()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_hello_the_hub_accepts_fits_the_pre_auth_frame_limit() {
        let labels: serde_json::Map<String, serde_json::Value> =
            (0..64).map(|i| (format!("k{i:02}"), serde_json::json!("\"".repeat(MAX_LABEL_BYTES / 64 - 3)))).collect();
        let hello: Hello = serde_json::from_value(serde_json::json!({
            "protocol_version": PROTOCOL_VERSION, "app": "a".repeat(128), "instance_id": "ab".repeat(32),
            "hostname": "\"".repeat(255), "pid": u32::MAX, "labels": labels,
            "node_version": "\"".repeat(64), "agent_version": "\"".repeat(64),
            "capabilities": vec!["\"".repeat(64); 64], "active_commands": vec!["cd".repeat(32); 64],
        }))
        .expect("hello");
        assert_eq!(validate_hello(&hello), Ok(()));
        let mut frame = Vec::new();
        perf_protocol::encode_message(&Message::Hello(hello), &mut frame).expect("encode");
        assert!(frame.len() - 4 <= PRE_AUTH_MAX_FRAME_LEN, "{} bytes", frame.len());
    }

    #[test]
    fn an_unauthenticated_id_is_logged_escaped_and_cut() {
        assert_eq!(loggable_id("c0ffee01"), "c0ffee01");
        let forged = "x\n2026-12-01T00:00:00Z INFO perf_hub: operator logged in\u{1b}[2J";
        let logged = loggable_id(forged);
        assert!(!logged.contains('\n') && !logged.contains('\u{1b}'), "{logged}");
        assert!(logged.starts_with("invalid:x\\n2026"), "{logged}");
        assert!(loggable_id(&"\n".repeat(10_000)).len() <= "invalid:".len() + 64 * 2);
    }
}
