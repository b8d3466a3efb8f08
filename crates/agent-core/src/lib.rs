//! The agent's logic, without Node: it keeps the link to perf-hub, receives commands, hands them
//! to an [`Executor`] (in the addon: the inspector worker), spools what the executor produces and
//! uploads it. The napi binding only adapts this crate; everything here is tested with
//! `cargo test` against a real hub.
//!
//! Threading: all network work runs on the agent's own tokio runtime (one worker thread named
//! `perf-agent-link`), never on the JS thread; executor callbacks (chunks, progress) arrive on
//! the worker's thread and only touch a spool file and a bounded channel.

mod autopilot;
pub mod backoff;
pub mod config;
pub mod headroom;
mod job;
mod link;
mod metrics;
mod perf_job;
pub mod spool;
pub mod spool_dir;
pub mod transport;
pub mod upload;

pub use config::{parse_labels, AgentConfig, ConfigError, TlsSettings};
pub use job::{JobError, JobSpec};
/// The wire protocol and its table of capture kinds, for the binding.
pub use perf_protocol as protocol;

use job::Job;
use perf_protocol::{Ack, AckPoint, CommandKind, CommandResult, Message, Outcome, Progress, SnapshotEstimate};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Runs commands. Implemented by the addon (a threadsafe call into the inspector worker) and by
/// tests. `dispatch` must not block; the job's results come back through [`Agent::job`].
pub trait Executor: Send + Sync + 'static {
    fn dispatch(&self, job: JobSpec) -> Result<(), String>;
}

/// Link state for `status()` and tests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LinkStatus {
    pub connected: bool,
    pub process_id: Option<String>,
    pub last_error: Option<String>,
    pub connects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no such command in flight: {0}")]
    UnknownJob(String),
}

/// Room a capture of unknown size needs at least before it starts (profiles are a few MB).
const MIN_CAPTURE_ROOM: u64 = 64 << 20;

/// Why the JS collector's sample was not taken.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics sample of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed metrics sample: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// How long a command waits for the inspector worker to register after the agent started.
const EXECUTOR_WAIT: Duration = Duration::from_secs(3);

/// Capacity of the queue of messages waiting for the link (drops beyond it, never blocks).
const OUTBOX_CAPACITY: usize = 1024;

pub(crate) struct Inner {
    pub config: AgentConfig,
    /// The way to the hub (TCP or TLS), shared by the link and uploads.
    transport: Arc<transport::Transport>,
    executor: RwLock<Option<Arc<dyn Executor>>>,
    outbox: mpsc::Sender<Message>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// The one heavy command allowed at a time (capture phase; uploads may overlap).
    busy: Mutex<Option<String>>,
    status: Mutex<LinkStatus>,
    shutdown: watch::Sender<bool>,
    /// The agent's runtime, for spawning from executor threads (which run outside it).
    rt: tokio::runtime::Handle,
    metrics: metrics::MetricsState,
    /// The hub's stall rules this agent fires itself (see [`autopilot`]).
    autopilot: autopilot::AutopilotState,
}

/// A running agent. Dropping it without `stop()` leaves the runtime to die with the process.
pub struct Agent {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Agent {
    /// Starts the link on a dedicated runtime. Never fails because of the network: an absent hub
    /// is retried with backoff and jitter.
    pub fn start(config: AgentConfig) -> Result<Self, AgentError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("perf-agent-link")
            .enable_all()
            .build()
            .map_err(AgentError::Runtime)?;
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let config_stall_threshold = config.stall_threshold;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            transport: Arc::new(transport::Transport::new(&config)),
            config,
            executor: RwLock::new(None),
            outbox,
            jobs: Mutex::new(HashMap::new()),
            busy: Mutex::new(None),
            status: Mutex::new(LinkStatus::default()),
            shutdown,
            rt: runtime.handle().clone(),
            metrics: metrics::MetricsState::new(config_stall_threshold),
            autopilot: Default::default(),
        });
        let dir = inner.config.spool_dir.clone();
        runtime.spawn_blocking(move || match spool_dir::prepare(&dir) {
            Ok(()) => match spool_dir::sweep_stale(&dir) {
                0 => {}
                n => {
                    tracing::info!(count = n, dir = %dir.display(), "perf-agent: removed spool files of dead processes")
                }
            },
            Err(e) => tracing::warn!(error = %e, "perf-agent: spool directory unusable; captures will be refused"),
        });
        runtime.spawn(link::run(inner.clone(), outbox_rx));
        if inner.config.metrics_interval > Duration::ZERO {
            runtime.spawn(metrics::run(inner.clone()));
        }
        runtime.spawn(autopilot::watch(inner.clone()));
        Ok(Self { inner, runtime: Some(runtime) })
    }

    pub fn set_executor(&self, executor: Option<Arc<dyn Executor>>) {
        if let Ok(mut e) = self.inner.executor.write() {
            *e = executor;
        }
    }

    pub fn status(&self) -> LinkStatus {
        self.inner.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The JS thread is alive (called every 250 ms from an unref'd timer).
    pub fn js_beat(&self) {
        self.inner.metrics.js_beat();
    }

    /// The JS collector's latest sample (JSON text, bounded).
    pub fn report_js_metrics(&self, json: &str) -> Result<(), MetricsError> {
        if json.len() > metrics::MAX_JS_SAMPLE_BYTES {
            return Err(MetricsError::TooLarge { len: json.len(), max: metrics::MAX_JS_SAMPLE_BYTES });
        }
        self.inner.metrics.set_js_sample(serde_json::from_str(json)?);
        Ok(())
    }

    /// Handle for the executor to report on a command.
    pub fn job(&self, id: &str) -> Result<JobHandle, AgentError> {
        let job = self.inner.job(id).ok_or_else(|| AgentError::UnknownJob(id.to_string()))?;
        Ok(JobHandle { inner: self.inner.clone(), job })
    }

    /// Says goodbye to the hub, cancels uploads (their spool files are removed) and stops the
    /// runtime, waiting at most `timeout`.
    pub fn stop(mut self, timeout: Duration) {
        let _ = self.inner.shutdown.send(true);
        if let Some(rt) = self.runtime.take() {
            // Give the link a moment to send its goodbye before the runtime goes.
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
            rt.shutdown_timeout(timeout);
        }
        self.inner.discard_all_jobs();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            let _ = self.inner.shutdown.send(true);
            rt.shutdown_background();
        }
    }
}

