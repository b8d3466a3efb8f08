//! Metrics: the samples agents send — stored as history (bounded by age, resolution and count),
//! accumulated into the counters and histograms `/metrics` exports, and read back for the API.
//! History is written in batches (one transaction per [`FLUSH_EVERY`]): at 10,000 agents a
//! transaction per sample was most of the hub's store work.

use crate::admission::Admission;
use crate::config::HubConfig;
use crate::prometheus::{Counters, HubFigures};
use crate::sample_limits::{bound_sample, DropCounts, DropReason};
use crate::store::{Db, ProcessRecord, StoreError};
use perf_protocol::MetricsSample;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Metrics {
    db: Db,
    counters: Counters,
    /// Samples waiting for the next batch write (process id, ts, JSON text).
    pending: Mutex<VecDeque<(String, u64, String)>>,
    /// Samples dropped because the buffer was full (logged with the next batch).
    dropped: std::sync::atomic::AtomicU64,
    /// Samples and keys dropped by the bounds of [`crate::sample_limits`].
    pub drops: DropCounts,
    /// The gateway's connection counts, exported with the hub's own figures.
    admission: Option<Arc<Admission>>,
}

/// How often buffered samples are written, in one transaction.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Most samples buffered; beyond it the oldest are dropped (and counted) rather than letting a
/// slow disk grow the hub's memory.
const MAX_PENDING: usize = 100_000;

impl Metrics {
    pub fn new(db: Db, admission: Option<Arc<Admission>>) -> Self {
        Self {
            db,
            counters: Counters::default(),
            pending: Mutex::new(VecDeque::new()),
            dropped: Default::default(),
            drops: DropCounts::default(),
            admission,
        }
    }

    /// A sample the gateway refused before ingesting it.
    pub fn refused(&self, reason: DropReason) {
        self.drops.sample(reason);
    }

    /// One sample from a process, cut to the bounds of [`crate::sample_limits`]: into its running
    /// totals at once, into its history with the next batch (at most [`FLUSH_EVERY`] later).
    pub fn ingest(&self, process_id: &str, mut sample: MetricsSample) {
        let cut = bound_sample(&mut sample);
        if cut > 0 {
            self.drops.keys(cut);
        }
        let sample = &sample;
        let over = self.counters.add_sample(process_id, sample);
        if over > 0 {
            self.drops.keys(over);
        }
        let ts = sample.ts.unwrap_or_else(perf_protocol::unix_ms);
        let doc = match serde_json::to_string(sample) {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, "metrics sample not storable"),
        };
        let Ok(mut pending) = self.pending.lock() else { return };
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        pending.push_back((process_id.to_string(), ts, doc));
    }

    /// Writes the buffered samples in one transaction (the housekeeping task calls it every
    /// [`FLUSH_EVERY`]).
    pub async fn flush(&self) {
        let batch: Vec<_> = match self.pending.lock() {
            Ok(mut p) if !p.is_empty() => p.drain(..).collect(),
            _ => return,
        };
        let n = batch.len();
        match self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed) {
            0 => {}
            d => {
                tracing::warn!(dropped = d, "metrics: the store fell behind; the oldest buffered samples were dropped")
            }
        }
        if let Err(e) = self.db.run(move |s| s.insert_metrics_batch(&batch)).await {
            tracing::warn!(error = %e, samples = n, "store: metrics batch write failed");
        }
    }

    /// Samples of a process since `since_ms`, oldest first, at most `limit` (the newest ones).
    pub async fn history(
        &self,
        process_id: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let id = process_id.to_string();
        self.db.run(move |s| s.list_metrics(&id, since_ms, limit)).await
    }

    /// A page of samples of a process in `range`, oldest first, after `after`, each with its
    /// cursor (the API's keyset pagination).
    pub async fn history_page(
        &self,
        process_id: &str,
        range: crate::store::MetricRange,
        after: Option<crate::store::MetricCursor>,
        limit: u32,
    ) -> Result<Vec<(crate::store::MetricCursor, serde_json::Value)>, StoreError> {
        let id = process_id.to_string();
        self.db.run(move |s| s.list_metrics_page(&id, range, after, limit)).await
    }

    /// Every process with its latest sample, read back into the typed sample (one query).
    pub async fn latest_of_all(&self) -> Result<Vec<(ProcessRecord, Option<MetricsSample>)>, StoreError> {
        self.flush().await;
        let rows = self.db.run(|s| s.processes_with_latest_metric()).await?;
        Ok(rows.into_iter().map(|(p, doc)| (p, doc.and_then(|d| serde_json::from_str(&d).ok()))).collect())
    }

    /// `/metrics` in Prometheus text format.
    /// Only the processes `visible` admits are rendered (an app-scoped token's view).
    pub async fn prometheus_text(&self, visible: impl Fn(&ProcessRecord) -> bool) -> Result<String, StoreError> {
        let mut all = self.latest_of_all().await?;
        all.retain(|(p, _)| visible(p));
        let hub = HubFigures { drops: &self.drops, admission: self.admission.as_deref() };
        Ok(crate::prometheus::render(&all, &self.counters, &hub))
    }

    /// Applies the history bounds of `config`.
    pub async fn prune(&self, config: &HubConfig) -> Result<usize, StoreError> {
        let (age, full, per) = (config.metrics_max_age_ms, config.metrics_full_res_ms, config.metrics_max_per_process);
        self.db.run(move |s| s.prune_metrics(perf_protocol::unix_ms(), age, full, per)).await
    }

    /// Drops the running totals of a process the hub no longer lists.
    pub fn forget(&self, process_id: &str) {
        self.counters.forget(process_id);
    }
}
