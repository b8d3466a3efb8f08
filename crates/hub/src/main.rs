//! `perf-hub` command line: `serve` runs the hub; the other subcommands work on files.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use perf_hub::config::{add_app, add_app_secret, parse_app_secrets_file, AppSecrets, FileConfig};
use perf_hub::HubConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "perf-hub",
    version,
    about = "Self-hosted diagnostics hub for Node.js processes running @corp/perf-agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once at start: the size of the largest variant doesn't matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the hub: agent gateway, HTTP API and console.
    Serve(ServeArgs),
    /// Render a flame graph of a profile.
    Flamegraph(FlamegraphArgs),
    /// Analyse a heap snapshot: summary by constructor with retained sizes, largest objects with
    /// retainer paths, leak suspects. Progress on stderr.
    Analyze(AnalyzeArgs),
    /// Compare two heap snapshots of one process: what grew, which objects are new.
    Diff(DiffArgs),
    /// Operators' API tokens: create, list, revoke (also while the hub runs).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Rebuild the artifact index of a lost hub.db from the store's sidecars (ID.json).
    Reindex(ReindexArgs),
}

#[derive(clap::Args)]
struct ReindexArgs {
    /// The hub's data directory (hub.db is created there if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store the hub serves from (default: local disk under --data-dir).
    #[arg(long, env = "PERF_HUB_STORAGE", value_name = "s3://BUCKET[/PREFIX]")]
    storage: Option<String>,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; it is printed once, as the last word of the output (only its hash is kept).
    Create(TokenCreateArgs),
    /// List tokens: name, role, apps, created, expires, revoked (never the token).
    List(TokenDirArgs),
    /// Revoke a token: the hub refuses it from the next request on.
    Revoke(TokenRevokeArgs),
}

#[derive(clap::Args)]
struct TokenDirArgs {
    /// The hub's data directory (where hub.db is).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct TokenCreateArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Name shown in the audit (`token:NAME@IP`): 1-64 of A-Z a-z 0-9 - _ .
    #[arg(long)]
    name: String,
    /// viewer, operator or admin.
    #[arg(long, value_parser = ["viewer", "operator", "admin"])]
    role: String,
    /// Limit the token to these apps (comma-separated); default: every app.
    #[arg(long, value_delimiter = ',')]
    apps: Vec<String>,
    /// The token stops working this many days from now.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    expires_days: Option<u64>,
}

#[derive(clap::Args)]
struct TokenRevokeArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// The token's name.
    name: String,
}

#[derive(clap::Args)]
struct FlamegraphArgs {
    /// .cpuprofile, .heapprofile, perf script text or folded stacks (detected from the content).
    profile: PathBuf,
    /// Where to write the SVG.
    #[arg(short, long)]
    output: PathBuf,
    /// Title on top of the graph.
    #[arg(long)]
    title: Option<String>,
    /// Second line under the title.
    #[arg(long)]
    subtitle: Option<String>,
    /// Fixed width in pixels (default: fills the browser window).
    #[arg(long)]
    width: Option<usize>,
    /// Also write the folded stacks here.
    #[arg(long)]
    folded: Option<PathBuf>,
}

