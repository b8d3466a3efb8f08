//! Agent configuration, as the binding assembles it from `start()` options and `PERF_AGENT_*`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `host:port` of the hub's agent port.
    pub hub: String,
    pub app: String,
    pub secret: String,
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub pid: u32,
    pub node_version: String,
    pub agent_version: String,
    /// Command kinds this process can run (the binding knows what its worker supports).
    pub capabilities: Vec<String>,
    /// Command that runs the perf helper (`perf_capture::helper_main` arguments follow); empty
    /// means this process can't take perf flame graphs.
    pub perf_helper: Vec<String>,
    /// Where captures are spooled before and during upload.
    pub spool_dir: PathBuf,
    /// Most bytes the spool directory may hold in all (protects the host's disk; captures are
    /// also refused when the disk itself is nearly full, see [`crate::spool_dir`]).
    pub max_spool_bytes: u64,
    /// How often a metrics sample is sent (zero: never).
    pub metrics_interval: Duration,
    /// No JS heartbeat for this long means the main thread is blocked.
    pub stall_threshold: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
    /// TLS to the hub (control link and uploads); `None`: plaintext TCP.
    pub tls: Option<TlsSettings>,
}

/// How the agent verifies the hub's certificate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSettings {
    /// PEM file of the CA(s) the hub's certificate must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Name the certificate must carry; `None`: the host part of the hub address.
    pub servername: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("missing hub address (option `hub` or PERF_AGENT_HUB)")]
    MissingHub,
    #[error("missing app name (option `app` or PERF_AGENT_APP)")]
    MissingApp,
    #[error("missing app secret (option `secret` or PERF_AGENT_SECRET)")]
    MissingSecret,
    #[error("bad labels '{0}': expected k=v,k2=v2")]
    BadLabels(String),
}

impl AgentConfig {
    /// A config with the required fields and defaults for the rest.
    pub fn new(hub: &str, app: &str, secret: &str) -> Result<Self, ConfigError> {
        if hub.trim().is_empty() {
            return Err(ConfigError::MissingHub);
        }
        if app.trim().is_empty() {
            return Err(ConfigError::MissingApp);
        }
        if secret.is_empty() {
            return Err(ConfigError::MissingSecret);
        }
        Ok(Self {
            hub: hub.trim().to_string(),
            app: app.trim().to_string(),
            secret: secret.to_string(),
            labels: BTreeMap::new(),
            hostname: String::new(),
            pid: std::process::id(),
            node_version: String::new(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: vec!["heap_snapshot".into()],
            perf_helper: Vec::new(),
            spool_dir: crate::spool_dir::default_dir(),
            max_spool_bytes: 16 << 30,
            metrics_interval: Duration::from_secs(5),
            stall_threshold: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        })
    }
}

/// Parses `k=v,k2=v2` (the `PERF_AGENT_LABELS` form). Empty input is no labels.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| ConfigError::BadLabels(s.to_string()))?;
        if k.trim().is_empty() {
            return Err(ConfigError::BadLabels(s.to_string()));
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let l = parse_labels("role=worker, zone = a ,").expect("ok");
        assert_eq!(l.get("role").map(String::as_str), Some("worker"));
        assert_eq!(l.get("zone").map(String::as_str), Some("a"));
        assert!(parse_labels("").expect("ok").is_empty());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
    }

    #[test]
    fn required_fields() {
        assert_eq!(AgentConfig::new("", "a", "s").unwrap_err(), ConfigError::MissingHub);
        assert_eq!(AgentConfig::new("h:1", " ", "s").unwrap_err(), ConfigError::MissingApp);
        assert_eq!(AgentConfig::new("h:1", "a", "").unwrap_err(), ConfigError::MissingSecret);
    }
}
