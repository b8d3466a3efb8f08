//! The napi binding of `@corp/perf-agent`: a thin adapter from JavaScript to `perf-agent-core`.
//!
//! - `start/stop/status` manage the process-wide agent (Rust statics are shared by the main
//!   thread and Workers, so a second `start()` is a no-op);
//! - `registerExecutor` is called by the inspector worker with a callback that receives commands
//!   as JSON; the core calls it from the link thread through a threadsafe function, so commands
//!   reach the worker even while the main thread is stuck in a loop;
//! - `job*` functions are how the worker reports chunks, progress and the end of a command.
//!
//! Errors that concern the network or a command are returned as data (`{ ok, error }`); only
//! misuse (bad options) throws.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use perf_agent_core::{parse_labels, Agent, AgentConfig, Executor, JobSpec, TlsSettings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

static AGENT: Mutex<Option<Arc<Agent>>> = Mutex::new(None);

fn current_agent() -> Option<Arc<Agent>> {
    AGENT.lock().ok().and_then(|a| a.clone())
}

/// Options of `start()`; the JS wrapper fills gaps from `PERF_AGENT_*` and the process.
#[napi(object)]
pub struct NativeStartOptions {
    pub hub: String,
    pub app: String,
    pub secret: String,
    pub labels: Option<HashMap<String, String>>,
    /// `k=v,k2=v2`, merged under `labels`.
    pub labels_text: Option<String>,
    pub hostname: Option<String>,
    pub node_version: Option<String>,
    pub capabilities: Option<Vec<String>>,
    pub spool_dir: Option<String>,
    /// Most MiB the spool directory may hold (default 16384).
    pub spool_max_mb: Option<u32>,
    /// Command line of the perf helper process (node + lib/perf-helper.js).
    pub perf_helper: Option<Vec<String>>,
    /// How often metrics are sent; 0 turns metrics off (default 5000).
    pub metrics_interval_ms: Option<u32>,
    /// TLS to the hub, verified against the system's roots or `tls_ca`.
    pub tls: Option<bool>,
    /// PEM file of the CA the hub's certificate must chain to (implies TLS).
    pub tls_ca: Option<String>,
    /// Name the hub's certificate must carry (default: the host part of `hub`).
    pub tls_servername: Option<String>,
}

fn build_config(o: NativeStartOptions) -> Result<AgentConfig> {
    let invalid = |e: &dyn std::fmt::Display| Error::new(Status::InvalidArg, format!("perf-agent: {e}"));
    let mut c = AgentConfig::new(&o.hub, &o.app, &o.secret).map_err(|e| invalid(&e))?;
    c.labels = parse_labels(o.labels_text.as_deref().unwrap_or("")).map_err(|e| invalid(&e))?;
    c.labels.extend(o.labels.unwrap_or_default());
    c.hostname = o.hostname.unwrap_or_default();
    c.node_version = o.node_version.unwrap_or_default();
    if let Some(caps) = o.capabilities {
        c.capabilities = caps;
    }
    c.perf_helper = o.perf_helper.unwrap_or_default();
    if let Some(ms) = o.metrics_interval_ms {
        c.metrics_interval = Duration::from_millis(ms as u64);
    }
    if let Some(dir) = o.spool_dir {
        c.spool_dir = dir.into();
    }
    if let Some(mb) = o.spool_max_mb {
        c.max_spool_bytes = u64::from(mb) << 20;
    }
    // A CA file that can't be read is reported in status().lastError by the link (retried like
    // a hub that is down), never thrown here and never a reason to fall back to plaintext.
    if o.tls == Some(true) || o.tls_ca.is_some() {
        c.tls = Some(TlsSettings { ca: o.tls_ca.map(Into::into), servername: o.tls_servername });
    }
    Ok(c)
}

/// Starts the agent for this process. Returns `false` if it was already running.
/// Never fails because the hub is unreachable: the link retries in the background.
#[napi]
pub fn start(options: NativeStartOptions) -> Result<bool> {
    let config = build_config(options)?;
    let mut slot = AGENT.lock().map_err(|_| Error::from_reason("perf-agent: state poisoned"))?;
    if slot.is_some() {
        return Ok(false);
    }
    let agent = Agent::start(config).map_err(|e| Error::from_reason(format!("perf-agent: {e}")))?;
    *slot = Some(Arc::new(agent));
    Ok(true)
}

pub struct StopTask;

impl Task for StopTask {
    type Output = bool;
    type JsValue = bool;

    fn compute(&mut self) -> Result<bool> {
        let agent = AGENT.lock().ok().and_then(|mut a| a.take());
        let Some(agent) = agent else { return Ok(false) };
        match Arc::try_unwrap(agent) {
            Ok(agent) => agent.stop(Duration::from_secs(2)),
            // A job handle is still held by a worker call in progress: drop our reference;
            // the runtime shuts down when the last one goes.
            Err(shared) => drop(shared),
        }
        Ok(true)
    }

    fn resolve(&mut self, _env: Env, output: bool) -> Result<bool> {
        Ok(output)
    }
}

/// Stops the agent (goodbye to the hub, uploads cancelled), off the JS thread.
#[napi]
pub fn stop() -> AsyncTask<StopTask> {
    AsyncTask::new(StopTask)
}

/// `{ running, connected, processId, lastError, connects }`.
#[napi]
pub fn status() -> serde_json::Value {
    match current_agent() {
        Some(a) => {
            let s = a.status();
            serde_json::json!({
                "running": true,
                "connected": s.connected,
                "processId": s.process_id,
                "lastError": s.last_error,
                "connects": s.connects,
            })
        }
        None => serde_json::json!({ "running": false, "connected": false }),
    }
}