impl Inner {
    fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs.lock().ok().and_then(|j| j.get(id).cloned())
    }

    pub(crate) fn active_job_ids(&self) -> Vec<String> {
        self.jobs.lock().map(|j| j.keys().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.status.lock().map(|s| s.connected).unwrap_or(false)
    }

    pub(crate) fn set_status(&self, f: impl FnOnce(&mut LinkStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Queues a message for the hub; dropped (with a log line) if the queue is full.
    pub(crate) fn send(&self, msg: Message) {
        if let Err(e) = self.outbox.try_send(msg) {
            tracing::warn!(error = %e, "perf-agent: outbox full, message dropped");
        }
    }

    fn ack(&self, command_id: &str, accepted: bool, error: Option<String>, estimate: Option<SnapshotEstimate>) {
        self.send(Message::Ack(Ack { command_id: command_id.to_string(), accepted, error, estimate }));
    }

    fn has_executor(&self) -> bool {
        self.executor.read().map(|e| e.is_some()).unwrap_or(false)
    }

    /// A command from the hub: refuse it or hand it to the executor. The inspector worker
    /// registers a moment after the link is up (it has to boot); a command arriving in that
    /// window waits for it briefly instead of being refused.
    pub(crate) fn handle_command(self: &Arc<Self>, cmd: perf_protocol::Command) {
        let needs_worker = cmd.kind.capture().executor == perf_protocol::Executor::InspectorWorker;
        if needs_worker && !self.has_executor() {
            let inner = self.clone();
            self.rt.spawn(async move {
                let started = std::time::Instant::now();
                while !inner.has_executor() && started.elapsed() < EXECUTOR_WAIT {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                inner.dispatch_or_refuse(cmd);
            });
            return;
        }
        self.dispatch_or_refuse(cmd);
    }

    fn dispatch_or_refuse(self: &Arc<Self>, cmd: perf_protocol::Command) {
        // The id names spool files: only the hub's own id form is accepted.
        if !perf_protocol::is_valid_id(&cmd.id) {
            tracing::warn!(command = ?cmd.id, "perf-agent: command with a malformed id refused");
            self.ack(&cmd.id, false, Some("malformed command id".into()), None);
            return;
        }
        if let Err(reason) = self.try_dispatch(&cmd) {
            tracing::warn!(command = %cmd.id, reason, "perf-agent: command refused");
            self.ack(&cmd.id, false, Some(reason), None);
        }
    }

    fn try_dispatch(self: &Arc<Self>, cmd: &perf_protocol::Command) -> Result<(), String> {
        if !self.config.capabilities.iter().any(|c| c == cmd.kind.name()) {
            return Err(format!("this process does not support {}", cmd.kind.name()));
        }
        // perf runs in a helper process started from here; everything else in the inspector worker.
        let executor = match &cmd.kind {
            CommandKind::PerfFlamegraph { .. } => {
                if self.config.perf_helper.is_empty() {
                    return Err("no perf helper configured for this process".into());
                }
                None
            }
            _ => Some(
                self.executor
                    .read()
                    .ok()
                    .and_then(|e| e.clone())
                    .ok_or("the agent's inspector worker is not running")?,
            ),
        };
        {
            let mut busy = self.busy.lock().map_err(|_| "agent state poisoned")?;
            if let Some(current) = busy.as_ref() {
                return Err(format!(
                    "busy: command {current} is still capturing; one heavy command at a time per process"
                ));
            }
            *busy = Some(cmd.id.clone());
        }
        let main_blocked = self.metrics.is_blocked();
        let spec = JobSpec { id: cmd.id.clone(), kind: cmd.kind.clone(), force: cmd.force, main_blocked };
        let spool = match self.open_spool(&spec) {
            Ok(s) => s,
            Err(e) => {
                self.release_busy(&cmd.id);
                return Err(e);
            }
        };
        let job = Arc::new(Job::new(spec.clone(), cmd.upload_token.clone(), spool));
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(cmd.id.clone(), job.clone());
        }
        let dispatched = match (executor, &cmd.kind) {
            (Some(executor), _) => executor.dispatch(spec),
            (None, CommandKind::PerfFlamegraph { seconds, frequency }) => {
                self.start_perf(job.clone(), *seconds, frequency.unwrap_or(perf_job::DEFAULT_FREQUENCY));
                Ok(())
            }
            (None, _) => Err("no executor".to_string()),
        };
        if let Err(e) = dispatched {
            self.drop_job(&cmd.id);
            job.discard();
            return Err(format!("cannot start the capture: {e}"));
        }
        // Some kinds are acknowledged after the executor's memory preflight instead.
        if cmd.kind.capture().ack == AckPoint::OnDispatch {
            self.ack(&cmd.id, true, None, None);
        }
        Ok(())
    }

    /// A private spool file for the command, bounded by the room the spool may still use.
    fn open_spool(&self, spec: &JobSpec) -> Result<spool::SpoolWriter, String> {
        let dir = &self.config.spool_dir;
        spool_dir::prepare(dir).map_err(|e| e.to_string())?;
        let limit =
            spool_dir::room_for(dir, MIN_CAPTURE_ROOM, self.config.max_spool_bytes).map_err(|e| e.to_string())?;
        spool::SpoolWriter::create(dir, &self.spool_name(spec), limit).map_err(|e| e.to_string())
    }

    /// The spool file of a command: pid and id keep processes sharing a spool dir apart.
    fn spool_name(&self, spec: &JobSpec) -> String {
        format!("{}-{}.{}", self.config.pid, spec.id, spec.kind.file_extension())
    }

    /// The heavy command capturing now if it pauses the JS thread (a heap snapshot): a stall
    /// meanwhile is the agent's own doing, and is reported so (no rule fires on it).
    pub(crate) fn pausing_capture(&self) -> Option<String> {
        let id = self.busy.lock().ok()?.clone()?;
        let job = self.job(&id)?;
        matches!(job.spec.kind, CommandKind::HeapSnapshot).then_some(id)
    }

    /// The hub's stall rules for this process (the whole list, replacing the last).
    pub(crate) fn set_rules(&self, rules: Vec<perf_protocol::AgentRule>) {
        tracing::debug!(count = rules.len(), "perf-agent: stall rules from the hub");
        self.autopilot.set_rules(rules);
    }

    /// The hub did not take a capture the agent started on its own: drop it (nothing uploads).
    pub(crate) fn cancel(&self, command_id: &str, reason: &str) {
        if let Some(job) = self.job(command_id) {
            tracing::info!(command = %command_id, reason, "perf-agent: capture cancelled by the hub");
            job.discard();
            self.drop_job(command_id);
        }
    }

    fn release_busy(&self, id: &str) {
        if let Ok(mut busy) = self.busy.lock() {
            if busy.as_deref() == Some(id) {
                *busy = None;
            }
        }
    }

    fn drop_job(&self, id: &str) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(id);
        }
        self.release_busy(id);
    }

    fn discard_all_jobs(&self) {
        let jobs: Vec<_> = self.jobs.lock().map(|mut j| j.drain().map(|(_, v)| v).collect()).unwrap_or_default();
        for job in jobs {
            job.discard();
            // Uploads in flight own a finished spool: remove it too, nobody will resume it.
            let _ = std::fs::remove_file(self.config.spool_dir.join(self.spool_name(&job.spec)));
        }
    }

    fn start_perf(self: &Arc<Self>, job: Arc<Job>, seconds: u32, frequency: u32) {
        let req = perf_job::PerfRequest {
            helper: self.config.perf_helper.clone(),
            pid: self.config.pid,
            seconds,
            frequency,
            work_dir: self.config.spool_dir.join(format!("{}-{}-perf", self.config.pid, job.spec.id)),
        };
        let handle = JobHandle { inner: self.clone(), job };
        self.rt.spawn(perf_job::run(handle, req, self.shutdown.subscribe()));
    }

    fn start_upload(self: &Arc<Self>, job: Arc<Job>, file: spool::SpoolFile) {
        let inner = self.clone();
        self.rt.spawn(async move {
            let upload = upload::UploadJob {
                transport: inner.transport.clone(),
                command_id: job.spec.id.clone(),
                token: job.upload_token.clone(),
                file,
            };
            let backoff = backoff::Backoff::new(inner.config.reconnect_min, inner.config.reconnect_max);
            let result = upload::upload_with_retry(&upload, backoff, inner.shutdown.subscribe()).await;
            match &result {
                Ok(()) => tracing::info!(artifact = %upload.command_id, size = upload.file.size, "perf-agent: artifact uploaded"),
                Err(e) => tracing::error!(artifact = %upload.command_id, error = %e, "perf-agent: upload abandoned"),
            }
            let _ = tokio::fs::remove_file(&upload.file.path).await;
            if let Ok(mut jobs) = inner.jobs.lock() {
                jobs.remove(&upload.command_id);
            }
        });
    }
}

