//! The DevTools bridge: a stored `.heapsnapshot` opens in the operator's own Chrome DevTools
//! Memory panel, with no download-and-load.
//!
//! `POST /api/artifacts/{id}/devtools` (admin: it hands over the raw snapshot) answers
//! `{"url": "devtools://devtools/bundled/js_app.html?ws=HOST/devtools/TICKET&panel=heap-profiler",
//! "expires_at"}` (`wss=` under TLS). DevTools can't send headers, so the URL carries a ticket:
//! random, valid for [`TICKET_TTL`], good for one connection. At `GET /devtools/{ticket}` the hub
//! poses as an inspector target over a WebSocket: every call is answered with an empty result
//! (DevTools sends ~50 `*.enable`-style calls on connect), and `HeapProfiler.takeHeapSnapshot`
//! ("Take heap snapshot" in the Memory panel) is answered with the stored file — first
//! `HeapProfiler.reportHeapSnapshotProgress` (finished; DevTools drops chunks that come before
//! it), then `HeapProfiler.addHeapSnapshotChunk` events streamed from the store a piece at a
//! time (never the whole file in memory), then the call's response.

use super::{auth, conflict, not_found, unprocessable, visible_artifact, ApiError};
use crate::hub::Hub;
use crate::operators::{Principal, Role};
use crate::store::{ArtifactRecord, ArtifactStatus};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long a DevTools URL stays valid before it is used.
pub const TICKET_TTL: Duration = Duration::from_secs(5 * 60);
/// Outstanding tickets at most (each is a few hundred bytes; expired ones are dropped first).
const MAX_TICKETS: usize = 256;
/// The largest message DevTools sends is a call of a few hundred bytes.
const MAX_INCOMING: usize = 64 * 1024;
/// Bytes of the snapshot read per `addHeapSnapshotChunk` event.
const CHUNK_BYTES: usize = 256 * 1024;
/// A bridge session ends after this long, whatever happens in it.
const MAX_SESSION: Duration = Duration::from_secs(60 * 60);

/// A one-time ticket: which snapshot, until when, and who asked (for the audit).
struct Ticket {
    artifact_id: String,
    expires: Instant,
    actor: String,
}

/// Outstanding tickets, by their random id.
#[derive(Default)]
pub struct Tickets {
    by_id: Mutex<HashMap<String, Ticket>>,
}

impl Tickets {
    fn issue(&self, artifact_id: &str, actor: &str) -> Result<String, ApiError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| ApiError::Internal(format!("rng: {e}")))?;
        let id = hex::encode(raw);
        let mut map = self.by_id.lock().map_err(|_| ApiError::Internal("ticket lock poisoned".into()))?;
        let now = Instant::now();
        map.retain(|_, t| t.expires > now);
        if map.len() >= MAX_TICKETS {
            return Err(ApiError::Unavailable("too many DevTools URLs outstanding: use or let some expire".into()));
        }
        let ticket =
            Ticket { artifact_id: artifact_id.to_string(), expires: now + TICKET_TTL, actor: actor.to_string() };
        map.insert(id.clone(), ticket);
        Ok(id)
    }

    /// The ticket, removed (one connection per URL), if it exists and has not expired.
    fn redeem(&self, id: &str) -> Option<Ticket> {
        let mut map = self.by_id.lock().ok()?;
        map.remove(id).filter(|t| t.expires > Instant::now())
    }
}

/// The admin route and the WebSocket route (authenticated by its ticket), sharing the tickets.
pub struct DevtoolsRoutes {
    pub admin: Router<Arc<Hub>>,
    pub public: Router<Arc<Hub>>,
}

pub fn routes() -> DevtoolsRoutes {
    let tickets = Arc::new(Tickets::default());
    DevtoolsRoutes {
        admin: Router::new()
            .route("/api/artifacts/{id}/devtools", post(open_in_devtools))
            .route_layer(middleware::from_fn_with_state(Role::Admin, auth::require_role))
            .layer(Extension(tickets.clone())),
        public: Router::new().route("/devtools/{ticket}", get(bridge)).layer(Extension(tickets)),
    }
}

/// `Host` as the operator reached the hub, if it is a plain `host[:port]`.
fn host_of(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then_some(host)
}

