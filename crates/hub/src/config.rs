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
    /// App name → the shared secret(s) agents of that app prove they know (two during a
    /// rotation; see [`AppSecrets`]).
    pub apps: BTreeMap<String, AppSecrets>,
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

    // ---- transport security (TLS, plaintext exposure, HTTP connection bounds) ----
    /// PEM certificate chain and private key: both ports speak TLS when set (see `tls.rs`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow a non-loopback listener without TLS (secrets of apps and operators, heap snapshots
    /// would cross the network in clear); refused otherwise.
    pub insecure_plaintext: bool,
    /// An HTTP client must send a request's whole header within this time (slow-loris bound).
    pub http_header_timeout_ms: u64,
    /// At most this many HTTP connections at once; more wait in the listen backlog.
    pub http_max_connections: usize,
    /// A TLS handshake (either port) must finish within this time.
    pub tls_handshake_timeout_ms: u64,

    // ---- Agent gateway: admission and intake limits (issue 11, findings 2, 7, 9) ----
    /// Most agent connections at once (control links and uploads); `None`: the open-file limit
    /// (raised to its hard limit at start) minus [`crate::admission::FD_RESERVE`] kept for the
    /// HTTP API, the store and artifact files.
    pub max_agent_connections: Option<usize>,
    /// Most connections that have not authenticated yet, overall and from one IP address.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_addr: usize,
    /// Most processes listed per app; a hello for one more is refused.
    pub max_processes_per_app: usize,
    /// Largest metrics sample frame kept; bigger ones are dropped and counted.
    pub max_sample_bytes: usize,
    /// Metrics samples per second one link may send (sustained, and in a burst).
    pub samples_per_sec: f64,
    pub sample_burst: f64,

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

    // ---- Artifact storage and retention (issue 12; see docs/storage.md) ----
    /// `s3://BUCKET[/PREFIX]`: artifact bytes in that S3-compatible store (credentials and
    /// endpoint from the `AWS_*` environment); `None`: local disk under `data_dir`.
    pub storage: Option<String>,
    /// Ready artifacts older than this many days are deleted (pinned ones are kept); 0: never.
    pub retain_days: u64,
    /// Ready unpinned artifacts beyond this many bytes in total are deleted, oldest first.
    pub retain_max_bytes: Option<u64>,
    /// Free space kept on the local store for `hub.db` and the audit log: a capture or an upload
    /// that would leave less is refused with the reason.
    pub min_free_bytes: u64,
    /// How often retention is swept.
    pub retention_sweep_ms: u64,
    /// A hub that applies retention for the first time only logs what it would delete for this
    /// long (an upgrade must not delete months of artifacts unannounced).
    pub retention_grace_ms: u64,

    // ---- Autopilot: capture rules (issue 13, see `crate::rules`) ----
    /// Rules of the config file (`rules`), beside those stored through the API.
    pub rules: Vec<crate::rules::Rule>,
    /// Most automatic captures the hub takes in any hour, across every rule and process.
    pub autopilot_max_captures_per_hour: u32,
    /// A rule's cooldown per process when it gives none.
    pub autopilot_default_cooldown_secs: u64,

    // ---- Heap explorer (issue 14, see `crate::api::heap`) ----
    /// Bytes of explorer indexes kept in memory at once, least recently used evicted first.
    pub heap_index_budget_bytes: u64,
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
            tls_cert: None,
            tls_key: None,
            insecure_plaintext: false,
            http_header_timeout_ms: 30_000,
            http_max_connections: 1024,
            tls_handshake_timeout_ms: 10_000,
            max_agent_connections: None,
            // A NAT'd cluster restarting at once: ≥ 1,000 handshakes from one address.
            max_unauthenticated: 4096,
            max_unauthenticated_per_addr: 1024,
            max_processes_per_app: 50_000,
            // A real sample is a few KB.
            max_sample_bytes: 64 * 1024,
            // Agents send one every 5 s by default; tests and tuned agents as often as 10/s.
            samples_per_sec: 10.0,
            sample_burst: 50.0,
            secure_cookies: false,
            auth_failures_per_window: 20,
            auth_failure_window_ms: 60_000,
            audit_keep_rows: crate::store::AUDIT_KEEP_ROWS,
            audit_log_max_bytes: 64 << 20,
            storage: None,
            retain_days: 30,
            retain_max_bytes: None,
            min_free_bytes: 64 << 20,
            retention_sweep_ms: 10 * 60_000,
            retention_grace_ms: 24 * 3_600_000,
            rules: vec![],
            autopilot_max_captures_per_hour: 20,
            autopilot_default_cooldown_secs: 300,
            heap_index_budget_bytes: crate::api::heap::CACHE_BUDGET_BYTES,
        }
    }

    /// Defaults on ephemeral loopback ports with a test token and the app `orders:s3cret`.
    pub fn for_test(data_dir: PathBuf) -> Self {
        Self {
            agent_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "test-token".into(),
            apps: BTreeMap::from([("orders".to_string(), AppSecrets::from("s3cret"))]),
            ..Self::defaults(data_dir)
        }
    }
}

