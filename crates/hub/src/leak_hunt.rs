//! The leak hunt: `{"kind": "leak_hunt", "snapshots": N, "interval_secs": S}` on a process.
//!
//! The hub orchestrates it: it creates the `leak_report` artifact at once (`running`: what the
//! command answers), then takes N heap snapshots S seconds apart — each its own `heap_snapshot`
//! artifact, sent like an operator's (the agent's headroom preflight guards each; the hunt holds
//! the process's heavy-command slot only while one of them runs) — and finally analyses them
//! ([`perf_heap_analysis::leak`]) into the report: `{"snapshots": [ids], "suspects": [...]}`.
//!
//! It stops, keeping the snapshots taken, when the report leaves `running`: cancelled
//! (`POST /api/artifacts/{id}/cancel`, or a delete of the report), or failed because the process
//! disconnected (the hub fails every unfinished artifact of a process whose link goes), or a
//! snapshot failed. The report's `progress` lists the snapshots so far.

use crate::artifacts::Transition;
use crate::commands::{CommandError, Requester};
use crate::hub::Hub;
use crate::ids;
use crate::store::{ArtifactRecord, ArtifactStatus};
use perf_protocol::CommandKind;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

pub const SNAPSHOTS: std::ops::RangeInclusive<u32> = 2..=10;
pub const INTERVAL_SECS: std::ops::RangeInclusive<u32> = 1..=3600;
/// Longest a hunt waits for one snapshot to be stored.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3600);
const POLL: Duration = Duration::from_millis(250);

/// Checks a request's parameters, with a message a human can act on.
pub fn validate(snapshots: Option<u32>, interval_secs: Option<u32>) -> Result<(u32, u32), String> {
    let n = snapshots.unwrap_or(3);
    let s = interval_secs.unwrap_or(30);
    if !SNAPSHOTS.contains(&n) {
        return Err(format!("snapshots must be between 2 and 10, got {n}"));
    }
    if !INTERVAL_SECS.contains(&s) {
        return Err(format!("interval_secs must be between 1 and 3600, got {s}"));
    }
    Ok((n, s))
}

impl Hub {
    /// Starts a hunt and answers its `leak_report` artifact (`running`).
    pub async fn start_leak_hunt(
        self: &Arc<Self>,
        process_id: &str,
        snapshots: u32,
        interval_secs: u32,
        actor: &str,
    ) -> Result<ArtifactRecord, CommandError> {
        let internal = |e: &dyn std::fmt::Display| CommandError::Internal(e.to_string());
        let process =
            self.processes.get(process_id).await.map_err(|e| internal(&e))?.ok_or(CommandError::NoSuchProcess)?;
        if !process.capabilities.iter().any(|c| c == "heap_snapshot") {
            return Err(CommandError::Unsupported("process does not support heap_snapshot".into()));
        }
        if !self.processes.is_connected(process_id) {
            return Err(CommandError::NotConnected);
        }
        let id = ids::new_id().map_err(|e| internal(&e))?;
        // Written by the hub itself: no upload stream, so the token is a random one nobody holds.
        let token = ids::new_secret().map_err(|e| internal(&e))?;
        let mut report = ArtifactRecord::pending(
            &id,
            (&process.id, &process.app),
            "leak_report",
            // Not `ID.json`: that name is the artifact's sidecar in the store.
            "leak.json",
            actor,
            crate::artifacts::hash_upload_token(&token),
        );
        report.params = serde_json::json!({"snapshots": snapshots, "interval_secs": interval_secs});
        self.artifacts.create(report).await.map_err(|e| internal(&e))?;
        let t = Transition::Accepted { estimate: None };
        let report = self.artifacts.transition(&id, None, t).await.map_err(|e| internal(&e))?;
        let detail = serde_json::json!({"kind": "leak_hunt", "snapshots": snapshots, "interval_secs": interval_secs, "artifact": id});
        self.audit.record(actor, "command.request", process_id, detail, "accepted").await;
        let (hub, pid, actor) = (self.clone(), process_id.to_string(), actor.to_string());
        tokio::spawn(async move { hunt(hub, pid, id, snapshots, interval_secs, actor).await });
        Ok(report)
    }
}

/// Whether the report is still `running` (not cancelled, deleted or failed meanwhile).
async fn still_running(hub: &Hub, report: &str) -> bool {
    matches!(hub.artifacts.get(report).await, Ok(Some(a)) if a.status == ArtifactStatus::Running)
}

