//! Renders: what the hub computes from stored artifacts — SVG flame graphs of profiles and
//! heap analyses ([`crate::analysis`]) — each done once, off the async threads, and cached
//! beside the artifact in its store (a file on local disk, an object in the bucket).

use crate::analysis::Analyses;
use crate::storage::{Storage, StorageError};
use crate::store::{ArtifactRecord, ArtifactStatus};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("a {0} has no flame graph")]
    NoFlamegraph(String),
    #[error("artifact is {0}, not ready")]
    NotReady(&'static str),
    #[error("cannot render a flame graph: {0}")]
    Render(String),
    #[error("render i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

#[derive(Default)]
pub struct Renders {
    /// Heap analysis jobs in flight (results are cached on disk).
    pub analyses: Analyses,
    /// Flame graph renders are CPU-heavy: one at a time.
    flame_lock: tokio::sync::Mutex<()>,
}

impl Renders {
    /// The SVG flame graph of a profile artifact, rendered on first request and cached.
    pub async fn flamegraph_svg(&self, storage: &Storage, a: &ArtifactRecord) -> Result<Vec<u8>, RenderError> {
        if !perf_protocol::capture_kind(&a.kind).is_some_and(|k| k.flamegraph) {
            return Err(RenderError::NoFlamegraph(a.kind.clone()));
        }
        if a.status != ArtifactStatus::Ready {
            return Err(RenderError::NotReady(a.status.as_str()));
        }
        let name = format!("{}.svg", a.id);
        if let Some(svg) = storage.read_small(&name).await {
            return Ok(svg);
        }
        let _guard = self.flame_lock.lock().await;
        if let Some(svg) = storage.read_small(&name).await {
            return Ok(svg);
        }
        // The profile streams from its store into the folder (no copy of it on disk).
        let size = storage.size(&a.file_name).await?;
        let body = tokio_util::io::StreamReader::new(storage.read(&a.file_name, 0, size).await?);
        let input = tokio_util::io::SyncIoBridge::new(body);
        let title = format!("{} of {} ({})", a.kind.replace('_', " "), a.app, a.created_at);
        let svg = tokio::task::spawn_blocking(move || render_flamegraph(input, title))
            .await
            .map_err(|e| RenderError::Render(e.to_string()))?
            .map_err(|e| RenderError::Render(e.to_string()))?;
        storage.write_small(&name, svg.clone()).await?;
        Ok(svg)
    }
}

fn render_flamegraph(input: impl std::io::Read, title: String) -> Result<Vec<u8>, perf_flamegraph::FlameError> {
    let fold = perf_flamegraph::fold_reader(input, None)?;
    if fold.summary.total == 0 {
        return Err(perf_flamegraph::FlameError::NoSamples);
    }
    let opts = perf_flamegraph::RenderOptions {
        title: Some(title),
        count_name: Some(fold.count_name.to_string()),
        ..Default::default()
    };
    let mut svg = Vec::new();
    perf_flamegraph::render_svg_str(&String::from_utf8_lossy(&fold.folded), &mut svg, fold.format, &opts)?;
    Ok(svg)
}