/// The JS thread is alive: called every 250 ms from an unref'd timer (stall detection).
#[napi]
pub fn js_beat() {
    if let Some(a) = current_agent() {
        a.js_beat();
    }
}

/// The JS collector's sample (JSON text). Returns an error message, or null.
#[napi]
pub fn report_metrics(sample_json: String) -> Option<String> {
    current_agent().and_then(|a| a.report_js_metrics(&sample_json).err().map(|e| e.to_string()))
}

type CommandCallback = ThreadsafeFunction<String, Unknown<'static>, String, Status, false>;

/// Delivers commands to the inspector worker's callback.
struct WorkerExecutor(CommandCallback);

impl Executor for WorkerExecutor {
    fn dispatch(&self, job: JobSpec) -> std::result::Result<(), String> {
        let json = serde_json::to_string(&job).map_err(|e| e.to_string())?;
        match self.0.call(json, ThreadsafeFunctionCallMode::NonBlocking) {
            Status::Ok => Ok(()),
            s => Err(format!("inspector worker unavailable ({s})")),
        }
    }
}

/// Called by the inspector worker: `callback(jobJson)` runs on the worker's thread.
#[napi(ts_args_type = "callback: (jobJson: string) => void")]
pub fn register_executor(callback: CommandCallback) -> bool {
    match current_agent() {
        Some(a) => {
            a.set_executor(Some(Arc::new(WorkerExecutor(callback))));
            true
        }
        None => false,
    }
}

/// Runs a fallible step of a command; any error comes back as text for JS.
fn job_step<T>(
    id: &str,
    f: impl FnOnce(perf_agent_core::JobHandle) -> std::result::Result<T, perf_agent_core::JobError>,
) -> std::result::Result<T, String> {
    with_job(id, f).and_then(|r| r.map_err(|e| e.to_string()))
}

fn with_job<T>(id: &str, f: impl FnOnce(perf_agent_core::JobHandle) -> T) -> std::result::Result<T, String> {
    let agent = current_agent().ok_or("perf-agent is not running")?;
    let job = agent.job(id).map_err(|e| e.to_string())?;
    Ok(f(job))
}

/// Capture kinds the inspector worker runs (from the one table of capture kinds).
#[napi]
pub fn inspector_kinds() -> Vec<String> {
    perf_agent_core::protocol::CAPTURE_KINDS
        .iter()
        .filter(|k| k.executor == perf_agent_core::protocol::Executor::InspectorWorker)
        .map(|k| k.name.to_string())
        .collect()
}

/// Heap snapshot preflight: `{ ok: true, estimate }` or `{ ok: false, error }`.
#[napi]
pub fn job_preflight(id: String, heap_used_bytes: f64) -> serde_json::Value {
    let used = heap_used_bytes.max(0.0) as u64;
    match job_step(&id, |j| j.preflight_snapshot(used)) {
        Ok(est) => serde_json::json!({ "ok": true, "estimate": est }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    }
}

/// Called on the main thread, inside V8's interrupt, by the snapshot hook of `index.js`: the
/// private spool file `v8.writeHeapSnapshot()` should write this command's snapshot to.
/// `{ ok: true, path }` or `{ ok: false, error }`.
#[napi]
pub fn job_snapshot_target(id: String) -> serde_json::Value {
    match job_step(&id, |j| j.snapshot_target()) {
        Ok(path) => serde_json::json!({ "ok": true, "path": path.to_string_lossy() }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    }
}

/// Bytes spooled so far for a command (progress of a snapshot V8 writes itself).
#[napi]
pub fn job_spooled_bytes(id: String) -> f64 {
    with_job(&id, |j| j.spooled_bytes()).unwrap_or(0) as f64
}

/// Appends a chunk to the command's spool. Returns an error message, or null.
#[napi]
pub fn job_chunk(id: String, chunk: Either<String, Buffer>) -> Option<String> {
    job_step(&id, |j| match &chunk {
        Either::A(s) => j.write_chunk(s.as_bytes()),
        Either::B(b) => j.write_chunk(b.as_ref()),
    })
    .err()
}

#[napi]
pub fn job_progress(id: String, stage: String, done: f64, total: f64) {
    let _ = with_job(&id, |j| j.progress(&stage, done.max(0.0) as u64, total.max(0.0) as u64));
}

/// The capture is complete; the upload starts. Returns an error message, or null.
#[napi]
pub fn job_finish(id: String, notes: Option<Vec<String>>) -> Option<String> {
    job_step(&id, |j| j.finish(notes.unwrap_or_default())).err()
}

#[napi]
pub fn job_fail(id: String, error: String) {
    let _ = with_job(&id, |j| j.fail(&error));
}

pub struct PerfHelperTask(Vec<String>);

impl Task for PerfHelperTask {
    type Output = i32;
    type JsValue = i32;

    fn compute(&mut self) -> Result<i32> {
        Ok(perf_flamegraph::perf_capture::helper_main(std::mem::take(&mut self.0)))
    }

    fn resolve(&mut self, _env: Env, output: i32) -> Result<i32> {
        Ok(output)
    }
}

/// Entry of the perf helper process (`lib/perf-helper.js`): records and folds off the JS
/// thread; resolves to the exit code (0 captured, 1 failed — see result.json, 2 usage).
#[napi]
pub fn perf_helper_main(args: Vec<String>) -> AsyncTask<PerfHelperTask> {
    AsyncTask::new(PerfHelperTask(args))
}