/// The URL DevTools opens; `wss=` when the hub serves TLS.
pub fn devtools_url(host: &str, ticket: &str, tls: bool) -> String {
    let scheme = if tls { "wss" } else { "ws" };
    format!("devtools://devtools/bundled/js_app.html?{scheme}={host}/devtools/{ticket}&panel=heap-profiler")
}

async fn open_in_devtools(
    State(hub): State<Arc<Hub>>,
    Extension(p): Extension<Principal>,
    Extension(tickets): Extension<Arc<Tickets>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let a = visible_artifact(&hub, &p, &id).await?;
    if a.kind != "heap_snapshot" {
        return Err(unprocessable(format!("a {} does not open in the DevTools Memory panel", a.kind)));
    }
    if a.status != ArtifactStatus::Ready {
        return Err(conflict(format!("artifact is {}, not ready", a.status.as_str())));
    }
    let host = host_of(&headers).ok_or_else(|| super::bad_request("the request has no usable Host header"))?;
    let actor = p.actor(remote.ip());
    let ticket = tickets.issue(&a.id, &actor)?;
    hub.audit.record(&actor, "artifact.devtools", &a.id, json!({"kind": a.kind, "size": a.size}), "ok").await;
    let expires_at = humantime::format_rfc3339_seconds(SystemTime::now() + TICKET_TTL).to_string();
    Ok(Json(json!({ "url": devtools_url(host, &ticket, hub.config.tls_cert.is_some()), "expires_at": expires_at })))
}

async fn bridge(
    State(hub): State<Arc<Hub>>,
    Extension(tickets): Extension<Arc<Tickets>>,
    Path(ticket): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if ticket.len() != 64 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found("no such DevTools session"));
    }
    let t = tickets.redeem(&ticket).ok_or_else(|| not_found("no such DevTools session (used or expired)"))?;
    let a = hub.artifacts.get(&t.artifact_id).await?.ok_or_else(|| not_found("the snapshot is gone"))?;
    Ok(ws.max_message_size(MAX_INCOMING).on_upgrade(move |socket| async move {
        hub.audit.record(&t.actor, "artifact.devtools_connect", &a.id, json!({}), "ok").await;
        match tokio::time::timeout(MAX_SESSION, serve(socket, &hub, &a)).await {
            Ok(Err(e)) => tracing::debug!(artifact = %a.id, error = %e, "devtools bridge ended"),
            Err(_) => tracing::debug!(artifact = %a.id, "devtools bridge reached its time limit"),
            Ok(Ok(())) => {}
        }
    }))
}

/// What the bridge does with one inspector call.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Send this response.
    Answer(Value),
    /// Stream the snapshot, then answer the call with this id.
    SendSnapshot { id: u64 },
    /// Not a call (no id): nothing to answer.
    Ignore,
}

/// The answer to one message from DevTools.
pub fn reply_to(text: &str) -> Reply {
    let Ok(msg) = serde_json::from_str::<Value>(text) else { return Reply::Ignore };
    let Some(id) = msg.get("id").and_then(Value::as_u64) else { return Reply::Ignore };
    match msg.get("method").and_then(Value::as_str).unwrap_or("") {
        "HeapProfiler.takeHeapSnapshot" => Reply::SendSnapshot { id },
        // DevTools reads `result.type` of every evaluation.
        "Runtime.evaluate" | "Runtime.callFunctionOn" => {
            Reply::Answer(json!({"id": id, "result": {"result": {"type": "undefined"}}}))
        }
        _ => Reply::Answer(json!({"id": id, "result": {}})),
    }
}

async fn serve(mut socket: WebSocket, hub: &Hub, a: &ArtifactRecord) -> Result<(), ApiError> {
    while let Some(msg) = socket.recv().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => return Ok(()),
            Ok(_) => continue,
        };
        match reply_to(text.as_str()) {
            Reply::Answer(v) => send(&mut socket, &v).await?,
            Reply::SendSnapshot { id } => {
                stream_snapshot(&mut socket, hub, a).await?;
                send(&mut socket, &json!({"id": id, "result": {}})).await?;
            }
            Reply::Ignore => {}
        }
    }
    Ok(())
}

async fn send(socket: &mut WebSocket, v: &Value) -> Result<(), ApiError> {
    socket.send(Message::Text(v.to_string().into())).await.map_err(|e| ApiError::Internal(e.to_string()))
}