/// The executor's side of one command.
pub struct JobHandle {
    inner: Arc<Inner>,
    job: Arc<Job>,
}

impl JobHandle {
    pub fn spec(&self) -> &JobSpec {
        &self.job.spec
    }

    /// Heap snapshots only: decides from the live heap whether the snapshot is safe, and
    /// acknowledges the command either way. `Err` means "don't take it" (already reported).
    pub fn preflight_snapshot(&self, heap_used_bytes: u64) -> Result<SnapshotEstimate, JobError> {
        let cost = headroom::SnapshotCost::for_node(&self.inner.config.node_version);
        let est = cost.estimate(heap_used_bytes, headroom::memory_headroom());
        let id = &self.job.spec.id;
        let verdict = cost.check(&est, self.job.spec.force).and_then(|()| {
            spool_dir::room_for(&self.inner.config.spool_dir, est.file_bytes, self.inner.config.max_spool_bytes)
                .map(|_| ())
                .map_err(|e| format!("refusing heap snapshot: {e}"))
        });
        match verdict {
            Ok(()) => {
                self.inner.ack(id, true, None, Some(est.clone()));
                Ok(est)
            }
            Err(reason) => {
                self.inner.ack(id, false, Some(reason.clone()), Some(est));
                self.job.discard();
                self.inner.drop_job(id);
                Err(JobError::Refused(reason))
            }
        }
    }

