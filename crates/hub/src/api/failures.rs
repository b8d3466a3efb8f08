//! Failed authentications per source address: a fixed window per source; after
//! `per_window` failures (401s) in it, every request from that source is answered 429 — before
//! any token is looked at — until the window ends. Only 401s count: a working client (other
//! addresses, or this one once its window is over) is never slowed down.
//!
//! The audit gets one `auth.failed` entry per source and window, whose counts (`failures`,
//! `refused`) grow in place, instead of one entry per request: a flood can't push real entries
//! out of `/api/audit`. The map is bounded ([`MAX_SOURCES`]); past it, new sources share one
//! bucket (the unspecified address), so memory stays bounded when many addresses fail at once.

use crate::audit::Audit;
use crate::store::AuditRecord;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at once.
pub const MAX_SOURCES: usize = 10_000;
/// The bucket sources share once [`MAX_SOURCES`] are tracked.
const SHARED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

pub struct FailedAuth {
    per_window: u32,
    window: Duration,
    max_sources: usize,
    sources: Mutex<HashMap<IpAddr, Source>>,
}

struct Source {
    started: Instant,
    failures: u32,
    refused: u64,
    /// The window's audit entry, once written.
    entry: Option<(i64, AuditRecord)>,
}

/// What the audit needs to hear about a failure or a refusal.
enum AuditStep {
    /// The first failure of a window: write its entry.
    First,
    /// Counts changed: update the entry (and append it to `audit.log` at a milestone).
    Update {
        seq: i64,
        rec: AuditRecord,
        to_log: bool,
    },
    None,
}

impl FailedAuth {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window: per_window.max(1), window, max_sources: MAX_SOURCES, sources: Mutex::new(HashMap::new()) }
    }

    /// `Some(seconds until the window ends)` if `ip` must be refused now (and counts it).
    pub async fn refused(&self, ip: IpAddr, audit: &Audit) -> Option<u64> {
        let (key, retry, step) = {
            let mut sources = self.sources.lock().ok()?;
            let key = match sources.contains_key(&ip) {
                true => ip,
                false if sources.len() >= self.max_sources => SHARED,
                false => return None,
            };
            let s = sources.get_mut(&key).filter(|s| s.started.elapsed() < self.window)?;
            if s.failures < self.per_window {
                return None;
            }
            s.refused += 1;
            // Logarithmic updates: a flood of refusals costs a handful of writes.
            let step = if s.refused.is_power_of_two() { update(s, false) } else { AuditStep::None };
            (key, self.window.saturating_sub(s.started.elapsed()).as_secs().max(1), step)
        };
        self.write(key, step, audit).await;
        Some(retry)
    }

    /// A request from `ip` failed authentication (it will be answered 401).
    pub async fn failed(&self, ip: IpAddr, audit: &Audit) {
        let (key, step) = {
            let Ok(mut sources) = self.sources.lock() else { return };
            let key = self.slot(&mut sources, ip);
            let s = sources.entry(key).or_insert_with(Source::fresh);
            if s.started.elapsed() >= self.window {
                *s = Source::fresh();
            }
            s.failures += 1;
            let step = match s.entry {
                None if s.failures == 1 => AuditStep::First,
                None => AuditStep::None,
                Some(_) => update(s, s.failures == self.per_window),
            };
            (key, step)
        };
        self.write(key, step, audit).await;
    }

    /// The key `ip` is counted under: itself, or the shared bucket when the map is full.
    fn slot(&self, sources: &mut HashMap<IpAddr, Source>, ip: IpAddr) -> IpAddr {
        if sources.contains_key(&ip) || sources.len() < self.max_sources {
            return ip;
        }
        sources.retain(|_, s| s.started.elapsed() < self.window);
        if sources.len() < self.max_sources {
            ip
        } else {
            SHARED
        }
    }

    /// Writes what `step` says to the audit for the source counted under `key`.
    async fn write(&self, key: IpAddr, step: AuditStep, audit: &Audit) {
        match step {
            AuditStep::First => {
                let detail = detail(1, 0, self.window);
                let written =
                    audit.record_aggregated(&format!("unauthenticated@{key}"), "auth.failed", detail, "401").await;
                if let (Some(entry), Ok(mut sources)) = (written, self.sources.lock()) {
                    if let Some(s) = sources.get_mut(&key).filter(|s| s.entry.is_none()) {
                        s.entry = Some(entry);
                    }
                }
            }
            AuditStep::Update { seq, rec, to_log } => audit.update_aggregated(seq, rec, to_log).await,
            AuditStep::None => {}
        }
    }
}

impl Source {
    fn fresh() -> Self {
        Source { started: Instant::now(), failures: 0, refused: 0, entry: None }
    }
}

fn detail(failures: u32, refused: u64, window: Duration) -> serde_json::Value {
    serde_json::json!({ "failures": failures, "refused": refused, "window_secs": window.as_secs() })
}

/// The window's entry with the current counts.
fn update(s: &Source, to_log: bool) -> AuditStep {
    let Some((seq, rec)) = &s.entry else { return AuditStep::None };
    let mut rec = rec.clone();
    let window = rec.detail.get("window_secs").and_then(|v| v.as_u64()).unwrap_or(0);
    rec.detail = detail(s.failures, s.refused, Duration::from_secs(window));
    if s.refused > 0 || to_log {
        rec.result = "401, then 429".into();
    }
    AuditStep::Update { seq: *seq, rec, to_log }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, Store};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[tokio::test]
    async fn a_source_is_refused_after_its_failures_and_the_map_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit =
            Audit::open(Db::new(Store::open(&dir.path().join("hub.db")).expect("store")), dir.path()).expect("audit");
        let mut limiter = FailedAuth::new(3, Duration::from_secs(600));
        limiter.max_sources = 2;
        for _ in 0..3 {
            assert_eq!(limiter.refused(ip(1), &audit).await, None);
            limiter.failed(ip(1), &audit).await;
        }
        assert!(limiter.refused(ip(1), &audit).await.is_some(), "blocked after 3 failures");
        assert_eq!(limiter.refused(ip(2), &audit).await, None, "another source is not");
        // Past the bound, new sources share one bucket instead of growing the map.
        for last in 2..50 {
            limiter.failed(ip(last), &audit).await;
        }
        assert!(limiter.sources.lock().expect("lock").len() <= 3);
        assert!(limiter.refused(ip(49), &audit).await.is_some(), "the shared bucket is limited too");
        let entries = audit.list(1000).await.expect("audit");
        let mine: Vec<_> = entries.iter().filter(|e| e.actor == "unauthenticated@10.0.0.1").collect();
        assert_eq!(mine.len(), 1, "one aggregated entry");
        assert_eq!(mine[0].detail["failures"], 3);
        assert_eq!(mine[0].detail["refused"], 1);
        assert!(entries.len() <= 3, "{} entries for 49 sources", entries.len());
    }
}
