//! perf-hub-capacity: how many agents one perf-hub carries, measured against the real binary.
//!
//! It starts `perf-hub serve` (temp data dir, an app secret, an operator token), one real Node
//! agent (`__test__/fixtures/app.js`) and N simulated agents over the real wire protocol, ramps
//! them up at a bounded rate, waits for a steady-state window and prints the hub's CPU and
//! memory, the latency of `GET /api/processes` and of a command to the real agent. Everything
//! it starts is stopped on exit, on error and on Ctrl-C; every wait is bounded.
//! See bench/hub-capacity/README.md.

mod http;
mod procfs;
mod sim;

use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::time::Instant;

const USAGE: &str = "\
perf-hub-capacity: capacity benchmark of perf-hub (simulated agents over the real protocol)

USAGE: perf-hub-capacity [OPTIONS]      (run from the repository root)

  --agents N            simulated agents, each its own TCP connection        [10000]
  --hub-bin PATH        perf-hub binary   [target/release/perf-hub, else target/debug/perf-hub]
  --steady-secs S       steady-state window the CPU figure covers             [30]
  --settle-secs S       wait after the last agent connected, before the window [5]
  --connect-rate R      new connections per second during the ramp; 0 = all at once [500]
  --handshakes K        concurrent handshakes at most; 0 = unbounded            [256]
  --metrics-secs S      metrics sample interval of each simulated agent       [5]
  --max-reconnects K    failed handshakes + dropped links per simulated agent before it gives up [1000]
  --ramp-timeout-secs S give up waiting for the ramp after S   [2 x agents/rate + 60]
  --list-calls K        GET /api/processes calls timed                          [5]
  --command-calls K     cpu_profile commands timed                              [5]
  --no-real-agent       don't start the Node agent (no command latency)
  --node PATH           node binary for the real agent                         [node]
  --root DIR            repository root (for the fixture and default hub path)  [.]
  --json FILE           also write the results as JSON
  --keep-data           keep the hub's temp data dir (its path is printed)
  -h, --help
";

#[derive(Debug, Clone)]
struct Args {
    agents: usize,
    hub_bin: Option<PathBuf>,
    steady_secs: u64,
    settle_secs: u64,
    connect_rate: u32,
    handshakes: usize,
    metrics_secs: u64,
    max_reconnects: u32,
    ramp_timeout_secs: Option<u64>,
    list_calls: usize,
    command_calls: usize,
    real_agent: bool,
    node: String,
    root: PathBuf,
    json: Option<PathBuf>,
    keep_data: bool,
}

fn parse_args(argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        agents: 10_000,
        hub_bin: None,
        steady_secs: 30,
        settle_secs: 5,
        connect_rate: 500,
        handshakes: 256,
        metrics_secs: 5,
        max_reconnects: 1000,
        ramp_timeout_secs: None,
        list_calls: 5,
        command_calls: 5,
        real_agent: true,
        node: "node".into(),
        root: PathBuf::from("."),
        json: None,
        keep_data: false,
    };
    let mut it = argv.peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{flag} needs a value"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: '{v}' is not a valid number"))
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--agents" => a.agents = num(&flag, value()?)?,
            "--hub-bin" => a.hub_bin = Some(PathBuf::from(value()?)),
            "--steady-secs" => a.steady_secs = num(&flag, value()?)?,
            "--settle-secs" => a.settle_secs = num(&flag, value()?)?,
            "--connect-rate" => a.connect_rate = num(&flag, value()?)?,
            "--handshakes" => a.handshakes = num(&flag, value()?)?,
            "--metrics-secs" => a.metrics_secs = num(&flag, value()?)?,
            "--max-reconnects" => a.max_reconnects = num(&flag, value()?)?,
            "--ramp-timeout-secs" => a.ramp_timeout_secs = Some(num(&flag, value()?)?),
            "--list-calls" => a.list_calls = num(&flag, value()?)?,
            "--command-calls" => a.command_calls = num(&flag, value()?)?,
            "--no-real-agent" => a.real_agent = false,
            "--node" => a.node = value()?,
            "--root" => a.root = PathBuf::from(value()?),
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--keep-data" => a.keep_data = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.metrics_secs == 0 || a.metrics_secs > 3600 {
        return Err("--metrics-secs must be 1..=3600".into());
    }
    if a.steady_secs > 24 * 3600 || a.settle_secs > 3600 {
        return Err("--steady-secs / --settle-secs out of range".into());
    }
    if a.list_calls == 0 || a.list_calls > 1000 || a.command_calls > 1000 {
        return Err("--list-calls must be 1..=1000, --command-calls 0..=1000".into());
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("perf-hub-capacity: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // One thread: the simulated agents' work is small, and the hub should get the cores.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perf-hub-capacity: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        let mut kids = Children { keep_data: args.keep_data, ..Children::default() };
        let outcome = tokio::select! {
            r = run(&args, &mut kids) => Some(r),
            s = signals() => {
                eprintln!("\n{s}: stopping everything this benchmark started");
                None
            }
        };
        if let Some(Err(e)) = &outcome {
            eprintln!("perf-hub-capacity: {e}");
            kids.print_tails();
        }
        kids.stop().await;
        match outcome {
            Some(Ok(())) => 0u8,
            Some(Err(_)) => 1,
            None => 130,
        }
    });
    // Dropping the runtime closes every simulated agent's socket that is still open.
    drop(rt);
    ExitCode::from(code)
}

