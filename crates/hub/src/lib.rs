//! perf-hub: the one server of perf-agent.
//!
//! Adapters that only translate:
//! - [`gateway`]: agent connections (control links and upload streams) ↔ domain calls;
//! - [`api`]: the operators' HTTP API and console ↔ domain calls;
//! - [`prometheus`]: the Prometheus text format.
//!
//! Domains, each owning its storage ([`hub::Hub`] holds them): [`processes`], [`artifacts`],
//! [`metrics`], [`audit`], [`renders`] (with [`analysis`]), and [`commands`] across them.
//! Underneath: [`store`] (SQLite metadata, reached through [`store::Db`] off the async threads)
//! and [`storage`] (artifact bytes: local disk or an S3-compatible store).

pub mod admission;
pub mod analysis;
pub mod api;
pub mod artifacts;
pub mod audit;
pub mod commands;
pub mod config;
pub mod gateway;
pub mod http_server;
pub mod hub;
pub mod ids;
pub mod leak_hunt;
pub mod metrics;
pub mod operators;
pub mod private_files;
pub mod processes;
pub mod prometheus;
pub mod renders;
pub mod retention;
pub mod rules;
pub mod sample_limits;
pub mod sessions;
pub mod storage;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod upload_tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use config::HubConfig;
pub use hub::Hub;

/// A hub whose listeners are bound and whose tasks run on the current tokio runtime.
pub struct RunningHub {
    pub hub: Arc<Hub>,
    pub agent_addr: SocketAddr,
    pub http_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningHub {
    /// Stops accepting agents and HTTP requests (open connections end with their tasks).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for RunningHub {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Opens the data directory, binds both listeners and starts serving (over TLS when the config
/// names a certificate; without one, only on loopback unless `insecure_plaintext`).
pub async fn start(config: HubConfig) -> anyhow::Result<RunningHub> {
    config::check_plaintext_exposure(&config).map_err(anyhow::Error::msg)?;
    let tls = tls::acceptor(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
    let agent_listener = TcpListener::bind(config.agent_addr).await?;
    let http_listener = TcpListener::bind(config.http_addr).await?;
    let agent_addr = agent_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let hub = Arc::new(Hub::open(config)?);
    // Wrong credentials or a missing bucket show now, in one line, not at the first upload.
    let storage = hub.artifacts.storage();
    storage.probe().await.map_err(|e| anyhow::anyhow!("cannot use the artifact store {}: {e}", storage.describe()))?;
    hub.artifacts.discard_stale_uploads().await?;
    let router = api::router(hub.clone());
    let http_hub = hub.clone();
    let http_tls = tls.clone();
    let tasks = vec![
        tokio::spawn(gateway::serve(hub.clone(), agent_listener, tls)),
        tokio::spawn(async move { http_server::serve(http_listener, router, http_tls, &http_hub.config).await }),
        tokio::spawn(sweep_after_restart(hub.clone())),
        tokio::spawn(housekeeping(hub.clone())),
        tokio::spawn(flush_metrics(hub.clone())),
        tokio::spawn(retention::sweep_forever(hub.clone())),
    ];
    Ok(RunningHub { hub, agent_addr, http_addr, tasks })
}

/// Artifacts left in flight by a previous run whose process never came back are failed, so
/// nobody waits forever on them.
async fn sweep_after_restart(hub: Arc<Hub>) {
    tokio::time::sleep(Duration::from_millis(hub.config.restart_grace_ms)).await;
    let Ok(open) = hub.artifacts.list(None, true, 10_000).await else { return };
    for a in open.iter().filter(|a| !hub.processes.is_connected(&a.process_id)) {
        hub.artifacts.fail(&a.id, "the hub restarted and the process did not reconnect").await;
    }
}

/// Writes buffered metric samples in batches.
async fn flush_metrics(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(metrics::FLUSH_EVERY);
    loop {
        tick.tick().await;
        hub.metrics.flush().await;
    }
}

/// Bounds what the hub keeps: metric history by age/resolution/count, and processes that have
/// been gone for longer than the retention of disconnected processes.
async fn housekeeping(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let c = &hub.config;
        if let Err(e) = hub.metrics.prune(c).await {
            tracing::warn!(error = %e, "metrics pruning failed");
        }
        let cutoff = processes::ttl_cutoff(std::time::SystemTime::now(), c.process_ttl_ms);
        match hub.processes.age_out(cutoff).await {
            Ok(gone) if !gone.is_empty() => {
                gone.iter().for_each(|id| hub.metrics.forget(id));
                tracing::info!(count = gone.len(), "aged out disconnected processes");
            }
            Err(e) => tracing::warn!(error = %e, "process aging failed"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_support::artifact, ArtifactStatus};

    #[tokio::test]
    async fn artifacts_in_flight_before_a_restart_fail_if_their_process_never_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = store::Store::open(&dir.path().join("hub.db")).expect("store");
            let mut a = artifact("aaaa0001", "feedface");
            a.status = ArtifactStatus::Running;
            store.insert_artifact(&a).expect("insert");
        }
        let mut config = HubConfig::for_test(dir.path().to_path_buf());
        config.restart_grace_ms = 50;
        let running = start(config).await.expect("hub");
        let t0 = std::time::Instant::now();
        let a = loop {
            let a = running.hub.artifacts.get("aaaa0001").await.expect("store").expect("artifact");
            if a.status.is_final() || t0.elapsed() > Duration::from_secs(5) {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(a.status, ArtifactStatus::Failed);
        assert!(a.error.unwrap_or_default().contains("did not reconnect"));
    }
}