/// The secrets of one app: one normally, two while a secret is being rotated (agents with the
/// old and the new one are both welcomed; remove the old one once every agent has the new).
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecrets(Vec<String>);

/// Most secrets an app may have at once.
pub const MAX_SECRETS_PER_APP: usize = 2;

impl AppSecrets {
    /// Adds a second secret; the same one again is a no-op, a third is an error.
    pub fn add(&mut self, app: &str, secret: String) -> Result<(), String> {
        if self.0.contains(&secret) {
            return Ok(());
        }
        if self.0.len() >= MAX_SECRETS_PER_APP {
            return Err(format!(
                "app '{app}' has more than {MAX_SECRETS_PER_APP} secrets (two at once are for rotation: drop the oldest)"
            ));
        }
        self.0.push(secret);
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for AppSecrets {
    fn from(secret: &str) -> Self {
        Self(vec![secret.to_string()])
    }
}

impl From<String> for AppSecrets {
    fn from(secret: String) -> Self {
        Self(vec![secret])
    }
}

/// Never prints the secrets (configs end up in logs and panics).
impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppSecrets({} secret(s))", self.0.len())
    }
}

/// Adds `name:secret` to `apps`, keeping an app's earlier secret (rotation), refusing a third.
pub fn add_app(apps: &mut BTreeMap<String, AppSecrets>, spec: &str) -> Result<(), String> {
    let (name, secret) = parse_app(spec)?;
    add_secret(apps, name, secret)
}

/// Adds one secret of `name` (from the config file, where name and secret come apart).
pub fn add_app_secret(apps: &mut BTreeMap<String, AppSecrets>, name: &str, secret: String) -> Result<(), String> {
    validate_app(name.trim(), &secret)?;
    add_secret(apps, name.trim().to_string(), secret)
}

fn add_secret(apps: &mut BTreeMap<String, AppSecrets>, name: String, secret: String) -> Result<(), String> {
    match apps.get_mut(&name) {
        Some(secrets) => secrets.add(&name, secret),
        None => {
            apps.insert(name, AppSecrets::from(secret));
            Ok(())
        }
    }
}

/// Parses an `--app-secrets-file`: one `name:secret` a line; blank lines and `#` comments are
/// skipped. Errors name the line, never the secret.
pub fn parse_app_secrets_file(text: &str, apps: &mut BTreeMap<String, AppSecrets>) -> Result<(), String> {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, secret) = parse_app(line)
            .map_err(|_| format!("line {}: expected NAME:SECRET (name 1-128 characters, secret at least 8)", i + 1))?;
        add_secret(apps, name, secret).map_err(|e| format!("line {}: {e}", i + 1))?;
    }
    Ok(())
}

/// The secrets of one app in the config file: `"app": "secret"` or `"app": ["new", "old"]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum FileSecrets {
    One(String),
    Many(Vec<String>),
}

impl FileSecrets {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            FileSecrets::One(s) => vec![s],
            FileSecrets::Many(v) => v,
        }
    }
}

/// Without TLS, a listener on a non-loopback address is refused unless `insecure_plaintext`
/// says the operator accepts it: the error names the address and both ways out.
pub fn check_plaintext_exposure(c: &HubConfig) -> Result<(), String> {
    if c.tls_cert.is_some() || c.insecure_plaintext {
        return Ok(());
    }
    for (what, addr) in [("agent", c.agent_addr), ("http", c.http_addr)] {
        if !addr.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {addr} ({what} port) without TLS: app secrets' handshakes, operator \
                 tokens and heap snapshots (which hold passwords and keys) would cross the network in clear. \
                 Give --tls-cert FILE.pem --tls-key FILE.pem (see docs/tls.md), or --insecure-plaintext if \
                 another layer (a TLS-terminating proxy, a private network) protects this port"
            ));
        }
    }
    Ok(())
}

/// Parses `name:secret` pairs (`--app` flags or the comma-separated `PERF_HUB_APPS`).
pub fn parse_app(spec: &str) -> Result<(String, String), String> {
    // Errors never echo the spec: it may hold a secret.
    let (name, secret) = spec.split_once(':').ok_or_else(|| "an app must be given as NAME:SECRET".to_string())?;
    validate_app(name.trim(), secret)?;
    Ok((name.trim().to_string(), secret.to_string()))
}