async fn signals() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
        (Ok(mut int), Ok(mut term), Ok(mut hup)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Last lines of a child's output, for error reports.
type Tail = Arc<Mutex<VecDeque<String>>>;

fn push_tail(tail: &Tail, line: String, keep: usize) {
    if let Ok(mut t) = tail.lock() {
        if t.len() >= keep {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// The processes (and the temp dir) this benchmark started; `stop` ends them all.
#[derive(Default)]
struct Children {
    hub: Option<Child>,
    node: Option<Child>,
    data_dir: Option<PathBuf>,
    keep_data: bool,
    hub_tail: Tail,
    node_tail: Tail,
}

impl Children {
    /// Err if the hub (or the real agent) has exited on its own.
    fn check_alive(&mut self) -> Result<(), String> {
        if let Some(h) = self.hub.as_mut() {
            if let Ok(Some(st)) = h.try_wait() {
                return Err(format!("perf-hub exited unexpectedly ({st})"));
            }
        }
        if let Some(n) = self.node.as_mut() {
            if let Ok(Some(st)) = n.try_wait() {
                return Err(format!("the real Node agent exited unexpectedly ({st})"));
            }
        }
        Ok(())
    }

    fn print_tails(&self) {
        for (name, tail) in [("perf-hub", &self.hub_tail), ("node agent", &self.node_tail)] {
            let Ok(t) = tail.lock() else { continue };
            if !t.is_empty() {
                eprintln!("--- last lines of {name}'s output ---");
                for l in t.iter() {
                    eprintln!("{l}");
                }
            }
        }
    }

    async fn stop(&mut self) {
        if let Some(c) = self.node.take() {
            terminate(c, "node agent", Duration::from_secs(5)).await;
        }
        if let Some(c) = self.hub.take() {
            terminate(c, "perf-hub", Duration::from_secs(20)).await;
        }
        if let Some(d) = self.data_dir.take() {
            if self.keep_data {
                eprintln!("hub data kept in {}", d.display());
            } else if let Err(e) = std::fs::remove_dir_all(&d) {
                eprintln!("could not remove {}: {e}", d.display());
            }
        }
    }
}

/// SIGTERM to the child's own process group, SIGKILL after `grace` (or a second Ctrl-C).
async fn terminate(mut c: Child, name: &str, grace: Duration) {
    if let Ok(Some(_)) = c.try_wait() {
        return;
    }
    let Some(pid) = c.id() else { return };
    signal_group(pid, libc::SIGTERM);
    let done = tokio::select! {
        r = tokio::time::timeout(grace, c.wait()) => r.is_ok(),
        _ = tokio::signal::ctrl_c() => false,
    };
    if !done {
        eprintln!("{name} (pid {pid}) did not stop after SIGTERM: SIGKILL");
        signal_group(pid, libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
    }
}

fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the process group we created for this child (process_group(0)).
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

/// A child in its own process group (so the terminal's Ctrl-C reaches us, and we stop it in
/// order), killed if this process dies without cleaning up (PR_SET_PDEATHSIG) or drops it.
fn child_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.process_group(0).kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    // Children are spawned from the runtime's only thread (the main thread), which lives until
    // the process exits, so the death signal fires exactly when this process is gone.
    unsafe {
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    c
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `agent_addr=… http_addr=…` from the hub's "perf-hub listening" log line.
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let field = |key: &str| -> Option<SocketAddr> {
        let i = line.find(key)? + key.len();
        line[i..].split_whitespace().next()?.parse().ok()
    };
    Some((field("agent_addr=")?, field("http_addr=")?))
}

#[derive(Default)]
struct HubLog {
    warnings: u64,
    errors: u64,
    samples: Vec<String>,
}

struct Hub {
    pid: u32,
    agent_addr: SocketAddr,
    http_addr: SocketAddr,
    log: Arc<Mutex<HubLog>>,
}

fn default_hub_bin(root: &Path) -> PathBuf {
    let release = root.join("target/release/perf-hub");
    if release.exists() {
        release
    } else {
        root.join("target/debug/perf-hub")
    }
}

async fn start_hub(
    kids: &mut Children,
    bin: &Path,
    data_dir: &Path,
    token: &str,
    app: &str,
    secret: &str,
) -> Result<Hub, String> {
    let mut cmd = child_command(bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--token", token])
        .arg("--app")
        .arg(format!("{app}:{secret}"))
        .env("NO_COLOR", "1")
        .env_remove("PERF_HUB_APPS")
        .env_remove("PERF_HUB_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id().ok_or("perf-hub exited at once")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    kids.hub = Some(child);
    let (tx, rx) = oneshot::channel();
    let log = Arc::new(Mutex::new(HubLog::default()));
    let (tail, log2) = (kids.hub_tail.clone(), log.clone());
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = strip_ansi(&line);
            if let Some(addrs) = tx.is_some().then(|| listening_addrs(&line)).flatten() {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addrs);
                }
            }
            let (warn, err) = (line.contains(" WARN "), line.contains(" ERROR "));
            if warn || err {
                if let Ok(mut l) = log2.lock() {
                    l.warnings += warn as u64;
                    l.errors += err as u64;
                    if l.samples.len() < 10 {
                        l.samples.push(line.clone());
                    }
                }
            }
            push_tail(&tail, line, 40);
        }
    });
    let (agent_addr, http_addr) = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .map_err(|_| "perf-hub did not report its listening addresses within 30 s".to_string())?
        .map_err(|_| "perf-hub exited before listening".to_string())?;
    for a in [agent_addr, http_addr] {
        if !a.ip().is_loopback() {
            return Err(format!("perf-hub listens on {a}, not on loopback"));
        }
    }
    Ok(Hub { pid, agent_addr, http_addr, log })
}

/// Starts `node __test__/fixtures/app.js` against the hub; returns its process id in the hub.
async fn start_real_agent(
    kids: &mut Children,
    a: &Args,
    hub: &Hub,
    app: &str,
    secret: &str,
) -> Result<(String, u32), String> {
    let fixture = a.root.join("__test__/fixtures/app.js");
    if !fixture.exists() {
        return Err(format!("{} not found: run from the repository root or pass --root", fixture.display()));
    }
    let mut cmd = child_command(&a.node);
    cmd.arg(&fixture)
        .current_dir(&a.root)
        .env("PERF_AGENT_HUB", hub.agent_addr.to_string())
        .env("PERF_AGENT_APP", app)
        .env("PERF_AGENT_SECRET", secret)
        .env("PERF_AGENT_LABELS", "bench=real")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", a.node))?;
    let pid = child.id().ok_or("node exited at once")?;
    let (stdout, stderr) = (child.stdout.take().ok_or("no stdout")?, child.stderr.take().ok_or("no stderr")?);
    kids.node = Some(child);
    let (tx, rx) = oneshot::channel::<String>();
    let tail = kids.node_tail.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("ready ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.to_string());
                }
            }
            push_tail(&tail, line, 20);
        }
    });
    let tail = kids.node_tail.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            push_tail(&tail, line, 20);
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .map_err(|_| "the real Node agent did not print 'ready' within 30 s".to_string())?
        .map_err(|_| "the real Node agent exited before it was ready".to_string())?;
    let status: serde_json::Value =
        serde_json::from_str(&ready).map_err(|e| format!("bad ready line '{ready}': {e}"))?;
    let id = status["processId"].as_str().ok_or_else(|| format!("no processId in '{ready}'"))?.to_string();
    Ok((id, pid))
}

fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

fn max(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::max)
}

fn percentile_us(v: &mut [u32], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i] as f64 / 1000.0)
}

/// One complete listing: every page of `GET /api/processes?limit=10000`.
struct Listing {
    http_secs: f64,
    pages: usize,
    bytes: usize,
    items: Vec<serde_json::Value>,
}

async fn list_processes(client: &http::Client) -> Result<Listing, String> {
    let mut path = "/api/processes?limit=10000".to_string();
    let mut out = Listing { http_secs: 0.0, pages: 0, bytes: 0, items: Vec::new() };
    for _ in 0..1000 {
        let r = client.get(&path, Duration::from_secs(120)).await?;
        if r.status != 200 {
            return Err(format!("GET {path}: HTTP {} {}", r.status, r.text()));
        }
        out.http_secs += r.elapsed.as_secs_f64();
        out.pages += 1;
        out.bytes += r.body.len();
        match r.json()? {
            serde_json::Value::Array(items) => out.items.extend(items),
            other => return Err(format!("GET {path}: expected a JSON array, got {}", short(&other))),
        }
        match http::next_link(r.header("link")) {
            Some(next) => path = next,
            None => return Ok(out),
        }
    }
    Err("GET /api/processes: more than 1000 pages".into())
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    s.chars().take(200).collect()
}

