//! Retention: ready artifacts older than `--retain-days`, and the oldest beyond
//! `--retain-max-gb` in total, are deleted ([`crate::artifacts::Artifacts::delete`], by
//! `retention`, audited); pinned ones are kept. Swept in the background.
//!
//! A hub that applies retention for the first time (a new hub, or one upgraded from a version
//! that kept everything) records when in `hub.db` and, for `retention_grace_ms` (24 h) from
//! then, only logs what it would delete: nobody loses months of artifacts to an upgrade
//! unannounced.

use crate::hub::Hub;
use crate::store::{ArtifactRecord, ArtifactStatus};
use std::time::{Duration, SystemTime};

/// What retention deletes, and why: `(id, reason)`, oldest first.
pub fn plan(
    artifacts: &[ArtifactRecord],
    now: SystemTime,
    retain_days: u64,
    max_bytes: Option<u64>,
) -> Vec<(String, String)> {
    let created = |a: &ArtifactRecord| humantime::parse_rfc3339_weak(&a.created_at).unwrap_or(now);
    let mut ready: Vec<&ArtifactRecord> = artifacts.iter().filter(|a| a.status == ArtifactStatus::Ready).collect();
    ready.sort_by_key(|a| created(a));
    let cutoff = (retain_days > 0).then(|| now - Duration::from_secs(retain_days.saturating_mul(86_400)));
    let mut total: u64 = ready.iter().map(|a| a.size.unwrap_or(0)).sum();
    let mut victims = Vec::new();
    for a in ready.iter().filter(|a| !a.pinned) {
        let reason = if cutoff.is_some_and(|c| created(a) < c) {
            format!("older than {retain_days} days (retention)")
        } else if max_bytes.is_some_and(|max| total > max) {
            let gb = max_bytes.unwrap_or(0) as f64 / 1e9;
            format!("over the retention cap of {gb} GB, oldest unpinned first")
        } else {
            continue;
        };
        total = total.saturating_sub(a.size.unwrap_or(0));
        victims.push((a.id.clone(), reason));
    }
    victims
}

/// Sweeps every `retention_sweep_ms`, the first time one period after the start (the hub
/// serves first); the first-run marker is set at start.
pub async fn sweep_forever(hub: std::sync::Arc<Hub>) {
    if let Err(e) = hub.artifacts.retention_since().await {
        tracing::warn!(error = %e, "cannot record the first retention run");
    }
    let period = Duration::from_millis(hub.config.retention_sweep_ms.max(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&hub).await {
            tracing::warn!(error = %e, "retention sweep failed");
        }
    }
}

/// One sweep: returns how many artifacts it deleted.
pub async fn sweep(hub: &Hub) -> Result<usize, crate::store::StoreError> {
    let c = &hub.config;
    let now = SystemTime::now();
    let since = hub.artifacts.retention_since().await?;
    let all = hub.artifacts.list(None, false, u32::MAX).await?;
    let victims = plan(&all, now, c.retain_days, c.retain_max_bytes);
    if victims.is_empty() {
        return Ok(0);
    }
    let starts = since + Duration::from_millis(c.retention_grace_ms);
    if now < starts {
        let ids: Vec<&str> = victims.iter().map(|(id, _)| id.as_str()).take(20).collect();
        let starts = humantime::format_rfc3339_seconds(starts);
        tracing::warn!(count = victims.len(), first = ?ids, %starts,
            "retention applies for the first time: these artifacts will be deleted from then on (pin the ones to keep)");
        return Ok(0);
    }
    let mut deleted = 0;
    for (id, reason) in victims {
        match hub.artifacts.delete(&id, "retention", &reason).await {
            Ok(_) => {
                deleted += 1;
                let detail = serde_json::json!({"reason": reason});
                hub.audit.record("retention", "artifact.delete", &id, detail, "ok").await;
            }
            Err(e) => tracing::debug!(artifact = %id, error = %e, "retention skipped an artifact"),
        }
    }
    tracing::info!(deleted, "retention sweep");
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::artifact;

    fn stored(id: &str, days_ago: u64, size: u64, pinned: bool, now: SystemTime) -> ArtifactRecord {
        let mut a = artifact(id, "p1");
        a.status = ArtifactStatus::Ready;
        a.size = Some(size);
        a.pinned = pinned;
        a.created_at = humantime::format_rfc3339_millis(now - Duration::from_secs(days_ago * 86_400)).to_string();
        a
    }

    #[test]
    fn the_oldest_unpinned_go_first_and_pinned_ones_stay() {
        let now = SystemTime::now();
        let all = vec![
            stored("new1", 1, 40, false, now),
            stored("pin1", 50, 40, true, now),
            stored("old1", 40, 40, false, now),
            stored("mid1", 5, 40, false, now),
            stored("mid2", 3, 40, false, now),
        ];
        let ids = |v: Vec<(String, String)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(plan(&all, now, 30, None)), ["old1"]);
        // 200 bytes, cap 100: old1 (by age), then mid1 and mid2 (pin1 stays, new1 fits).
        assert_eq!(ids(plan(&all, now, 30, Some(100))), ["old1", "mid1", "mid2"]);
        assert_eq!(ids(plan(&all, now, 0, Some(1000))), Vec::<String>::new());
        let mut failed = stored("gone", 90, 40, false, now);
        failed.status = ArtifactStatus::Failed;
        assert!(plan(&[failed], now, 30, Some(0)).is_empty(), "only ready artifacts hold bytes");
    }
}
