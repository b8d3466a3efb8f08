//! The control link: connect, authenticate, then exchange heartbeats, commands and reports with
//! the hub until the connection drops — and start over with backoff and jitter, forever, until
//! the agent stops.

use crate::backoff::Backoff;
use crate::transport::{BoxRead, BoxWrite, TransportError};
use crate::Inner;
use perf_protocol::{auth, FrameReader, FrameWriter, Hello, Message, ProtocolError, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

type Reader = FrameReader<BoxRead>;
type Writer = FrameWriter<BoxWrite>;

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("cannot start a handshake: {0}")]
    Random(String),
    #[error("hub {hub} not trusted: {why}; no command is obeyed")]
    HubUnverified { hub: String, why: String },
    #[error("hub refused: {0}")]
    Refused(String),
    #[error("no heartbeat from the hub for {0:?}")]
    HubSilent(Duration),
}

pub(crate) async fn run(inner: Arc<Inner>, mut outbox: mpsc::Receiver<Message>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut backoff = Backoff::new(inner.config.reconnect_min, inner.config.reconnect_max);
    while !*shutdown.borrow() {
        let result = match connect(&inner).await {
            Ok((reader, writer, process_id, heartbeat)) => {
                backoff.reset();
                inner.set_status(|s| {
                    s.connected = true;
                    s.process_id = Some(process_id);
                    s.last_error = None;
                    s.connects += 1;
                });
                let r = session(&inner, reader, writer, &mut outbox, &mut shutdown, heartbeat).await;
                inner.set_status(|s| s.connected = false);
                r
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "perf-agent: link down");
            inner.set_status(|s| s.last_error = Some(e.to_string()));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn connect(inner: &Inner) -> Result<(Reader, Writer, String, Duration), LinkError> {
    let c = &inner.config;
    let (r, w) = inner.transport.connect().await?;
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let instance_id = instance_id();
    // Our challenge to the hub: fresh per connection, answered in its welcome.
    let hub_nonce = random_hex().map_err(LinkError::Random)?;
    let mut hello = hello(inner, instance_id);
    hello.hub_nonce = Some(hub_nonce.clone());
    writer.send(&Message::Hello(hello)).await?;
    let nonce = match handshake_reply(&mut reader).await? {
        Message::Challenge { nonce } => nonce,
        other => return Err(refusal(other)),
    };
    let mac = auth::auth_mac(&c.secret, &nonce, &c.app, instance_id);
    writer.send(&Message::Auth { mac }).await?;
    match handshake_reply(&mut reader).await? {
        Message::Welcome { process_id, heartbeat_ms, hub_proof } => {
            check_hub_proof(c, &hub_nonce, &nonce, instance_id, hub_proof.as_deref())?;
            let hb = Duration::from_millis(heartbeat_ms.clamp(100, 600_000));
            Ok((reader, writer, process_id, hb))
        }
        other => Err(refusal(other)),
    }
}

/// The hub must prove it knows our app's secret before we obey it (a fake hub could otherwise
/// order `force: true` heap snapshots and receive them).
fn check_hub_proof(
    c: &crate::AgentConfig,
    hub_nonce: &str,
    nonce: &str,
    instance_id: &str,
    proof: Option<&str>,
) -> Result<(), LinkError> {
    let why = match proof {
        None => "its welcome has no hub_proof (a hub older than this agent, or not the real hub)",
        Some(p) if auth::verify_hub_proof(&c.secret, hub_nonce, nonce, &c.app, instance_id, p) => return Ok(()),
        Some(_) => "its hub_proof is wrong: it doesn't know the secret of this app",
    };
    Err(LinkError::HubUnverified { hub: c.hub.clone(), why: why.to_string() })
}

fn random_hex() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

async fn handshake_reply(reader: &mut Reader) -> Result<Message, LinkError> {
    Ok(tokio::time::timeout(Duration::from_secs(10), reader.read_message())
        .await
        .map_err(|_| LinkError::Refused("no handshake reply within 10 s".into()))??)
}

fn refusal(m: Message) -> LinkError {
    match m {
        Message::Error { code, message } => LinkError::Refused(format!("{code:?}: {message}")),
        other => LinkError::Refused(format!("unexpected {}", other.name())),
    }
}

fn hello(inner: &Inner, instance_id: &str) -> Hello {
    let c = &inner.config;
    Hello {
        protocol_version: PROTOCOL_VERSION,
        app: c.app.clone(),
        instance_id: instance_id.to_string(),
        hostname: c.hostname.clone(),
        pid: c.pid,
        labels: c.labels.clone(),
        node_version: c.node_version.clone(),
        agent_version: c.agent_version.clone(),
        capabilities: with_rules(&c.capabilities),
        active_commands: inner.active_job_ids(),
        hub_nonce: None,
    }
}

/// This agent fires the hub's stall rules itself: it says so, so the hub sends it `rules`.
fn with_rules(capabilities: &[String]) -> Vec<String> {
    let mut caps = capabilities.to_vec();
    if !caps.iter().any(|c| c == perf_protocol::RULES_CAPABILITY) {
        caps.push(perf_protocol::RULES_CAPABILITY.to_string());
    }
    caps
}

/// Random per process (not per connection): the hub keeps the same process across reconnects.
fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            // Fall back to pid + time: unique enough for a registry key.
            let t =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            b[..8].copy_from_slice(&(t as u64).to_le_bytes());
            b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        }
        hex::encode(b)
    })
}

async fn session(
    inner: &Arc<Inner>,
    mut reader: Reader,
    mut writer: Writer,
    outbox: &mut mpsc::Receiver<Message>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    heartbeat: Duration,
) -> Result<(), LinkError> {
    let mut beat = tokio::time::interval(heartbeat);
    let silent_limit = heartbeat * 3;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            frame = reader.read_message() => {
                last_heard = tokio::time::Instant::now();
                match frame? {
                    Message::Command(cmd) => inner.handle_command(cmd),
                    Message::Rules { rules } => inner.set_rules(rules),
                    Message::Cancel { command_id, reason } => inner.cancel(&command_id, &reason),
                    Message::Heartbeat { .. } => {}
                    Message::Error { code, message } => tracing::warn!(?code, message, "perf-agent: hub error"),
                    other => tracing::debug!(msg = other.name(), "perf-agent: ignored message"),
                }
            }
            Some(msg) = outbox.recv() => writer.send(&msg).await?,
            _ = beat.tick() => {
                if last_heard.elapsed() > silent_limit {
                    return Err(LinkError::HubSilent(silent_limit));
                }
                writer.send(&Message::Heartbeat { ts_ms: perf_protocol::unix_ms() }).await?;
            }
            _ = shutdown.changed() => {
                let _ = writer.send(&Message::Goodbye { reason: "agent stopped".into() }).await;
                let _ = writer.shutdown().await;
                return Ok(());
            }
        }
    }
}
