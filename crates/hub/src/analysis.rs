//! Heap snapshot analysis in the hub: `/api/artifacts/{id}/analysis` and `/api/artifacts/{a}/diff/{b}`.
//!
//! Analysis runs off the request path, one at a time (a 1 GB snapshot needs ~1.5 GB of memory),
//! on a blocking thread. The first request starts it and gets `202` with progress; later ones
//! get the progress, then the result, which is cached next to the artifact as JSON so it is
//! computed once per artifact (and survives restarts), in the artifact's store. A snapshot
//! streams from its store into the analyser; a diff reads two files, so from S3 both are first
//! copied to private temporary files in `DATA_DIR/cache/` (removed when the job ends).

use crate::hub::Hub;
use crate::store::{ArtifactRecord, ArtifactStatus};
use perf_heap_analysis::{AnalyzeOptions, Progress};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a job stands, as the API reports it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running { stage: String, snapshot: u8, done: u64, total: u64 },
    Failed { error: String },
}

/// What a request for an analysis gets.
pub enum Lookup {
    /// The cached JSON result.
    Ready(Vec<u8>),
    /// Still working (or just started).
    Pending(JobState),
    Failed(String),
}

pub struct Analyses {
    jobs: Mutex<HashMap<String, JobState>>,
    /// One analysis at a time: they are memory-hungry.
    slot: tokio::sync::Semaphore,
}

impl Default for Analyses {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyses {
    pub fn new() -> Self {
        Self { jobs: Mutex::new(HashMap::new()), slot: tokio::sync::Semaphore::new(1) }
    }

    fn set(&self, key: &str, state: JobState) {
        if let Ok(mut j) = self.jobs.lock() {
            j.insert(key.to_string(), state);
        }
    }

    fn get(&self, key: &str) -> Option<JobState> {
        self.jobs.lock().ok().and_then(|j| j.get(key).cloned())
    }
}

/// Checks that an artifact is a ready heap snapshot.
pub fn check_snapshot(a: &ArtifactRecord) -> Result<(), String> {
    if !perf_protocol::capture_kind(&a.kind).is_some_and(|k| k.heap_analysis) {
        return Err(format!("artifact {} is a {}, not a heap snapshot", a.id, a.kind));
    }
    if a.status != ArtifactStatus::Ready {
        return Err(format!("artifact {} is {}, not ready", a.id, a.status.as_str()));
    }
    Ok(())
}

/// The analysis of one snapshot: cached result, or progress of the job (started if needed).
pub async fn analysis(hub: &Arc<Hub>, a: &ArtifactRecord) -> Lookup {
    lookup_or_start(hub, a.id.clone(), format!("{}.analysis.json", a.id), Job::Analyze(Box::new(a.clone()))).await
}

/// The diff of two snapshots of one process (`a` taken before `b`).
pub async fn diff(hub: &Arc<Hub>, a: &ArtifactRecord, b: &ArtifactRecord) -> Lookup {
    let key = format!("{}-{}", a.id, b.id);
    let out = format!("diff-{key}.json");
    lookup_or_start(hub, key, out, Job::Diff(Box::new((a.clone(), b.clone())))).await
}

/// What a job computes.
enum Job {
    Analyze(Box<ArtifactRecord>),
    Diff(Box<(ArtifactRecord, ArtifactRecord)>),
}

#[derive(Debug, thiserror::Error)]
enum AnalysisError {
    #[error("{0}")]
    Heap(#[from] perf_heap_analysis::HeapError),
    #[error("encoding the result: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("analysis crashed: {0}")]
    Crashed(String),
}

async fn lookup_or_start(hub: &Arc<Hub>, key: String, out: String, job: Job) -> Lookup {
    if let Some(bytes) = hub.artifacts.storage().read_small(&out).await {
        return Lookup::Ready(bytes);
    }
    match hub.renders.analyses.get(&key) {
        Some(JobState::Failed { error }) => return Lookup::Failed(error),
        Some(state) => return Lookup::Pending(state),
        None => {}
    }
    hub.renders.analyses.set(&key, JobState::Queued);
    tokio::spawn(run_job(hub.clone(), key, out, job));
    Lookup::Pending(JobState::Queued)
}

async fn run_job(hub: Arc<Hub>, key: String, out: String, job: Job) {
    let Ok(_permit) = hub.renders.analyses.slot.acquire().await else { return };
    let result = compute(&hub, &key, job).await;
    let result = match result {
        Ok(bytes) => hub.artifacts.storage().write_small(&out, bytes).await.map_err(AnalysisError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            if let Ok(mut j) = hub.renders.analyses.jobs.lock() {
                j.remove(&key);
            }
            tracing::info!(key, "heap analysis done");
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "heap analysis failed");
            hub.renders.analyses.set(&key, JobState::Failed { error: e.to_string() });
        }
    }
}

/// Runs `job` on a blocking thread, reporting progress a few times a second.
async fn compute(hub: &Arc<Hub>, key: &str, job: Job) -> Result<Vec<u8>, AnalysisError> {
    let storage = hub.artifacts.storage();
    let (h, k) = (hub.clone(), key.to_string());
    let mut last = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let progress = move |p: Progress| {
        // Progress arrives per chunk read: record it a few times a second.
        if last.elapsed().as_millis() >= 200 || p.done == p.total {
            last = std::time::Instant::now();
            let stage =
                serde_json::to_value(p.stage).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            h.renders.analyses.set(&k, JobState::Running { stage, snapshot: p.snapshot, done: p.done, total: p.total });
        }
    };
    let opts = AnalyzeOptions::default();
    let task = match job {
        Job::Analyze(a) => {
            let size = storage.size(&a.file_name).await?;
            let body = tokio_util::io::StreamReader::new(storage.read(&a.file_name, 0, size).await?);
            let reader = std::io::BufReader::with_capacity(1 << 20, tokio_util::io::SyncIoBridge::new(body));
            tokio::task::spawn_blocking(move || {
                let mut progress = progress;
                let r = perf_heap_analysis::analyze_reader(reader, size, &opts, &mut progress)?;
                Ok(serde_json::to_vec(&r)?)
            })
        }
        Job::Diff(pair) => {
            let (a, b) = *pair;
            let (fa, fb) = (storage.local_file(&a.file_name).await?, storage.local_file(&b.file_name).await?);
            tokio::task::spawn_blocking(move || {
                let mut progress = progress;
                let r = perf_heap_analysis::diff_paths(fa.path(), fb.path(), &opts, &mut progress)?;
                Ok(serde_json::to_vec(&r)?)
            })
        }
    };
    task.await.map_err(|e| AnalysisError::Crashed(e.to_string()))?
}