#[derive(clap::Args)]
struct HeapArgs {
    /// One JSON document on stdout instead of text tables.
    #[arg(long)]
    json: bool,
    /// How many of the largest (or new) objects to list.
    #[arg(long)]
    top: Option<usize>,
    /// Skip retainer paths (faster on huge snapshots).
    #[arg(long)]
    no_paths: bool,
    /// Retention rules: Chrome DevTools' (default) or memlab's.
    #[arg(long, value_enum, default_value = "devtools")]
    model: HeapModel,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HeapModel {
    Devtools,
    Memlab,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    file: PathBuf,
    #[command(flatten)]
    heap: HeapArgs,
}

#[derive(clap::Args)]
struct DiffArgs {
    before: PathBuf,
    after: PathBuf,
    #[command(flatten)]
    heap: HeapArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// JSON config file with the same settings (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where artifacts, metadata (SQLite) and the audit log live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address agents connect to.
    #[arg(long)]
    agent_addr: Option<SocketAddr>,
    /// Address of the HTTP API and console.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Operator API token (generated and written to DATA_DIR/operator-token if not given).
    #[arg(long, env = "PERF_HUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// An app agents may connect as, NAME:SECRET (repeatable; the same NAME twice keeps both
    /// secrets, for rotation). Shows in `ps`: prefer PERF_HUB_APPS, the config file or
    /// --app-secrets-file.
    #[arg(long = "app", value_name = "NAME:SECRET")]
    apps: Vec<String>,
    /// File of `NAME:SECRET` lines (mode 0600; `#` comments), merged with --app and PERF_HUB_APPS.
    #[arg(long, env = "PERF_HUB_APP_SECRETS_FILE", value_name = "FILE")]
    app_secrets_file: Option<PathBuf>,
    /// PEM certificate chain: both ports speak TLS (agents over TCP, the API as HTTPS).
    #[arg(long, env = "PERF_HUB_TLS_CERT", value_name = "FILE.pem", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PERF_HUB_TLS_KEY", value_name = "FILE.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS (refused otherwise): only when
    /// another layer (a TLS-terminating proxy, a private network) protects the ports.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Largest artifact accepted, in MiB.
    #[arg(long)]
    max_artifact_mb: Option<u64>,
    /// How long disconnected processes stay listed, in seconds.
    #[arg(long, default_value_t = 3600)]
    process_ttl_secs: u64,
    /// How long metric history is kept, in hours (full resolution for the last hour, then
    /// one sample per minute).
    #[arg(long, default_value_t = 168)]
    metrics_retention_hours: u64,
    #[command(flatten)]
    storage: StorageArgs,
}

/// Where artifact bytes live and how long (docs/storage.md).
#[derive(clap::Args)]
struct StorageArgs {
    /// s3://BUCKET[/PREFIX]: keep artifact bytes in that S3-compatible store (credentials,
    /// region, endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_ALLOW_HTTP; SSE from AWS_SERVER_SIDE_ENCRYPTION, AWS_SSE_KMS_KEY_ID).
    /// Default: local disk under --data-dir.
    #[arg(long, env = "PERF_HUB_STORAGE", value_name = "s3://BUCKET[/PREFIX]")]
    storage: Option<String>,
    /// Delete ready, unpinned artifacts older than this many days (0: never) [default: 30].
    #[arg(long)]
    retain_days: Option<u64>,
    /// Delete ready, unpinned artifacts, oldest first, while they take more than this many GB.
    #[arg(long, value_name = "GB")]
    retain_max_gb: Option<f64>,
    /// Local disk: refuse captures and uploads that would leave less than this many MiB free
    /// (kept for hub.db and the audit log) [default: 64].
    #[arg(long, value_name = "MIB")]
    min_free_mb: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PERF_HUB_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Serve(args) => serve(args),
        Cmd::Flamegraph(a) => std::process::exit(flamegraph(a)),
        Cmd::Analyze(a) => std::process::exit(heap_cli("analyze", vec![a.file], a.heap)),
        Cmd::Diff(a) => std::process::exit(heap_cli("diff", vec![a.before, a.after], a.heap)),
        Cmd::Token(t) => token(t),
        Cmd::Reindex(a) => reindex(a),
    }
}

