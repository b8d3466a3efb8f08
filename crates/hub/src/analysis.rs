//! Heap snapshot analysis in the hub: `/api/artifacts/{id}/analysis` and `/api/artifacts/{a}/diff/{b}`.
//!
//! Analysis runs off the request path, one at a time (a 1 GB snapshot needs ~1.5 GB of memory),
//! on a blocking thread. The first request starts it and gets `202` with progress; later ones
//! get the progress, then the result, which is cached next to the artifact as JSON so it is
//! computed once per artifact (and survives restarts).

use crate::hub::Hub;
use crate::store::{ArtifactRecord, ArtifactStatus};
use perf_heap_analysis::{AnalyzeOptions, Progress};
use std::collections::HashMap;
use std::path::PathBuf;
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
    let key = a.id.clone();
    let out = hub.artifacts.blobs().final_path(&format!("{}.analysis.json", a.id));
    let input = hub.artifacts.blobs().final_path(&a.file_name);
    lookup_or_start(hub, key, out, move |progress| {
        let r = perf_heap_analysis::analyze_path(&input, &AnalyzeOptions::default(), progress)?;
        Ok(serde_json::to_vec(&r)?)
    })
    .await
}

/// The diff of two snapshots of one process (`a` taken before `b`).
pub async fn diff(hub: &Arc<Hub>, a: &ArtifactRecord, b: &ArtifactRecord) -> Lookup {
    let key = format!("{}-{}", a.id, b.id);
    let out = hub.artifacts.blobs().final_path(&format!("diff-{key}.json"));
    let (pa, pb) = (hub.artifacts.blobs().final_path(&a.file_name), hub.artifacts.blobs().final_path(&b.file_name));
    lookup_or_start(hub, key, out, move |progress| {
        let r = perf_heap_analysis::diff_paths(&pa, &pb, &AnalyzeOptions::default(), progress)?;
        Ok(serde_json::to_vec(&r)?)
    })
    .await
}

type Work = Box<dyn FnOnce(&mut dyn FnMut(Progress)) -> Result<Vec<u8>, AnalysisError> + Send>;

#[derive(Debug, thiserror::Error)]
enum AnalysisError {
    #[error("{0}")]
    Heap(#[from] perf_heap_analysis::HeapError),
    #[error("encoding the result: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing the result: {0}")]
    Io(#[from] std::io::Error),
}

async fn lookup_or_start(
    hub: &Arc<Hub>,
    key: String,
    out: PathBuf,
    work: impl FnOnce(&mut dyn FnMut(Progress)) -> Result<Vec<u8>, AnalysisError> + Send + 'static,
) -> Lookup {
    if let Ok(bytes) = tokio::fs::read(&out).await {
        return Lookup::Ready(bytes);
    }
    match hub.renders.analyses.get(&key) {
        Some(JobState::Failed { error }) => return Lookup::Failed(error),
        Some(state) => return Lookup::Pending(state),
        None => {}
    }
    hub.renders.analyses.set(&key, JobState::Queued);
    tokio::spawn(run_job(hub.clone(), key, out, Box::new(work)));
    Lookup::Pending(JobState::Queued)
}

async fn run_job(hub: Arc<Hub>, key: String, out: PathBuf, work: Work) {
    let Ok(_permit) = hub.renders.analyses.slot.acquire().await else { return };
    let h = hub.clone();
    let k = key.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut last = std::time::Instant::now() - std::time::Duration::from_secs(1);
        let mut progress = |p: Progress| {
            // Progress arrives per chunk read: record it a few times a second.
            if last.elapsed().as_millis() >= 200 || p.done == p.total {
                last = std::time::Instant::now();
                let stage =
                    serde_json::to_value(p.stage).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                h.renders
                    .analyses
                    .set(&k, JobState::Running { stage, snapshot: p.snapshot, done: p.done, total: p.total });
            }
        };
        let bytes = work(&mut progress)?;
        write_atomically(&out, &bytes)?;
        Ok::<(), AnalysisError>(())
    })
    .await;
    match result {
        Ok(Ok(())) => {
            if let Ok(mut j) = hub.renders.analyses.jobs.lock() {
                j.remove(&key);
            }
            tracing::info!(key, "heap analysis done");
        }
        Ok(Err(e)) => {
            tracing::warn!(key, error = %e, "heap analysis failed");
            hub.renders.analyses.set(&key, JobState::Failed { error: e.to_string() });
        }
        Err(e) => hub.renders.analyses.set(&key, JobState::Failed { error: format!("analysis crashed: {e}") }),
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // 0600: an analysis shows what the heap held (issue 11, finding 3).
    crate::private_files::create_private(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
