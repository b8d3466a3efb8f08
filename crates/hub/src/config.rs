//! Hub configuration: command-line flags, environment and an optional JSON config file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub data_dir: PathBuf,
    pub agent_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Operator API bearer token.
    pub token: String,
    /// App name → shared secret agents of that app prove they know.
    pub apps: BTreeMap<String, String>,
    /// Largest artifact an agent may upload.
    pub max_artifact_bytes: u64,
    /// How often both ends of a link send heartbeats; 3 missed ones close the link.
    pub heartbeat_ms: u64,
    /// How long `POST .../commands` waits for the agent to accept or refuse.
    pub ack_timeout_ms: u64,
    /// Disconnected processes stay listed (with their last figures) this long.
    pub process_ttl_ms: u64,
    /// After a hub start, artifacts left in flight wait this long for their process to return.
    pub restart_grace_ms: u64,
    /// Metric history: kept this long, at full resolution for `metrics_full_res_ms`, then one
    /// sample per minute; at most `metrics_max_per_process` samples per process.
    pub metrics_max_age_ms: u64,
    pub metrics_full_res_ms: u64,
    pub metrics_max_per_process: u32,

    // ---- Operators' access to the HTTP API (issue 11, auth) ----
    /// Session cookies carry `Secure`: set it when the HTTP port serves TLS.
    pub secure_cookies: bool,
    /// Failed authentications (401s) one source address may make in [`HubConfig::auth_failure_window_ms`];
    /// beyond it, every request from that address is answered 429 until the window ends.
    pub auth_failures_per_window: u32,
    pub auth_failure_window_ms: u64,
    /// Audit entries kept in `hub.db` (the newest); `audit.log` is rotated past `audit_log_max_bytes`
    /// (one previous file, `audit.log.1`, is kept).
    pub audit_keep_rows: i64,
    pub audit_log_max_bytes: u64,
}

impl HubConfig {
    /// The production defaults: loopback listeners on 7070 (agents) and 7080 (HTTP), no token
    /// and no apps yet (the command line or config file supplies them).
    pub fn defaults(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            agent_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7080)),
            token: String::new(),
            apps: BTreeMap::new(),
            max_artifact_bytes: 16 << 30,
            heartbeat_ms: 5000,
            ack_timeout_ms: 5000,
            process_ttl_ms: 3_600_000,
            restart_grace_ms: 120_000,
            metrics_max_age_ms: 7 * 24 * 3_600_000,
            metrics_full_res_ms: 3_600_000,
            metrics_max_per_process: 20_000,
            secure_cookies: false,
            auth_failures_per_window: 20,
            auth_failure_window_ms: 60_000,
            audit_keep_rows: crate::store::AUDIT_KEEP_ROWS,
            audit_log_max_bytes: 64 << 20,
        }
    }

    /// Defaults on ephemeral loopback ports with a test token and the app `orders:s3cret`.
    pub fn for_test(data_dir: PathBuf) -> Self {
        Self {
            agent_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "test-token".into(),
            apps: BTreeMap::from([("orders".to_string(), "s3cret".to_string())]),
            ..Self::defaults(data_dir)
        }
    }
}

/// Parses `name:secret` pairs (`--app` flags or the comma-separated `PERF_HUB_APPS`).
pub fn parse_app(spec: &str) -> Result<(String, String), String> {
    let (name, secret) = spec.split_once(':').ok_or_else(|| format!("app '{spec}' must be NAME:SECRET"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(format!("app name in '{spec}' must be 1-128 characters"));
    }
    if secret.len() < 8 {
        return Err(format!("secret for app '{name}' must be at least 8 characters"));
    }
    Ok((name.to_string(), secret.to_string()))
}

/// The optional `--config FILE` (JSON); flags given on the command line win.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub agent_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub token: Option<String>,
    #[serde(default)]
    pub apps: BTreeMap<String, String>,
    pub max_artifact_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_specs() {
        assert_eq!(parse_app("orders:longsecret").expect("ok"), ("orders".into(), "longsecret".into()));
        assert!(parse_app("orders").is_err());
        assert!(parse_app(":longsecret").is_err());
        assert!(parse_app("orders:short").is_err());
        // Secrets may contain ':'.
        assert_eq!(parse_app("a:b:c:d:e:f:g").expect("ok").1, "b:c:d:e:f:g");
    }
}