    /// Heap snapshots written by V8 itself (`v8.writeHeapSnapshot` on the main thread): the
    /// path of this command's private, still empty spool file. The snapshot is sized and
    /// checksummed from the file in [`JobHandle::finish`].
    pub fn snapshot_target(&self) -> Result<std::path::PathBuf, JobError> {
        if !matches!(self.job.spec.kind, CommandKind::HeapSnapshot) {
            return Err(JobError::NotASnapshot(self.job.spec.id.clone()));
        }
        self.job.hand_over_file()
    }

    /// Bytes in the spool so far (progress of a capture written outside the agent).
    pub fn spooled_bytes(&self) -> u64 {
        self.job.spooled_bytes()
    }

    pub fn write_chunk(&self, chunk: &[u8]) -> Result<(), JobError> {
        self.job.write(chunk)
    }

    pub fn progress(&self, stage: &str, done: u64, total: u64) {
        if self.job.progress_due() || (total > 0 && done >= total) {
            self.inner.send(Message::Progress(Progress {
                command_id: self.job.spec.id.clone(),
                stage: stage.to_string(),
                done,
                total,
            }));
        }
    }

    /// The capture is complete: report size and checksum, free the busy slot, upload.
    pub fn finish(&self, notes: Vec<String>) -> Result<(), JobError> {
        let id = self.job.spec.id.clone();
        let file = match self.job.take_spool() {
            Ok(f) => f,
            Err(e) => {
                self.fail(&e.to_string());
                return Err(e);
            }
        };
        self.inner.send(Message::CommandResult(CommandResult {
            command_id: id.clone(),
            outcome: Outcome::Captured { size: file.size, sha256: file.sha256.clone(), notes },
        }));
        self.inner.release_busy(&id);
        self.inner.start_upload(self.job.clone(), file);
        Ok(())
    }

    /// The capture failed: report why and clean up.
    pub fn fail(&self, error: &str) {
        let id = self.job.spec.id.clone();
        self.job.discard();
        self.inner.drop_job(&id);
        self.inner.send(Message::CommandResult(CommandResult {
            command_id: id,
            outcome: Outcome::Failed { error: error.to_string() },
        }));
    }
}