/// `perf-hub token …`: works on `DATA_DIR/hub.db` directly (WAL and a busy timeout let it do
/// so next to a running hub, which reads the table on every request).
fn token(cmd: TokenCmd) -> anyhow::Result<()> {
    use perf_hub::operators::{self, NewToken, Role};
    let open = |dir: &std::path::Path| -> anyhow::Result<perf_hub::store::Store> {
        anyhow::ensure!(dir.is_dir(), "no data directory {}", dir.display());
        let path = dir.join("hub.db");
        create_private_if_missing(&path)?;
        perf_hub::store::Store::open(&path).with_context(|| format!("opening {}", path.display()))
    };
    match cmd {
        TokenCmd::Create(a) => {
            let store = open(&a.data_dir)?;
            let role = Role::parse(&a.role).context("role must be viewer, operator or admin")?;
            let expires_at = a.expires_days.map(operators::expiry_in_days).transpose()?;
            let new = NewToken { name: a.name.clone(), role, apps: a.apps, expires_at };
            let token = operators::create(&store, new)?;
            println!("Created {role} token '{}'. It is shown only now; keep it secret:\n{token}", a.name);
        }
        TokenCmd::List(a) => {
            let tokens = operators::list(&open(&a.data_dir)?)?;
            println!("{:<24} {:<8} {:<24} {:<24} {:<24} REVOKED", "NAME", "ROLE", "APPS", "CREATED", "EXPIRES");
            for t in tokens {
                let apps = if t.apps.is_empty() { "*".to_string() } else { t.apps.join(",") };
                let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                println!(
                    "{:<24} {:<8} {:<24} {:<24} {:<24} {}",
                    t.name,
                    t.role,
                    apps,
                    t.created_at,
                    or_dash(t.expires_at),
                    or_dash(t.revoked_at)
                );
            }
        }
        TokenCmd::Revoke(a) => {
            operators::revoke(&open(&a.data_dir)?, &a.name)?;
            println!("Revoked token '{}'.", a.name);
        }
    }
    Ok(())
}

