//! Renders: what the hub computes from stored artifacts — SVG flame graphs of profiles and
//! heap analyses ([`crate::analysis`]) — each done once, off the async threads, and cached on
//! disk beside the artifact.

use crate::analysis::Analyses;
use crate::blobs::BlobStore;
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
    pub async fn flamegraph_svg(&self, blobs: &BlobStore, a: &ArtifactRecord) -> Result<Vec<u8>, RenderError> {
        if !perf_protocol::capture_kind(&a.kind).is_some_and(|k| k.flamegraph) {
            return Err(RenderError::NoFlamegraph(a.kind.clone()));
        }
        if a.status != ArtifactStatus::Ready {
            return Err(RenderError::NotReady(a.status.as_str()));
        }
        let svg = blobs.final_path(&format!("{}.svg", a.id));
        if tokio::fs::metadata(&svg).await.is_err() {
            let _guard = self.flame_lock.lock().await;
            if tokio::fs::metadata(&svg).await.is_err() {
                let input = blobs.final_path(&a.file_name);
                let title = format!("{} of {} ({})", a.kind.replace('_', " "), a.app, a.created_at);
                let out = svg.clone();
                tokio::task::spawn_blocking(move || render_flamegraph(&input, &out, title))
                    .await
                    .map_err(|e| RenderError::Render(e.to_string()))?
                    .map_err(|e| RenderError::Render(e.to_string()))?;
            }
        }
        Ok(tokio::fs::read(&svg).await?)
    }
}

fn render_flamegraph(
    input: &std::path::Path,
    output: &std::path::Path,
    title: String,
) -> Result<u64, perf_flamegraph::FlameError> {
    let fold = perf_flamegraph::fold_file(input)?;
    let opts = perf_flamegraph::RenderOptions { title: Some(title), ..Default::default() };
    let written = perf_flamegraph::write_svg(&fold, output, &opts)?;
    // The renderer creates the file under the hub's umask (077); make the mode explicit anyway.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(crate::private_files::FILE_MODE);
    if let Err(e) = std::fs::set_permissions(output, mode) {
        tracing::warn!(path = %output.display(), error = %e, "cannot make the flame graph private");
    }
    Ok(written)
}
