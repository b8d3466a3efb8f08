//! Simulated agents: each its own TCP connection speaking the real protocol exactly as
//! `perf-agent-core`'s link does (hello → challenge → auth → welcome, heartbeats at the hub's
//! interval, a silent-hub check), plus a metrics sample of the real shape every few seconds.
//! Start times of heartbeats and samples are jittered per agent so they spread over the interval.

use perf_protocol::{
    auth, encode_message, FrameReader, Hello, Message, ProtocolError, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

/// As in agent-core: connect and each handshake reply are bounded.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The capabilities a real agent announces.
const CAPABILITIES: [&str; 4] = ["heap_snapshot", "cpu_profile", "heap_sampling", "perf_flamegraph"];

pub struct SimConfig {
    pub hub: SocketAddr,
    pub app: String,
    pub secret: String,
    /// First 16 hex characters of every simulated instance id (unique per run).
    pub id_prefix: String,
    pub metrics_every: Duration,
    /// Failed handshakes plus dropped links allowed per agent before it stops trying (a real
    /// agent retries forever; this only bounds the loop).
    pub max_reconnects: u32,
    pub handshakes: Arc<Semaphore>,
    pub seed: u64,
}

impl SimConfig {
    pub fn instance_id(&self, i: usize) -> String {
        format!("{}{:016x}", self.id_prefix, i)
    }
}

/// Counters shared by all simulated agents.
#[derive(Default)]
pub struct Stats {
    /// Links authenticated and not dropped.
    pub live: AtomicU64,
    /// Agents that got a welcome at least once.
    pub welcomed: AtomicU64,
    /// Agents that stopped trying (reconnect budget spent).
    pub gave_up: AtomicU64,
    pub connect_errors: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub refused: AtomicU64,
    pub other_errors: AtomicU64,
    pub drops: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub metrics_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub commands_received: AtomicU64,
    /// Hello-to-welcome times of successful handshakes, in microseconds.
    pub handshake_us: Mutex<Vec<u32>>,
    /// First few distinct error texts, for the report.
    pub errors: Mutex<Vec<String>>,
}

impl Stats {
    fn note_error(&self, e: &str) {
        if let Ok(mut v) = self.errors.lock() {
            if v.len() < 8 && !v.iter().any(|x| x == e) {
                v.push(e.to_string());
            }
        }
    }

    pub fn failures(&self) -> u64 {
        self.connect_errors.load(Relaxed)
            + self.handshake_timeouts.load(Relaxed)
            + self.refused.load(Relaxed)
            + self.other_errors.load(Relaxed)
    }
}

enum LinkError {
    Connect(String),
    Timeout(&'static str),
    Refused(String),
    Other(String),
}

impl From<ProtocolError> for LinkError {
    fn from(e: ProtocolError) -> Self {
        LinkError::Other(e.to_string())
    }
}

/// Frame readers with a small buffer: the real agent's 64 KB one, times 20,000, would make this
/// process the memory hog of the benchmark.
type Reader = FrameReader<OwnedReadHalf>;
const READ_BUFFER: usize = 2048;

struct Writer {
    inner: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl Writer {
    async fn send(&mut self, msg: &Message, stats: &Stats) -> Result<(), ProtocolError> {
        self.buf.clear();
        encode_message(msg, &mut self.buf)?;
        self.flush(stats).await
    }

    /// A control message given as its wire JSON (`{"type": …}`): the frame carries exactly these
    /// bytes, whatever Rust type the protocol crate parses them into.
    async fn send_json(&mut self, msg: &serde_json::Value, stats: &Stats) -> Result<(), ProtocolError> {
        self.buf.clear();
        encode_json_message(msg, &mut self.buf)?;
        self.flush(stats).await
    }

    async fn flush(&mut self, stats: &Stats) -> Result<(), ProtocolError> {
        self.inner.write_all(&self.buf).await?;
        stats.bytes_sent.fetch_add(self.buf.len() as u64, Relaxed);
        if self.buf.capacity() > 16 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// Frame layout of `perf_protocol::frame`: `u32 BE length | u8 kind (1 = message) | JSON`.
pub fn encode_json_message(msg: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    const KIND_MESSAGE: u8 = 1;
    let payload = serde_json::to_vec(msg)?;
    let len = payload.len() + 1;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge { len, max: MAX_FRAME_LEN });
    }
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(KIND_MESSAGE);
    out.extend_from_slice(&payload);
    Ok(())
}

/// Small, fast, deterministic PRNG (xorshift64*): jitter and figures, not secrets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One simulated agent: connects, and after a drop reconnects with backoff (same instance id,
/// as a real agent does) until `stop` or its reconnect budget is spent.
pub async fn run_agent(cfg: Arc<SimConfig>, stats: Arc<Stats>, i: usize, mut stop: watch::Receiver<bool>) {
    let id = cfg.instance_id(i);
    let mut rng = Rng::new(cfg.seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let pid = 1000 + (rng.below(4_000_000) as u32);
    let mut welcomed = false;
    // Failures since the last welcome (drives the backoff, reset on success as agent-core does)
    // and in all (bounded by the reconnect budget).
    let (mut backoff_step, mut failures) = (0u32, 0u32);
    loop {
        if *stop.borrow() {
            return;
        }
        let permit = tokio::select! {
            p = cfg.handshakes.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let t0 = Instant::now();
        let r = tokio::select! {
            r = handshake(&cfg, &stats, &id, i, pid) => r,
            _ = stop.changed() => return,
        };
        drop(permit);
        match r {
            Ok((reader, writer, heartbeat)) => {
                if let Ok(mut v) = stats.handshake_us.lock() {
                    v.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                if !welcomed {
                    welcomed = true;
                    stats.welcomed.fetch_add(1, Relaxed);
                }
                backoff_step = 0;
                stats.live.fetch_add(1, Relaxed);
                let r = session(&cfg, &stats, reader, writer, heartbeat, &mut rng, pid, &mut stop).await;
                stats.live.fetch_sub(1, Relaxed);
                match r {
                    Ok(()) => return,
                    Err(e) => {
                        stats.drops.fetch_add(1, Relaxed);
                        stats.note_error(&format!("link dropped: {e}"));
                    }
                }
            }
            Err(e) => {
                let text = match e {
                    LinkError::Connect(m) => {
                        stats.connect_errors.fetch_add(1, Relaxed);
                        format!("connect: {m}")
                    }
                    LinkError::Timeout(what) => {
                        stats.handshake_timeouts.fetch_add(1, Relaxed);
                        format!("timeout waiting for {what}")
                    }
                    LinkError::Refused(m) => {
                        stats.refused.fetch_add(1, Relaxed);
                        format!("refused: {m}")
                    }
                    LinkError::Other(m) => {
                        stats.other_errors.fetch_add(1, Relaxed);
                        format!("handshake: {m}")
                    }
                };
                stats.note_error(&text);
            }
        }
        failures += 1;
        if failures > cfg.max_reconnects {
            stats.gave_up.fetch_add(1, Relaxed);
            return;
        }
        // agent-core's backoff: uniform in [min/2, cap], cap = 0.5 s doubling up to 30 s.
        let cap = (0.5 * 2f64.powi(backoff_step.min(10) as i32)).min(30.0);
        backoff_step += 1;
        let delay = Duration::from_secs_f64(rng.range(0.25, cap));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn handshake(
    cfg: &SimConfig,
    stats: &Stats,
    id: &str,
    i: usize,
    pid: u32,
) -> Result<(Reader, Writer, Duration), LinkError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(cfg.hub))
        .await
        .map_err(|_| LinkError::Connect("timed out".into()))?
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = FrameReader::with_read_buffer(r, READ_BUFFER);
    let mut writer = Writer { inner: w, buf: Vec::with_capacity(512) };
    // Built from its wire form, so fields the protocol adds later (optional, by the contract)
    // take their defaults here as they would for an older agent.
    let hello: Hello = serde_json::from_value(serde_json::json!({
        "protocol_version": PROTOCOL_VERSION,
        "app": cfg.app,
        "instance_id": id,
        // Fifty processes a host, like workers of a cluster on a big machine.
        "hostname": format!("sim-host-{:04}", i / 50),
        "pid": pid,
        "labels": {"role": "web", "bench": "sim"},
        "node_version": "v20.20.2",
        "agent_version": "0.1.0",
        "capabilities": CAPABILITIES,
        "active_commands": [],
    }))
    .map_err(|e| LinkError::Other(format!("building hello: {e}")))?;
    writer.send(&Message::Hello(hello), stats).await?;
    let nonce = match reply(&mut reader, "challenge").await? {
        Message::Challenge { nonce } => nonce,
        other => return Err(refusal(other)),
    };
    let mac = auth::auth_mac(&cfg.secret, &nonce, &cfg.app, id);
    writer.send(&Message::Auth { mac }, stats).await?;
    match reply(&mut reader, "welcome").await? {
        Message::Welcome { heartbeat_ms, .. } => {
            Ok((reader, writer, Duration::from_millis(heartbeat_ms.clamp(100, 600_000))))
        }
        other => Err(refusal(other)),
    }
}

async fn reply(reader: &mut Reader, what: &'static str) -> Result<Message, LinkError> {
    Ok(tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_message()).await.map_err(|_| LinkError::Timeout(what))??)
}

fn refusal(m: Message) -> LinkError {
    match m {
        Message::Error { code, message } => LinkError::Refused(format!("{code:?}: {message}")),
        other => LinkError::Refused(format!("unexpected {}", other.name())),
    }
}

/// Heartbeats and metrics until `stop` (Ok) or the link fails (Err).
#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &SimConfig,
    stats: &Stats,
    mut reader: Reader,
    mut writer: Writer,
    heartbeat: Duration,
    rng: &mut Rng,
    pid: u32,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let now = Instant::now();
    // The real agent beats right after the welcome; spread the first beat and sample instead,
    // so a ramp of 500 connects/s doesn't turn into synchronized bursts every interval.
    let mut beat = tokio::time::interval_at(now + heartbeat.mul_f64(rng.f()), heartbeat);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut metrics = tokio::time::interval_at(now + cfg.metrics_every.mul_f64(rng.f()), cfg.metrics_every);
    metrics.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silent_limit = heartbeat * 3;
    let mut last_heard = Instant::now();
    let mut shape = SampleState::new(rng, pid);
    loop {
        tokio::select! {
            m = reader.read_message() => {
                last_heard = Instant::now();
                stats.frames_received.fetch_add(1, Relaxed);
                match m.map_err(|e| e.to_string())? {
                    Message::Command(cmd) => {
                        // Not expected (commands go to the real agent); answer like a busy agent.
                        stats.commands_received.fetch_add(1, Relaxed);
                        let ack = serde_json::json!({"type": "ack", "command_id": cmd.id, "accepted": false, "error": "simulated agent"});
                        writer.send_json(&ack, stats).await.map_err(|e| e.to_string())?;
                    }
                    Message::Error { code, message } => return Err(format!("hub error {code:?}: {message}")),
                    _ => {}
                }
            }
            _ = beat.tick() => {
                if last_heard.elapsed() > silent_limit {
                    return Err(format!("no frame from the hub for {silent_limit:?}"));
                }
                writer.send(&Message::Heartbeat { ts_ms: now_ms() }, stats).await.map_err(|e| e.to_string())?;
                stats.heartbeats_sent.fetch_add(1, Relaxed);
            }
            _ = metrics.tick() => {
                let msg = serde_json::json!({"type": "metrics", "sample": shape.next(rng, cfg.metrics_every)});
                writer.send_json(&msg, stats).await.map_err(|e| e.to_string())?;
                stats.metrics_sent.fetch_add(1, Relaxed);
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Per-agent figures that evolve from sample to sample (counters only grow, heap wanders).
struct SampleState {
    pid: u32,
    heap_used: f64,
    rss: f64,
    cpu_user_total: f64,
    cpu_sys_total: f64,
    started_ms: u64,
}

impl SampleState {
    fn new(rng: &mut Rng, pid: u32) -> Self {
        Self {
            pid,
            heap_used: rng.range(20e6, 120e6),
            rss: rng.range(80e6, 250e6),
            cpu_user_total: rng.range(10.0, 5000.0),
            cpu_sys_total: rng.range(2.0, 800.0),
            started_ms: now_ms(),
        }
    }

    /// One sample in the shape the real agent sends: agent-core's envelope (`ts`, `state`,
    /// `blocked_ms`, `native` from proc-metrics, `js` from lib/metrics.js). Figures are random
    /// but plausible; the shape and size (~3 KB of JSON) are what the hub's cost depends on.
    fn next(&mut self, rng: &mut Rng, interval: Duration) -> serde_json::Value {
        let ts = now_ms();
        let secs = interval.as_secs_f64();
        let cpu_user_pct = rng.range(1.0, 25.0);
        let cpu_sys_pct = rng.range(0.2, 5.0);
        self.cpu_user_total += cpu_user_pct / 100.0 * secs;
        self.cpu_sys_total += cpu_sys_pct / 100.0 * secs;
        self.heap_used = (self.heap_used * rng.range(0.97, 1.03)).clamp(10e6, 1.5e9);
        self.rss = (self.rss * rng.range(0.99, 1.01)).max(self.heap_used * 1.5);
        let heap_used = self.heap_used as u64;
        let heap_total = (self.heap_used * rng.range(1.1, 1.4)) as u64;
        let rss = self.rss as u64;
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let space = |share: f64| {
            let size = (heap_total as f64 * share) as u64;
            let used = (heap_used as f64 * share) as u64;
            serde_json::json!({
                "available_bytes": size.saturating_sub(used) / 4,
                "physical_bytes": size,
                "size_bytes": size,
                "used_bytes": used.min(size),
            })
        };
        let spaces = serde_json::json!({
            "code_large_object_space": space(0.002),
            "code_space": space(0.03),
            "large_object_space": space(0.08),
            "new_large_object_space": space(0.0),
            "new_space": space(0.05),
            "old_space": space(0.83),
            "read_only_space": space(0.0),
            "shared_large_object_space": space(0.0),
            "shared_space": space(0.0),
        });
        let scavenges = rng.below(40);
        let msc = rng.below(2);
        let scav_ms = r3(scavenges as f64 * rng.range(0.3, 2.0));
        let msc_ms = r3(msc as f64 * rng.range(5.0, 40.0));
        let requests = rng.below(3000);
        let p50 = rng.range(1.0, 20.0);
        let http_server = serde_json::json!({
            "count": requests,
            "status_2xx": requests * 95 / 100,
            "status_3xx": requests / 100,
            "status_4xx": requests * 3 / 100,
            "status_5xx": requests / 100,
            "latency_mean_ms": r3(p50 * 1.3),
            "latency_p50_ms": r3(p50),
            "latency_p90_ms": r3(p50 * 2.5),
            "latency_p99_ms": r3(p50 * 6.0),
            "latency_max_ms": r3(p50 * 15.0),
        });
        let outgoing = rng.below(500);
        let client = |errors: u64| {
            serde_json::json!({
                "count": outgoing,
                "errors": errors,
                "status_2xx": outgoing,
                "status_3xx": 0,
                "status_4xx": 0,
                "status_5xx": 0,
                "latency_mean_ms": r3(p50 * 0.8),
                "latency_p50_ms": r3(p50 * 0.6),
                "latency_p90_ms": r3(p50 * 1.5),
                "latency_p99_ms": r3(p50 * 4.0),
                "latency_max_ms": r3(p50 * 9.0),
            })
        };
        let eld_p50 = rng.range(10.0, 12.0);
        serde_json::json!({
            "ts": ts,
            "state": "running",
            "blocked_ms": 0,
            "native": {
                "process": {
                    "pid": self.pid,
                    "rss_bytes": rss,
                    "rss_peak_bytes": (self.rss * 1.2) as u64,
                    "vm_size_bytes": 1_742_290_944u64 + rss,
                    "threads": 13,
                    "open_fds": 30 + rng.below(200),
                    "cpu_user_percent": cpu_user_pct,
                    "cpu_system_percent": cpu_sys_pct,
                    "cpu_user_seconds_total": r3(self.cpu_user_total),
                    "cpu_system_seconds_total": r3(self.cpu_sys_total),
                },
                "host": {
                    "load_avg_1": r3(rng.range(0.5, 8.0)),
                    "load_avg_5": r3(rng.range(0.5, 6.0)),
                    "load_avg_15": r3(rng.range(0.5, 4.0)),
                    "mem_total_bytes": 68_719_476_736u64,
                    "mem_free_bytes": 20_000_000_000u64 + rng.below(1_000_000_000),
                    "mem_available_bytes": 40_000_000_000u64 + rng.below(1_000_000_000),
                    "cpu_count": 16,
                    "uptime_seconds": r3((ts - self.started_ms) as f64 / 1000.0 + 86_400.0),
                },
                "cgroup": {
                    "version": 2,
                    "dir": "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/cri-containerd-3f2a9c.scope",
                    "limit_bytes": 2_147_483_648u64,
                    "usage_bytes": rss + 30_000_000,
                    "working_set_bytes": rss + 10_000_000,
                },
                "errors": [],
            },
            "js": {
                "ts": ts,
                "interval_ms": r3(secs * 1000.0 + rng.range(-2.0, 2.0)),
                "errors": 0,
                "heap": {
                    "used_bytes": heap_used,
                    "total_bytes": heap_total,
                    "limit_bytes": 4_345_298_944u64,
                    "external_bytes": 1_669_858 + rng.below(5_000_000),
                    "array_buffers_bytes": 13_383 + rng.below(2_000_000),
                    "malloced_bytes": 262_312 + rng.below(1_000_000),
                    "native_contexts": 1,
                    "detached_contexts": 0,
                    "spaces": spaces,
                },
                "event_loop": {
                    "delay_min_ms": r3(eld_p50 * 0.9),
                    "delay_mean_ms": r3(eld_p50 * 1.03),
                    "delay_p50_ms": r3(eld_p50),
                    "delay_p99_ms": r3(eld_p50 * rng.range(1.3, 4.0)),
                    "delay_max_ms": r3(eld_p50 * rng.range(2.0, 10.0)),
                    "resolution_ms": 10,
                    "utilization": r3(rng.range(0.01, 0.6)),
                },
                "gc": {
                    "count": scavenges + msc,
                    "pause_ms": r3(scav_ms + msc_ms),
                    "pause_max_ms": r3(if msc > 0 { msc_ms } else { scav_ms.min(2.0) }),
                    "by_kind": {
                        "scavenge": { "count": scavenges, "pause_ms": scav_ms },
                        "mark_sweep_compact": { "count": msc, "pause_ms": msc_ms },
                        "incremental": { "count": msc, "pause_ms": r3(msc as f64 * 0.5) },
                        "weak_callbacks": { "count": 0, "pause_ms": 0 },
                    },
                },
                "resources": {
                    "TCPSocketWrap": 5 + rng.below(50),
                    "TCPServerWrap": 1,
                    "Timeout": 2 + rng.below(20),
                    "FSReqCallback": rng.below(3),
                    "Immediate": rng.below(2),
                },
                "http_server": http_server,
                "http_client": client(rng.below(3)),
                "undici": client(0),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perf_protocol::{Frame, FrameDecoder};

    #[test]
    fn sample_has_the_real_shape_and_size() {
        let mut rng = Rng::new(7);
        let mut s = SampleState::new(&mut rng, 42);
        let v = s.next(&mut rng, Duration::from_secs(5));
        for path in [
            "/native/process/rss_bytes",
            "/native/host/cpu_count",
            "/native/cgroup/working_set_bytes",
            "/js/heap/spaces/old_space/used_bytes",
            "/js/event_loop/delay_p99_ms",
            "/js/gc/by_kind/scavenge/count",
            "/js/http_server/latency_p99_ms",
            "/js/undici/errors",
        ] {
            assert!(v.pointer(path).is_some(), "{path} missing in {v}");
        }
        let len = serde_json::to_vec(&v).expect("json").len();
        assert!((2000..5000).contains(&len), "{len} bytes");
        // The hand-made frame is one the protocol decodes as a metrics message.
        let mut frame = Vec::new();
        encode_json_message(&serde_json::json!({"type": "metrics", "sample": v}), &mut frame).expect("encode");
        let mut dec = FrameDecoder::new();
        dec.extend(&frame);
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::Message(Message::Metrics { .. })))));
        assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn rng_is_spread() {
        let mut r = Rng::new(1);
        let xs: Vec<f64> = (0..1000).map(|_| r.f()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }
}