fn validate_app(name: &str, secret: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("an app name must be 1-128 characters".into());
    }
    if secret.len() < 8 {
        return Err(format!("secret for app '{name}' must be at least 8 characters"));
    }
    Ok(())
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
    pub apps: BTreeMap<String, FileSecrets>,
    pub max_artifact_bytes: Option<u64>,
    /// Transport security (see [`HubConfig::tls_cert`]).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_plaintext: Option<bool>,
    pub app_secrets_file: Option<PathBuf>,
    /// Admission and intake limits (defaults in [`HubConfig::defaults`]).
    #[serde(default)]
    pub limits: FileLimits,
    /// Artifact storage and retention (see [`HubConfig::storage`]).
    pub storage: Option<String>,
    pub retain_days: Option<u64>,
    pub retain_max_gb: Option<f64>,
    /// Autopilot capture rules (the body of `POST /api/rules`, each), and its guards.
    #[serde(default)]
    pub rules: Vec<crate::rules::RuleSpec>,
    #[serde(default)]
    pub autopilot: AutopilotFile,
}

/// The `limits` object of the config file: each one given replaces its default.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_agent_connections: Option<usize>,
    pub max_unauthenticated: Option<usize>,
    pub max_unauthenticated_per_addr: Option<usize>,
    pub max_processes_per_app: Option<usize>,
    pub max_sample_bytes: Option<usize>,
    pub samples_per_sec: Option<f64>,
    pub sample_burst: Option<f64>,
    pub http_max_connections: Option<usize>,
    pub auth_failures_per_window: Option<u32>,
}

impl FileLimits {
    /// Applies the limits given; a zero (or a non-positive rate) would lock everyone out, so it
    /// is an error.
    pub fn apply(&self, c: &mut HubConfig) -> Result<(), String> {
        let positive = |name: &str, v: Option<usize>| match v {
            Some(0) => Err(format!("limits.{name} must be at least 1")),
            _ => Ok(v),
        };
        if let Some(v) = positive("max_agent_connections", self.max_agent_connections)? {
            c.max_agent_connections = Some(v);
        }
        let sizes = [
            ("max_unauthenticated", self.max_unauthenticated, &mut c.max_unauthenticated),
            ("max_unauthenticated_per_addr", self.max_unauthenticated_per_addr, &mut c.max_unauthenticated_per_addr),
            ("max_processes_per_app", self.max_processes_per_app, &mut c.max_processes_per_app),
            ("max_sample_bytes", self.max_sample_bytes, &mut c.max_sample_bytes),
            ("http_max_connections", self.http_max_connections, &mut c.http_max_connections),
        ];
        for (name, given, field) in sizes {
            if let Some(v) = positive(name, given)? {
                *field = v;
            }
        }
        for (name, given, field) in [
            ("samples_per_sec", self.samples_per_sec, &mut c.samples_per_sec),
            ("sample_burst", self.sample_burst, &mut c.sample_burst),
        ] {
            match given {
                Some(v) if !(v.is_finite() && v > 0.0) => {
                    return Err(format!("limits.{name} must be a positive number"))
                }
                Some(v) => *field = v,
                None => {}
            }
        }
        match self.auth_failures_per_window {
            Some(0) => return Err("limits.auth_failures_per_window must be at least 1".into()),
            Some(v) => c.auth_failures_per_window = v,
            None => {}
        }
        Ok(())
    }
}

/// The config file's `autopilot` block.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotFile {
    pub max_captures_per_hour: Option<u32>,
    pub default_cooldown_secs: Option<u64>,
}

