//! The hub: one value holding its domains, each owning its part of the storage. The gateway
//! (agents) and the API (operators) translate their messages into calls on these and never
//! reach storage themselves.
//!
//! - [`Processes`]: process records, live links, the ack rendezvous;
//! - [`Artifacts`]: the artifact lifecycle and the artifact bytes;
//! - [`Metrics`]: sample history, the counters `/metrics` exports;
//! - [`Audit`]: the audit trail;
//! - [`Renders`]: flame graphs and heap analyses computed from artifacts, cached;
//! - commands ([`crate::commands`]): an operator's capture command across the above.

use crate::admission::{Admission, Limits};
use crate::artifacts::Artifacts;
use crate::audit::Audit;
use crate::config::HubConfig;
use crate::metrics::Metrics;
use crate::operators::Operators;
use crate::processes::Processes;
use crate::renders::Renders;
use crate::storage::Storage;
use crate::store::{Db, Store};

pub use crate::commands::CommandError;
pub use crate::processes::SendError;

pub struct Hub {
    pub config: HubConfig,
    /// What agent connections may hold (see [`crate::admission`]).
    pub admission: std::sync::Arc<Admission>,
    /// Aggregates what agents get refused (takeovers, forged uploads, dropped samples) into one
    /// log line or audit entry per source per minute.
    pub agent_refusals: crate::throttle::Throttle,
    pub processes: Processes,
    pub artifacts: Artifacts,
    pub metrics: Metrics,
    pub audit: Audit,
    pub renders: Renders,
    /// Operators' API tokens (verified on every request).
    pub operators: Operators,
    /// Autopilot capture rules (see [`crate::rules`]).
    pub rules: crate::rules::Rules,
}

impl Hub {
    pub fn open(config: HubConfig) -> anyhow::Result<Self> {
        // Before anything is created in it: the data dir is private (issue 11, finding 3).
        crate::private_files::prepare_data_dir(&config.data_dir)?;
        let db = Db::new(Store::open(&config.data_dir.join("hub.db"))?);
        let storage = Storage::open(&config.data_dir, config.storage.as_deref())?;
        let admission = Admission::new(Limits::from_config(&config));
        Ok(Self {
            metrics: Metrics::new(db.clone(), Some(admission.clone())),
            admission,
            agent_refusals: crate::throttle::Throttle::new(std::time::Duration::from_secs(60)),
            processes: Processes::open(db.clone())?,
            artifacts: Artifacts::new(db.clone(), storage),
            operators: Operators::new(db.clone(), &config.token),
            rules: crate::rules::Rules::open(db.clone(), config.rules.clone(), config.autopilot_max_captures_per_hour)?,
            audit: Audit::open(db, &config.data_dir)?
                .with_retention(config.audit_keep_rows, config.audit_log_max_bytes),
            renders: Renders::default(),
            config,
        })
    }

    /// A process's link is gone: it shows as disconnected and what it was capturing fails.
    pub async fn process_disconnected(&self, process_id: &str, reason: &str) {
        self.processes.disconnected(process_id).await;
        let error = format!("process disconnected during capture ({reason})");
        self.artifacts.fail_unfinished(process_id, &error, |_| true).await;
    }
}