struct CommandRun {
    accepted_secs: Vec<f64>,
    ready_secs: Vec<f64>,
    final_status: Vec<String>,
    errors: Vec<String>,
}

/// `POST /api/processes/{id}/commands` cpu_profile 1 s, `n` times; each waits for the previous
/// artifact to finish (the agent runs one capture at a time).
async fn measure_commands(client: &http::Client, id: &str, n: usize) -> CommandRun {
    let mut run = CommandRun { accepted_secs: vec![], ready_secs: vec![], final_status: vec![], errors: vec![] };
    let path = format!("/api/processes/{id}/commands");
    for _ in 0..n * 3 {
        if run.accepted_secs.len() >= n {
            break;
        }
        let t0 = Instant::now();
        match client.post_json(&path, r#"{"kind":"cpu_profile","seconds":1}"#, Duration::from_secs(30)).await {
            Ok(r) if r.status == 202 => {
                run.accepted_secs.push(r.elapsed.as_secs_f64());
                let artifact = r.json().ok().and_then(|v| v["artifact"]["id"].as_str().map(str::to_string));
                let Some(artifact) = artifact else {
                    run.errors.push(format!("202 without an artifact id: {}", r.text()));
                    continue;
                };
                let status = wait_artifact(client, &artifact, Duration::from_secs(30)).await;
                if status == "ready" {
                    run.ready_secs.push(t0.elapsed().as_secs_f64());
                }
                run.final_status.push(status);
            }
            Ok(r) => {
                run.errors.push(format!("HTTP {}: {}", r.status, r.text()));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                run.errors.push(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    run
}

async fn wait_artifact(client: &http::Client, id: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    let mut last = "unknown".to_string();
    while t0.elapsed() < limit {
        if let Ok(r) = client.get(&format!("/api/artifacts/{id}"), Duration::from_secs(30)).await {
            if let Some(s) = r.json().ok().and_then(|v| v["status"].as_str().map(str::to_string)) {
                if matches!(s.as_str(), "ready" | "failed" | "deleted") {
                    return s;
                }
                last = s;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    format!("{last} (still, after {limit:?})")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn fmt_secs(x: Option<f64>) -> String {
    x.map(|s| format!("{s:.3} s")).unwrap_or_else(|| "-".into())
}

async fn run(a: &Args, kids: &mut Children) -> Result<(), String> {
    // ---- limits ----
    let nofile = procfs::raise_nofile()?;
    eprintln!(
        "RLIMIT_NOFILE: soft {} -> {} (hard {}); perf-hub and node inherit it",
        nofile.soft_before, nofile.soft, nofile.hard
    );
    let need = a.agents as u64 + 128;
    if need > nofile.soft {
        return Err(format!(
            "{} agents need about {need} open files in this process and in the hub, but the limit is {} \
             (raise the hard limit: ulimit -Hn, LimitNOFILE=, /etc/security/limits.conf)",
            a.agents, nofile.soft
        ));
    }
    if let Some(ports) = procfs::ephemeral_ports() {
        if a.agents as u64 + 1000 > ports {
            return Err(format!(
                "{} loopback connections to one hub port need more than the {ports} ephemeral ports \
                 (net.ipv4.ip_local_port_range)",
                a.agents
            ));
        }
    }

    // ---- the hub ----
    let hub_bin = a.hub_bin.clone().unwrap_or_else(|| default_hub_bin(&a.root));
    if !hub_bin.exists() {
        return Err(format!("{} not found: cargo build --release -p perf-hub (or pass --hub-bin)", hub_bin.display()));
    }
    if hub_bin.to_string_lossy().contains("/debug/") {
        eprintln!("warning: measuring a debug build of perf-hub ({}); use --release figures", hub_bin.display());
    }
    let seed = (sim::now_ms() << 20) ^ u64::from(std::process::id()) ^ (Instant::now().elapsed().as_nanos() as u64);
    let mut rng = sim::Rng::new(seed);
    let run_tag = format!("{:016x}", rng.next_u64());
    let token = format!("capacity-token-{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let secret = format!("capacity-secret-{:016x}", rng.next_u64());
    let app = "capacity";
    let data_dir = std::env::temp_dir().join(format!("perf-hub-capacity-{}-{}", std::process::id(), &run_tag[..8]));
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    kids.data_dir = Some(data_dir.clone());
    let hub = start_hub(kids, &hub_bin, &data_dir, &token, app, &secret).await?;
    let hub_nofile = procfs::max_open_files(hub.pid);
    eprintln!(
        "perf-hub {} (pid {}): agents on {}, http on {}, data in {}; its open-files limit: {}",
        hub_bin.display(),
        hub.pid,
        hub.agent_addr,
        hub.http_addr,
        data_dir.display(),
        hub_nofile.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
    );
    let client = http::Client { addr: hub.http_addr, token: token.clone() };

    // ---- the real agent ----
    let real = if a.real_agent {
        let (id, pid) = start_real_agent(kids, a, &hub, app, &secret).await?;
        eprintln!("real Node agent (pid {pid}) connected as process {id}");
        Some((id, pid))
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = procfs::memory(hub.pid).unwrap_or_default();

    // ---- ramp ----
    let stats = Arc::new(sim::Stats::default());
    let permits = if a.handshakes == 0 { Semaphore::MAX_PERMITS } else { a.handshakes };
    let cfg = Arc::new(sim::SimConfig {
        hub: hub.agent_addr,
        app: app.to_string(),
        secret: secret.clone(),
        id_prefix: run_tag.clone(),
        metrics_every: Duration::from_secs(a.metrics_secs),
        max_reconnects: a.max_reconnects,
        handshakes: Arc::new(Semaphore::new(permits)),
        seed,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let n = a.agents;
    let ramp_timeout = Duration::from_secs(a.ramp_timeout_secs.unwrap_or_else(|| {
        if a.connect_rate == 0 {
            120
        } else {
            2 * n as u64 / a.connect_rate as u64 + 60
        }
    }));
    let rate_text = if a.connect_rate == 0 { "unlimited".to_string() } else { a.connect_rate.to_string() };
    let handshakes_text = if a.handshakes == 0 { "unlimited".to_string() } else { a.handshakes.to_string() };
    eprintln!(
        "ramp: {n} simulated agents at {rate_text} connects/s, at most {handshakes_text} handshakes at once \
         (timeout {ramp_timeout:?})"
    );
    let ramp_cpu0 = procfs::cpu_seconds(Some(hub.pid));
    let t_ramp = Instant::now();
    let deadline = t_ramp + ramp_timeout;
    let mut next_progress = t_ramp + Duration::from_secs(5);
    let progress = |stats: &sim::Stats, spawned: usize| {
        eprintln!(
            "  {:>6.1} s: {spawned} started, {} connected, {} failed handshakes, {} drops",
            t_ramp.elapsed().as_secs_f64(),
            stats.live.load(Relaxed),
            stats.failures(),
            stats.drops.load(Relaxed)
        );
    };
    let mut spawned = 0;
    for i in 0..n {
        if a.connect_rate > 0 {
            tokio::time::sleep_until(t_ramp + Duration::from_secs_f64(i as f64 / a.connect_rate as f64)).await;
        }
        tokio::spawn(sim::run_agent(cfg.clone(), stats.clone(), i, stop_rx.clone()));
        spawned += 1;
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(5);
            progress(&stats, spawned);
            kids.check_alive()?;
        }
        if Instant::now() >= deadline {
            eprintln!("ramp timeout: only {spawned} of {n} agents started");
            break;
        }
    }
    // Wait until every agent got in (or gave up), bounded by the ramp deadline.
    loop {
        let settled = stats.welcomed.load(Relaxed) + stats.gave_up.load(Relaxed);
        if stats.live.load(Relaxed) as usize >= spawned || settled as usize >= spawned {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("ramp timeout: {} of {n} agents connected", stats.live.load(Relaxed));
            break;
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(5);
            progress(&stats, spawned);
            kids.check_alive()?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = t_ramp.elapsed().as_secs_f64();
    let ramp_cores = match (ramp_cpu0, procfs::cpu_seconds(Some(hub.pid))) {
        (Some(c0), Some(c1)) => Some((c1 - c0) / ramp_secs),
        _ => None,
    };
    progress(&stats, spawned);
    let mut hs = stats.handshake_us.lock().map(|v| v.clone()).unwrap_or_default();
    let (hs_p50, hs_p99, hs_max) =
        (percentile_us(&mut hs, 0.5), percentile_us(&mut hs, 0.99), hs.last().map(|x| *x as f64 / 1000.0));
    kids.check_alive()?;

    // ---- steady state ----
    if a.settle_secs > 0 {
        eprintln!("settling {} s (every agent's first heartbeat and sample)", a.settle_secs);
        tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
    }
    eprintln!("steady-state window: {} s", a.steady_secs);
    let snap =
        |s: &sim::Stats| (s.metrics_sent.load(Relaxed), s.heartbeats_sent.load(Relaxed), s.bytes_sent.load(Relaxed));
    let (m0, h0, b0) = snap(&stats);
    let (cpu0, own0, disk0) =
        (procfs::cpu_seconds(Some(hub.pid)), procfs::cpu_seconds(None), procfs::dir_size(&data_dir));
    let threads0 = procfs::thread_cpu(hub.pid);
    let drops0 = stats.drops.load(Relaxed);
    let t_win = Instant::now();
    let win_end = t_win + Duration::from_secs(a.steady_secs);
    while Instant::now() < win_end {
        let step = (win_end - Instant::now()).min(Duration::from_secs(10));
        tokio::time::sleep(step).await;
        kids.check_alive()?;
        if Instant::now() < win_end {
            eprintln!(
                "  {:>5.1} s: {} connected, hub RSS {:.0} MB",
                t_win.elapsed().as_secs_f64(),
                stats.live.load(Relaxed),
                mb(procfs::memory(hub.pid).unwrap_or_default().rss)
            );
        }
    }
    let win_secs = t_win.elapsed().as_secs_f64();
    let (cpu1, own1, disk1) =
        (procfs::cpu_seconds(Some(hub.pid)), procfs::cpu_seconds(None), procfs::dir_size(&data_dir));
    let (m1, h1, b1) = snap(&stats);
    // Which hub threads did the work: a single busy thread is a serialization point.
    let mut busiest: Vec<(String, f64)> = procfs::thread_cpu(hub.pid)
        .into_iter()
        .map(|(tid, name, secs)| {
            let before = threads0.iter().find(|t| t.0 == tid).map(|t| t.2).unwrap_or(0.0);
            (format!("{name}[{tid}]"), (secs - before) / win_secs)
        })
        .filter(|(_, c)| *c > 0.0)
        .collect();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
    busiest.truncate(4);
    let mem = procfs::memory(hub.pid).unwrap_or_default();
    let own_mem = procfs::memory(std::process::id()).unwrap_or_default();
    let (load1, cpus) = procfs::load();
    let hub_fds = procfs::open_fds(hub.pid);
    let hub_cores = match (cpu0, cpu1) {
        (Some(c0), Some(c1)) => Some((c1 - c0) / win_secs),
        _ => None,
    };
    let own_cores = match (own0, own1) {
        (Some(c0), Some(c1)) => Some((c1 - c0) / win_secs),
        _ => None,
    };
    let drops_in_window = stats.drops.load(Relaxed) - drops0;

    // ---- API latency (the load keeps running) ----
    eprintln!("timing GET /api/processes x{}", a.list_calls);
    let mut list_secs = Vec::new();
    let mut last_listing = None;
    for _ in 0..a.list_calls {
        let l = list_processes(&client).await?;
        list_secs.push(l.http_secs);
        last_listing = Some(l);
    }
    let listing = last_listing.ok_or("no listing")?;
    let sims_listed = listing
        .items
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| id.starts_with(&run_tag)))
        .collect::<Vec<_>>();
    let sims_connected = sims_listed.iter().filter(|p| p["connected"] == json!(true)).count();
    let real_connected = real.as_ref().is_some_and(|(id, _)| {
        listing.items.iter().any(|p| p["id"].as_str() == Some(id.as_str()) && p["connected"] == json!(true))
    });

    let commands = match &real {
        Some((id, _)) if a.command_calls > 0 => {
            eprintln!("timing {} cpu_profile commands to the real agent", a.command_calls);
            Some(measure_commands(&client, id, a.command_calls).await)
        }
        _ => None,
    };
    kids.check_alive()?;
    let live_end = stats.live.load(Relaxed);
    let hub_log = hub.log.lock().map(|l| (l.warnings, l.errors, l.samples.clone())).unwrap_or_default();

    // ---- report ----
    let per_agent_kb = (mem.rss.saturating_sub(baseline.rss)) as f64 / n.max(1) as f64 / 1024.0;
    let metrics_rate = (m1 - m0) as f64 / win_secs;
    let beats_rate = (h1 - h0) as f64 / win_secs;
    let mbit_in = (b1 - b0) as f64 * 8.0 / win_secs / 1e6;
    let disk_rate = (disk1 as f64 - disk0 as f64) / win_secs;
    let cmd = commands.as_ref();
    let cmd_median = cmd.and_then(|c| median(&c.accepted_secs));
    let cmd_max = cmd.and_then(|c| max(&c.accepted_secs));
    let cmd_ready = cmd.and_then(|c| median(&c.ready_secs));

    let mut rows: Vec<(String, String)> = vec![
        ("simulated agents".into(), format!("{n} (+{} real Node agent)", real.is_some() as u8)),
        (
            "open-files limit".into(),
            format!(
                "{} (raised from {}, hard {}); hub: {}",
                nofile.soft,
                nofile.soft_before,
                nofile.hard,
                hub_nofile.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
            ),
        ),
        (
            "ramp".into(),
            format!(
                "{} connected in {ramp_secs:.1} s (target {}/s, {} handshakes at once); {} failed handshakes",
                stats.welcomed.load(Relaxed),
                rate_text,
                handshakes_text,
                stats.failures()
            ),
        ),
        (
            "handshake (hello→welcome)".into(),
            format!(
                "p50 {}, p99 {}, max {}",
                hs_p50.map(|x| format!("{x:.1} ms")).unwrap_or_else(|| "-".into()),
                hs_p99.map(|x| format!("{x:.1} ms")).unwrap_or_else(|| "-".into()),
                hs_max.map(|x| format!("{x:.1} ms")).unwrap_or_else(|| "-".into())
            ),
        ),
        ("hub CPU during ramp".into(), ramp_cores.map(|c| format!("{c:.2} cores")).unwrap_or_else(|| "-".into())),
        (
            format!("hub CPU ({:.0} s window)", win_secs),
            hub_cores.map(|c| format!("{c:.3} cores")).unwrap_or_else(|| "-".into()),
        ),
        (
            "busiest hub threads (window)".into(),
            busiest.iter().map(|(n, c)| format!("{n} {c:.2}")).collect::<Vec<_>>().join(", "),
        ),
        (
            "hub memory".into(),
            format!(
                "VmRSS {:.0} MB, VmHWM {:.0} MB (before the agents: {:.0} MB; ≈ {per_agent_kb:.1} KB per agent)",
                mb(mem.rss),
                mb(mem.hwm),
                mb(baseline.rss)
            ),
        ),
        ("hub open fds".into(), hub_fds.map(|x| x.to_string()).unwrap_or_else(|| "?".into())),
        (
            format!("GET /api/processes (x{})", list_secs.len()),
            format!(
                "median {}, max {} ({} processes, {} page(s), {:.1} MB)",
                fmt_secs(median(&list_secs)),
                fmt_secs(max(&list_secs)),
                listing.items.len(),
                listing.pages,
                mb(listing.bytes as u64)
            ),
        ),
        (
            "command accepted (202)".into(),
            match cmd {
                Some(c) => format!(
                    "median {}, max {} ({} of {} accepted; artifact ready after {} median; {} error(s))",
                    fmt_secs(cmd_median),
                    fmt_secs(cmd_max),
                    c.accepted_secs.len(),
                    a.command_calls,
                    fmt_secs(cmd_ready),
                    c.errors.len()
                ),
                None => "- (no real agent)".into(),
            },
        ),
        (
            "sim agents connected at end".into(),
            format!(
                "{sims_connected} / {n} in the hub's list ({} listed); {live_end} live links here; real agent {}",
                sims_listed.len(),
                if real.is_none() {
                    "-"
                } else if real_connected {
                    "connected"
                } else {
                    "NOT connected"
                }
            ),
        ),
        (
            "agent traffic (window)".into(),
            format!(
                "{metrics_rate:.0} metrics/s + {beats_rate:.0} heartbeats/s, {mbit_in:.1} Mbit/s in; \
                 {drops_in_window} links dropped ({} since the start, {} agents gave up)",
                stats.drops.load(Relaxed),
                stats.gave_up.load(Relaxed)
            ),
        ),
        ("hub data dir".into(), format!("{:.0} MB at the end, grew {:.2} MB/s", mb(disk1), disk_rate / 1e6)),
        (
            "bench client CPU".into(),
            format!(
                "{}, {:.0} MB RSS (same machine)",
                own_cores.map(|c| format!("{c:.3} cores")).unwrap_or_else(|| "-".into()),
                mb(own_mem.rss)
            ),
        ),
        ("hub log".into(), format!("{} warnings, {} errors", hub_log.0, hub_log.1)),
        (
            "machine load (end of window)".into(),
            format!("{} on {cpus} CPUs", load1.map(|l| format!("{l:.2}")).unwrap_or_else(|| "?".into())),
        ),
    ];
    if let Ok(errs) = stats.errors.lock() {
        if !errs.is_empty() {
            rows.push(("first agent errors".into(), errs.join(" | ")));
        }
    }
    if let Some(c) = cmd {
        if !c.errors.is_empty() {
            rows.push(("command errors".into(), c.errors.join(" | ")));
        }
    }
    let w = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(10);
    println!();
    println!("perf-hub capacity ({})", hub_bin.display());
    println!("| {:<w$} | value", "measure");
    println!("|-{}-|------", "-".repeat(w));
    for (k, v) in &rows {
        println!("| {k:<w$} | {v}");
    }

    if let Some(path) = &a.json {
        let doc = json!({
            "agents": n,
            "real_agent": real.is_some(),
            "hub_bin": hub_bin.display().to_string(),
            "nofile": {"soft_before": nofile.soft_before, "soft": nofile.soft, "hard": nofile.hard, "hub": hub_nofile},
            "ramp": {
                "secs": ramp_secs, "connect_rate": a.connect_rate, "max_handshakes": a.handshakes,
                "welcomed": stats.welcomed.load(Relaxed), "failed_handshakes": stats.failures(),
                "connect_errors": stats.connect_errors.load(Relaxed),
                "handshake_timeouts": stats.handshake_timeouts.load(Relaxed),
                "refused": stats.refused.load(Relaxed), "gave_up": stats.gave_up.load(Relaxed),
                "handshake_ms": {"p50": hs_p50, "p99": hs_p99, "max": hs_max},
                "hub_cores": ramp_cores,
            },
            "window_secs": win_secs,
            "hub_cpu_cores": hub_cores,
            "hub_busiest_threads_cores": busiest.iter().map(|(n, c)| json!({"thread": n, "cores": c})).collect::<Vec<_>>(),
            "hub_rss_bytes": mem.rss,
            "hub_hwm_bytes": mem.hwm,
            "hub_rss_before_agents_bytes": baseline.rss,
            "hub_rss_per_agent_bytes": per_agent_kb * 1024.0,
            "hub_open_fds": hub_fds,
            "list_processes": {
                "secs": list_secs, "median_secs": median(&list_secs), "max_secs": max(&list_secs),
                "items": listing.items.len(), "pages": listing.pages, "bytes": listing.bytes,
            },
            "command": cmd.map(|c| json!({
                "kind": "cpu_profile", "seconds": 1,
                "accepted_secs": c.accepted_secs, "median_secs": cmd_median, "max_secs": cmd_max,
                "ready_secs": c.ready_secs, "final_status": c.final_status, "errors": c.errors,
            })),
            "sim_connected_in_hub_list": sims_connected,
            "sim_listed": sims_listed.len(),
            "sim_live_links": live_end,
            "real_agent_connected": real_connected,
            "traffic": {
                "metrics_per_sec": metrics_rate, "heartbeats_per_sec": beats_rate, "mbit_per_sec_to_hub": mbit_in,
                "drops_in_window": drops_in_window, "drops_total": stats.drops.load(Relaxed),
                "commands_to_sims": stats.commands_received.load(Relaxed),
            },
            "hub_data_dir_bytes": disk1,
            "hub_data_dir_growth_bytes_per_sec": disk_rate,
            "bench_client_cores": own_cores,
            "bench_client_rss_bytes": own_mem.rss,
            "load_avg_1": load1,
            "cpus": cpus,
            "hub_log": {"warnings": hub_log.0, "errors": hub_log.1, "samples": hub_log.2},
            "agent_errors": stats.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    // Let the agents go before the hub does, so none of them tries to reconnect.
    let _ = stop_tx.send(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_helpers() {
        let a = parse_args(["--agents", "7", "--json=x.json", "--no-real-agent"].into_iter().map(String::from))
            .expect("parse")
            .expect("not help");
        assert_eq!((a.agents, a.real_agent), (7, false));
        assert_eq!(a.json.as_deref(), Some(Path::new("x.json")));
        assert!(parse_args(["--bogus"].into_iter().map(String::from)).is_err());
        assert!(parse_args(["--help"].into_iter().map(String::from)).expect("ok").is_none());
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let line = strip_ansi(
            "\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m perf-hub listening agent_addr=127.0.0.1:4000 http_addr=127.0.0.1:4001 data_dir=/x",
        );
        let (ag, ht) = listening_addrs(&line).expect("addrs");
        assert_eq!((ag.port(), ht.port()), (4000, 4001));
    }
}