async fn hunt(hub: Arc<Hub>, process_id: String, report: String, n: u32, interval_secs: u32, actor: String) {
    let mut taken: Vec<ArtifactRecord> = Vec::new();
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(interval_secs))).await;
        }
        if !still_running(&hub, &report).await {
            return tracing::info!(%report, taken = taken.len(), "leak hunt stopped");
        }
        let mut who = Requester::operator(&actor);
        who.detail = serde_json::json!({"leak_hunt": report});
        let snapshot = match take_snapshot(&hub, &process_id, &report, who).await {
            Ok(a) => a,
            Err(why) => {
                let error = format!("snapshot {} of {n}: {why} (snapshots kept: {})", i + 1, ids_of(&taken).join(", "));
                return hub.artifacts.fail(&report, &error).await;
            }
        };
        taken.push(snapshot);
        let progress =
            serde_json::json!({"stage": "snapshots", "done": i + 1, "total": n, "snapshots": ids_of(&taken)});
        hub.artifacts.transition_or_log(&report, None, Transition::Progress { progress }).await;
    }
    if !still_running(&hub, &report).await {
        return;
    }
    if let Err(e) = analyse(&hub, &report, &taken).await {
        hub.artifacts.fail(&report, &format!("analysis failed: {e} (snapshots kept)")).await;
    }
}

fn ids_of(a: &[ArtifactRecord]) -> Vec<String> {
    a.iter().map(|a| a.id.clone()).collect()
}

/// One guarded snapshot, waited for until stored.
async fn take_snapshot(hub: &Hub, process_id: &str, report: &str, who: Requester) -> Result<ArtifactRecord, String> {
    let (artifact, refusal) =
        hub.request_command_as(process_id, CommandKind::HeapSnapshot, false, who).await.map_err(|e| e.to_string())?;
    if let Some(why) = refusal {
        return Err(format!("refused: {why}"));
    }
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(POLL).await;
        let a = hub.artifacts.get(&artifact.id).await.map_err(|e| e.to_string())?.ok_or("snapshot record gone")?;
        match a.status {
            ArtifactStatus::Ready => return Ok(a),
            // Failed (or deleted, once storage has that state).
            status if status.is_final() => return Err(a.error.unwrap_or_else(|| status.as_str().to_string())),
            _ if started.elapsed() > SNAPSHOT_TIMEOUT => return Err("no snapshot within an hour".into()),
            // Cancelled meanwhile: the snapshot in flight finishes and is kept.
            _ if !still_running(hub, report).await => return Err("the hunt was cancelled".into()),
            _ => {}
        }
    }
}

/// Analyses the snapshots (off the async threads) and stores the report.
async fn analyse(hub: &Hub, report: &str, snapshots: &[ArtifactRecord]) -> Result<(), String> {
    let storage = hub.artifacts.storage();
    // The analyser reads files: the stored ones on local disk, private temporary copies from S3
    // (removed when `files` drops).
    let mut files = Vec::with_capacity(snapshots.len());
    for a in snapshots {
        files.push(storage.local_file(&a.file_name).await.map_err(|e| e.reason())?);
    }
    let paths: Vec<_> = files.iter().map(|f| f.path().to_path_buf()).collect();
    let found = tokio::task::spawn_blocking(move || {
        perf_heap_analysis::hunt_paths(&paths, &perf_heap_analysis::AnalyzeOptions::default(), &mut |_| {})
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    drop(files);
    let doc = serde_json::json!({
        "snapshots": ids_of(snapshots),
        "suspects": found.suspects,
        "total_sizes": found.total_sizes,
    });
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
    let (size, sha256) = (bytes.len() as u64, hex::encode(sha2::Sha256::digest(&bytes)));
    // Same transitions as an upload: captured, stored (with its sidecar).
    let captured = Transition::Captured { size, sha256, notes: vec![] };
    let file_name = hub.artifacts.transition(report, None, captured).await.map_err(|e| e.to_string())?.file_name;
    storage.write_small(&file_name, bytes).await.map_err(|e| e.reason())?;
    let stored =
        hub.artifacts.transition(report, None, Transition::Stored { size }).await.map_err(|e| e.to_string())?;
    hub.artifacts.write_sidecar(&stored).await;
    hub.audit
        .record("hub", "artifact.stored", report, serde_json::json!({"size": size, "kind": "leak_report"}), "ok")
        .await;
    Ok(())
}