/// The config file's rules, validated (an error names the rule), with its autopilot guards.
pub fn file_rules(file: Vec<crate::rules::RuleSpec>, c: &mut HubConfig, guards: &AutopilotFile) -> Result<(), String> {
    if let Some(n) = guards.max_captures_per_hour {
        c.autopilot_max_captures_per_hour = n;
    }
    if let Some(s) = guards.default_cooldown_secs {
        if !crate::rules::spec::COOLDOWN_SECS.contains(&s) {
            return Err(format!(
                "autopilot.default_cooldown_secs must be 1-{}",
                crate::rules::spec::COOLDOWN_SECS.end()
            ));
        }
        c.autopilot_default_cooldown_secs = s;
    }
    for spec in file {
        let name = spec.name.clone();
        let rule = spec
            .validate(c.autopilot_default_cooldown_secs, "config", crate::rules::RuleSource::Config)
            .map_err(|e| format!("rule '{name}': {e}"))?;
        if c.rules.iter().any(|r| r.name == rule.name) {
            return Err(format!("rule '{name}' is defined twice"));
        }
        c.rules.push(rule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_limits_replace_defaults_and_refuse_zero() {
        let mut c = HubConfig::defaults(PathBuf::from("/tmp/x"));
        let f: FileConfig =
            serde_json::from_str(r#"{"limits": {"max_processes_per_app": 10, "samples_per_sec": 2.5}}"#)
                .expect("parse");
        f.limits.apply(&mut c).expect("apply");
        assert_eq!((c.max_processes_per_app, c.samples_per_sec), (10, 2.5));
        assert_eq!(c.max_unauthenticated_per_addr, 1024, "others keep their defaults");
        let zero: FileConfig = serde_json::from_str(r#"{"limits": {"max_unauthenticated": 0}}"#).expect("parse");
        assert!(zero.limits.apply(&mut c).unwrap_err().contains("max_unauthenticated"));
        assert!(serde_json::from_str::<FileConfig>(r#"{"limits": {"typo": 1}}"#).is_err());
    }

    #[test]
    fn app_specs() {
        assert_eq!(parse_app("orders:longsecret").expect("ok"), ("orders".into(), "longsecret".into()));
        assert!(parse_app("orders").is_err());
        assert!(parse_app(":longsecret").is_err());
        assert!(parse_app("orders:short").is_err());
        // Secrets may contain ':'.
        assert_eq!(parse_app("a:b:c:d:e:f:g").expect("ok").1, "b:c:d:e:f:g");
    }

    #[test]
    fn an_app_keeps_two_secrets_and_refuses_a_third() {
        let mut apps = BTreeMap::new();
        add_app(&mut apps, "orders:old-secret").expect("first");
        add_app(&mut apps, "orders:new-secret").expect("second");
        add_app(&mut apps, "orders:new-secret").expect("the same again is no change");
        assert_eq!(apps["orders"].iter().collect::<Vec<_>>(), ["old-secret", "new-secret"]);
        let err = add_app(&mut apps, "orders:third-secret").unwrap_err();
        assert!(err.contains("more than 2 secrets"), "{err}");
        assert!(!format!("{:?}", apps["orders"]).contains("secret-"), "Debug hides secrets");
    }

    #[test]
    fn secrets_file_lines() {
        let mut apps = BTreeMap::new();
        parse_app_secrets_file(
            "# rotation\norders:old-secret\n\n  orders:new-secret  \nbilling:bill-secret\n",
            &mut apps,
        )
        .expect("parse");
        assert_eq!(apps["orders"].len(), 2);
        assert_eq!(apps["billing"].iter().collect::<Vec<_>>(), ["bill-secret"]);
        let err = parse_app_secrets_file("orders:short\n", &mut apps).unwrap_err();
        assert!(err.starts_with("line 1:") && !err.contains("short"), "{err}");
    }

    #[test]
    fn config_file_carries_two_secrets_and_the_tls_keys() {
        let f: FileConfig = serde_json::from_str(
            r#"{"apps": {"orders": ["old-secret", "new-secret"], "billing": "bill-secret"},
                "tls_cert": "/etc/perf-hub/hub.pem", "tls_key": "/etc/perf-hub/hub.key",
                "insecure_plaintext": false, "app_secrets_file": "/etc/perf-hub/apps.secrets"}"#,
        )
        .expect("parse");
        let mut apps = f.apps.into_iter().collect::<Vec<_>>();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(apps[0].1.clone().into_vec(), ["bill-secret"]);
        assert_eq!(apps[1].1.clone().into_vec(), ["old-secret", "new-secret"]);
        assert_eq!(f.tls_cert.as_deref(), Some(std::path::Path::new("/etc/perf-hub/hub.pem")));
        assert!(f.tls_key.is_some() && f.app_secrets_file.is_some());
    }

    #[test]
    fn plaintext_on_a_public_address_is_refused_unless_told() {
        let mut c = HubConfig::for_test(PathBuf::from("/nonexistent"));
        assert!(check_plaintext_exposure(&c).is_ok(), "loopback is fine");
        c.agent_addr = SocketAddr::from(([0, 0, 0, 0], 7070));
        let err = check_plaintext_exposure(&c).unwrap_err();
        assert!(err.contains("0.0.0.0:7070") && err.contains("--tls-cert") && err.contains("--insecure-plaintext"));
        c.insecure_plaintext = true;
        assert!(check_plaintext_exposure(&c).is_ok());
        c.insecure_plaintext = false;
        c.tls_cert = Some(PathBuf::from("cert.pem"));
        assert!(check_plaintext_exposure(&c).is_ok());
    }
}