/// `perf-hub reindex`: puts back the records of the artifacts in the store that hub.db lacks.
fn reindex(a: ReindexArgs) -> anyhow::Result<()> {
    perf_hub::private_files::prepare_data_dir(&a.data_dir)?;
    let path = a.data_dir.join("hub.db");
    create_private_if_missing(&path)?;
    let store = perf_hub::store::Store::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let storage = perf_hub::storage::Storage::open(&a.data_dir, a.storage.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(async {
        storage
            .probe()
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the artifact store {}: {e}", storage.describe()))?;
        anyhow::Ok(perf_hub::storage::reindex::reindex(&storage, &store).await?)
    })?;
    println!(
        "Reindexed {}: {} artifacts restored, {} already known, {} skipped (see the log).",
        storage.describe(),
        report.restored,
        report.known,
        report.skipped
    );
    Ok(())
}

fn flamegraph(a: FlamegraphArgs) -> i32 {
    let render =
        perf_flamegraph::RenderOptions { title: a.title, subtitle: a.subtitle, width: a.width, ..Default::default() };
    let args =
        perf_flamegraph::FlamegraphArgs { input: Some(a.profile), output: Some(a.output), folded: a.folded, render };
    perf_flamegraph::run_flamegraph_args(&args)
}

fn heap_cli(sub: &str, files: Vec<PathBuf>, h: HeapArgs) -> i32 {
    let mut opts = perf_heap_analysis::AnalyzeOptions {
        model: match h.model {
            HeapModel::Devtools => perf_heap_analysis::Model::DevTools,
            HeapModel::Memlab => perf_heap_analysis::Model::Memlab,
        },
        paths: !h.no_paths,
        ..Default::default()
    };
    if let Some(n) = h.top {
        opts.top_objects = n;
        opts.top_new_objects = n;
    }
    let files = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    perf_heap_analysis::run_cli(sub, &perf_heap_analysis::CliCommand { files, json: h.json, quiet: h.quiet, opts })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve_config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let running = perf_hub::start(config).await?;
        let c = &running.hub.config;
        let tls = c.tls_cert.is_some();
        for (what, addr) in [("agents", running.agent_addr), ("http", running.http_addr)] {
            if !tls && !addr.ip().is_loopback() {
                tracing::warn!(%addr, "{what} listener is reachable from other hosts in plaintext (--insecure-plaintext)");
            }
        }
        tracing::info!(agent_addr = %running.agent_addr, http_addr = %running.http_addr, tls,
            data_dir = %c.data_dir.display(), apps = c.apps.len(), "perf-hub listening");
        shutdown_signal().await;
        tracing::info!("shutting down");
        running.abort();
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn resolve_config(args: ServeArgs) -> anyhow::Result<HubConfig> {
    let file: FileConfig = match &args.config {
        Some(p) => {
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./perf-hub-data"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let secrets_file = args.app_secrets_file.clone().or(file.app_secrets_file);
    let apps = resolve_apps(&args.apps, file.apps, secrets_file.as_ref())?;
    if apps.is_empty() {
        tracing::warn!("no apps configured (--app NAME:SECRET): no agent can connect");
    }
    let token = match args.token.or(file.token) {
        Some(t) if t.len() < 16 => bail!("the operator token must be at least 16 characters"),
        Some(t) => t,
        None => generated_token(&data_dir)?,
    };
    let defaults = HubConfig::defaults(data_dir.clone());
    let (tls_cert, tls_key) = match (args.tls_cert, args.tls_key) {
        (None, None) => (file.tls_cert, file.tls_key),
        flags => flags,
    };
    let mut config = HubConfig {
        tls_cert,
        tls_key,
        insecure_plaintext: args.insecure_plaintext || file.insecure_plaintext.unwrap_or(false),
        agent_addr: args.agent_addr.or(file.agent_addr).unwrap_or(defaults.agent_addr),
        http_addr: args.http_addr.or(file.http_addr).unwrap_or(defaults.http_addr),
        token,
        apps,
        process_ttl_ms: args.process_ttl_secs.saturating_mul(1000),
        metrics_max_age_ms: args.metrics_retention_hours.saturating_mul(3_600_000),
        max_artifact_bytes: args
            .max_artifact_mb
            .map(|mb| mb.saturating_mul(1 << 20))
            .or(file.max_artifact_bytes)
            .unwrap_or(defaults.max_artifact_bytes),
        storage: args.storage.storage.or(file.storage),
        retain_days: args.storage.retain_days.or(file.retain_days).unwrap_or(defaults.retain_days),
        min_free_bytes: args
            .storage
            .min_free_mb
            .map(|mb| mb.saturating_mul(1 << 20))
            .unwrap_or(defaults.min_free_bytes),
        retain_max_bytes: args.storage.retain_max_gb.or(file.retain_max_gb).map(|gb| (gb.max(0.0) * 1e9) as u64),
        ..defaults
    };
    file.limits.apply(&mut config).map_err(anyhow::Error::msg)?;
    perf_hub::config::file_rules(file.rules, &mut config, &file.autopilot).map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// Apps and their secrets from the config file, --app-secrets-file, --app flags and
/// PERF_HUB_APPS, in that order; an app named twice keeps both secrets (rotation), never more.
fn resolve_apps(
    flags: &[String],
    from_file: BTreeMap<String, perf_hub::config::FileSecrets>,
    secrets_file: Option<&PathBuf>,
) -> anyhow::Result<BTreeMap<String, AppSecrets>> {
    let mut apps: BTreeMap<String, AppSecrets> = BTreeMap::new();
    for (name, secrets) in from_file {
        for secret in secrets.into_vec() {
            add_app_secret(&mut apps, &name, secret).map_err(|e| anyhow::anyhow!("config file: {e}"))?;
        }
    }
    if let Some(path) = secrets_file {
        warn_if_readable_by_others(path);
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        parse_app_secrets_file(&text, &mut apps).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let env_apps = std::env::var("PERF_HUB_APPS").unwrap_or_default();
    for spec in flags.iter().map(String::as_str).chain(env_apps.split(',').map(str::trim).filter(|s| !s.is_empty())) {
        add_app(&mut apps, spec).map_err(anyhow::Error::msg)?;
    }
    Ok(apps)
}

/// A secrets file others can read leaks every app's secret to every local user.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                    "app secrets file is readable by group or others: chmod 600 it");
            }
        }
    }
}

/// Without a configured token, make one and keep it in a file only the owner can read.
fn generated_token(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("operator-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if t.trim().len() >= 16 {
            return Ok(t.trim().to_string());
        }
    }
    let token = perf_hub::ids::new_secret().map_err(|e| anyhow::anyhow!("rng: {e}"))?;
    write_private(&path, &token)?;
    tracing::warn!(path = %path.display(), "no --token given: generated an operator token and wrote it there");
    Ok(token)
}

/// A new `hub.db` made by `perf-hub token` is the owner's only (SQLite gives its -wal and -shm
/// files the database file's mode): it holds token hashes and upload tokens.
fn create_private_if_missing(path: &std::path::Path) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())?;
    Ok(())
}
