//! `perf_flamegraph` commands: run in a helper child process (so perf's CPU and memory never
//! land in the app), which records `perf record -g -p PID`, folds `perf script` and writes
//! `result.json`. The folded stacks become the artifact; the hub renders the SVG from them.

use crate::JobHandle;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Bytes of the helper's stderr kept for error messages.
const STDERR_KEEP: usize = 8 * 1024;
/// On top of the capture itself: `perf script` and folding.
const HELPER_GRACE: Duration = Duration::from_secs(180);
pub const DEFAULT_FREQUENCY: u32 = 99;

pub(crate) struct PerfRequest {
    pub helper: Vec<String>,
    pub pid: u32,
    pub seconds: u32,
    pub frequency: u32,
    pub work_dir: PathBuf,
}

/// Runs the capture and finishes or fails the job accordingly.
pub(crate) async fn run(handle: JobHandle, req: PerfRequest, cancel: tokio::sync::watch::Receiver<bool>) {
    let result = capture(&handle, &req, cancel).await;
    let _ = tokio::fs::remove_dir_all(&req.work_dir).await;
    match result {
        Ok(notes) => {
            if let Err(e) = handle.finish(notes) {
                tracing::warn!(error = %e, "perf-agent: perf capture could not be finished");
            }
        }
        Err(e) => handle.fail(&e),
    }
}

async fn capture(
    handle: &JobHandle,
    req: &PerfRequest,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<String>, String> {
    let (program, args) = req.helper.split_first().ok_or("no perf helper configured")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .args(["--pid", &req.pid.to_string(), "--seconds", &req.seconds.to_string()])
        .args(["--frequency", &req.frequency.to_string(), "--out-dir"])
        .arg(&req.work_dir)
        // The helper is a plain process: no agent of its own, no app preloads.
        .env_remove("NODE_OPTIONS")
        .env_remove("PERF_AGENT_HUB")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the perf helper ({program}): {e}"))?;
    let stderr = tokio::spawn(read_bounded(child.stderr.take()));
    let started = Instant::now();
    let limit = Duration::from_secs(req.seconds as u64) + HELPER_GRACE;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.map_err(|e| format!("perf helper: {e}"))?,
            _ = tick.tick() => {
                let elapsed = started.elapsed();
                handle.progress("perf", elapsed.as_secs().min(req.seconds as u64), req.seconds as u64);
                if elapsed > limit {
                    let _ = child.kill().await;
                    return Err(format!("perf helper did not finish within {} s", limit.as_secs()));
                }
            }
            _ = cancel.changed() => {
                let _ = child.kill().await;
                return Err("the agent stopped during the capture".into());
            }
        }
    };
    let stderr = stderr.await.unwrap_or_default();
    let result = read_result(&req.work_dir)
        .await
        .map_err(|e| format!("perf helper exited ({status}) without a result ({e}); stderr: {}", stderr.trim()))?;
    if result.get("ok").and_then(|v| v.as_bool()) != Some(true) {
        let msg = result.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("perf capture failed");
        return Err(msg.to_string());
    }
    stream_into_job(handle, &req.work_dir.join("perf.folded")).await?;
    Ok(notes_of(&result))
}

async fn read_bounded(stream: Option<tokio::process::ChildStderr>) -> String {
    let Some(mut s) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    // Keep reading to the end (a full pipe would stall the helper) but keep only a bounded head.
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = STDERR_KEEP.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

async fn read_result(dir: &Path) -> Result<serde_json::Value, String> {
    let bytes = tokio::fs::read(dir.join("result.json")).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn notes_of(result: &serde_json::Value) -> Vec<String> {
    result
        .get("notes")
        .and_then(|n| n.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

async fn stream_into_job(handle: &JobHandle, path: &Path) -> Result<(), String> {
    let mut f = tokio::fs::File::open(path).await.map_err(|e| format!("reading folded stacks: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(|e| format!("reading folded stacks: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        handle.write_chunk(&buf[..n]).map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_strings_only() {
        let v = serde_json::json!({"ok": true, "notes": ["a", 1, "b"]});
        assert_eq!(notes_of(&v), vec!["a".to_string(), "b".to_string()]);
        assert!(notes_of(&serde_json::json!({})).is_empty());
    }
}