async fn stream_snapshot(socket: &mut WebSocket, hub: &Hub, a: &ArtifactRecord) -> Result<(), ApiError> {
    let size = a.size.unwrap_or(0);
    let progress = json!({"method": "HeapProfiler.reportHeapSnapshotProgress",
        "params": {"done": size, "total": size, "finished": true}});
    send(socket, &progress).await?;
    // Streamed from whichever store holds it (the one place this module reads artifact bytes),
    // re-cut into chunks of at most CHUNK_BYTES on UTF-8 boundaries.
    let storage = hub.artifacts.storage();
    let mut stream = storage.read(&a.file_name, 0, size).await.map_err(|e| super::gone(e.reason()))?;
    let mut chunks = Utf8Chunks::default();
    loop {
        let piece = stream.next().await.transpose()?;
        let last = piece.is_none();
        let bytes = piece.unwrap_or_default();
        for part in bytes.chunks(CHUNK_BYTES).chain(last.then_some(&[][..])) {
            let Some(text) = chunks.push(part, last) else { return Ok(()) };
            if !text.is_empty() {
                send(socket, &json!({"method": "HeapProfiler.addHeapSnapshotChunk", "params": {"chunk": text}}))
                    .await?;
            }
        }
        if last {
            return Ok(());
        }
    }
}

/// Cuts a byte stream into valid UTF-8 pieces (a chunk is a JSON string), carrying a character
/// split between two reads over to the next piece.
#[derive(Default)]
pub struct Utf8Chunks {
    carry: Vec<u8>,
}

impl Utf8Chunks {
    /// The text of `bytes` (after what was carried); `None` once `last` and nothing is left.
    pub fn push(&mut self, bytes: &[u8], last: bool) -> Option<String> {
        if last && self.carry.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(bytes);
        if !last {
            if let Err(e) = std::str::from_utf8(&data) {
                // An incomplete character at the end (error_len None) waits for the next read.
                if e.error_len().is_none() {
                    self.carry = data.split_off(e.valid_up_to());
                }
            }
        }
        Some(String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_answered_and_the_snapshot_is_asked_for() {
        assert_eq!(reply_to(r#"{"id":1,"method":"Runtime.enable"}"#), Reply::Answer(json!({"id": 1, "result": {}})));
        assert_eq!(
            reply_to(r#"{"id":7,"method":"Runtime.evaluate","params":{"expression":"1"}}"#),
            Reply::Answer(json!({"id": 7, "result": {"result": {"type": "undefined"}}}))
        );
        assert_eq!(
            reply_to(r#"{"id":42,"method":"HeapProfiler.takeHeapSnapshot","params":{"reportProgress":true}}"#),
            Reply::SendSnapshot { id: 42 }
        );
        assert_eq!(reply_to(r#"{"method":"Some.event"}"#), Reply::Ignore);
        assert_eq!(reply_to("not json"), Reply::Ignore);
    }

    #[test]
    fn chunks_never_split_a_character() {
        let text = "{\"strings\":[\"héllo wörld ✓ 🙂\"]}".repeat(50);
        let bytes = text.as_bytes();
        for size in [1, 2, 3, 5, 7, 64] {
            let mut c = Utf8Chunks::default();
            let mut out = String::new();
            for piece in bytes.chunks(size) {
                out.push_str(&c.push(piece, false).expect("more"));
            }
            if let Some(rest) = c.push(&[], true) {
                out.push_str(&rest);
            }
            assert_eq!(c.push(&[], true), None);
            assert_eq!(out, text, "pieces of {size}");
        }
    }

    #[test]
    fn tickets_are_one_time_and_bounded() {
        let t = Tickets::default();
        let id = t.issue("a1", "token:x").expect("ticket");
        assert_eq!(id.len(), 64);
        assert_eq!(t.redeem(&id).map(|t| t.artifact_id), Some("a1".to_string()));
        assert!(t.redeem(&id).is_none(), "one connection per URL");
        for _ in 0..MAX_TICKETS {
            t.issue("a", "x").expect("room");
        }
        assert!(t.issue("a", "x").is_err(), "bounded");
        assert!(devtools_url("h:1", "t", true).contains("?wss=h:1/devtools/t&panel=heap-profiler"));
    }
}
