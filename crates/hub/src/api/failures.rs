//! Failed authentications per source address: a fixed window per source; after
//! `per_window` failures (401s) in it, every request from that source is answered 429 — before
//! any token is looked at — until the window ends. Only 401s count: a working client (other
//! addresses, or this one once its window is over) is never slowed down. Requests already in
//! flight when the limit is reached still finish (as 401s).
//!
//! The audit hears of both, aggregated ([`Audit::record_failure`]): one `auth.failed` and one
//! `auth.refused` entry per source and window with a count, not one per request. The map is
//! bounded ([`MAX_SOURCES`]); past it, new sources share one bucket (the unspecified address).

use crate::audit::Audit;
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
}

impl FailedAuth {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window: per_window.max(1), window, max_sources: MAX_SOURCES, sources: Mutex::new(HashMap::new()) }
    }

    /// `Some(seconds until the window ends)` if `ip` must be refused now (audited, aggregated).
    pub async fn refused(&self, ip: IpAddr, audit: &Audit) -> Option<u64> {
        let (key, retry) = {
            let sources = self.sources.lock().ok()?;
            let key = match sources.contains_key(&ip) {
                true => ip,
                false if sources.len() >= self.max_sources => SHARED,
                false => return None,
            };
            let s = sources.get(&key).filter(|s| s.started.elapsed() < self.window)?;
            if s.failures < self.per_window {
                return None;
            }
            (key, self.window.saturating_sub(s.started.elapsed()).as_secs().max(1))
        };
        audit.record_failure("unauthenticated", "auth.refused", key, "", serde_json::json!({})).await;
        Some(retry)
    }

    /// A request from `ip` failed authentication (it will be answered 401).
    pub async fn failed(&self, ip: IpAddr, audit: &Audit) {
        let key = {
            let Ok(mut sources) = self.sources.lock() else { return };
            let key = self.slot(&mut sources, ip);
            let s = sources.entry(key).or_insert_with(Source::fresh);
            if s.started.elapsed() >= self.window {
                *s = Source::fresh();
            }
            s.failures = s.failures.saturating_add(1);
            key
        };
        audit.record_failure("unauthenticated", "auth.failed", key, "", serde_json::json!({})).await;
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
}

impl Source {
    fn fresh() -> Self {
        Source { started: Instant::now(), failures: 0 }
    }
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
        let failed: Vec<_> = entries.iter().filter(|e| e.actor == "unauthenticated@10.0.0.1").collect();
        assert_eq!(failed.len(), 2, "one auth.failed and one auth.refused entry: {failed:?}");
        assert!(failed.iter().any(|e| e.action == "auth.failed" && e.detail["count"] == 3));
        assert!(failed.iter().any(|e| e.action == "auth.refused" && e.detail["count"] == 1));
        assert!(entries.len() <= 5, "{} entries for 49 sources", entries.len());
    }
}
