//! The agent core against a real perf-hub serving TLS (certificates made here with `openssl`): a
//! heap snapshot command and its upload both travel over TLS, and an agent that trusts another
//! CA, or expects another name, is refused with the certificate problem in its status.

use perf_agent_core::{Agent, AgentConfig, Executor, JobSpec, TlsSettings};
use perf_hub::store::ArtifactStatus;
use perf_hub::HubConfig;
use perf_protocol::CommandKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed for the TLS tests (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate it signed for 127.0.0.1/localhost, and an unrelated second CA.
fn make_certs(dir: &Path) -> Certs {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for name in ["ca", "other-ca"] {
        let (key, pem, subj) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN=test {name}"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
        openssl(dir, &args);
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// Writes `payload` as the capture, from its own thread as the inspector worker would.
struct ChunkExecutor {
    agent: Arc<Mutex<Option<Arc<Agent>>>>,
    payload: Vec<u8>,
}

impl Executor for ChunkExecutor {
    fn dispatch(&self, job: JobSpec) -> Result<(), String> {
        let agent = self.agent.lock().map_err(|_| "poisoned")?.clone().ok_or("no agent")?;
        let payload = self.payload.clone();
        std::thread::spawn(move || {
            let h = agent.job(&job.id).expect("job handle");
            if h.preflight_snapshot(1 << 20).is_err() {
                return;
            }
            for c in payload.chunks(4096) {
                h.write_chunk(c).expect("chunk");
            }
            h.finish(vec![]).expect("finish");
        });
        Ok(())
    }
}

fn agent_config(hub: std::net::SocketAddr, spool: &Path, tls: TlsSettings) -> AgentConfig {
    let mut c = AgentConfig::new(&hub.to_string(), "orders", "s3cret").expect("config");
    c.spool_dir = spool.to_path_buf();
    c.metrics_interval = Duration::ZERO;
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(300);
    c.tls = Some(tls);
    c
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tls_hub(dir: &Path, certs: &Certs) -> perf_hub::RunningHub {
    let mut config = HubConfig::for_test(dir.join("hub"));
    config.tls_cert = Some(certs.cert.clone());
    config.tls_key = Some(certs.key.clone());
    perf_hub::start(config).await.expect("hub")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_its_upload_travel_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(dir.path());
    let running = tls_hub(dir.path(), &certs).await;
    let tls = TlsSettings { ca: Some(certs.ca.clone()), servername: None };
    let agent =
        Arc::new(Agent::start(agent_config(running.agent_addr, &dir.path().join("spool"), tls)).expect("agent"));
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let slot = Arc::new(Mutex::new(Some(agent.clone())));
    agent.set_executor(Some(Arc::new(ChunkExecutor { agent: slot.clone(), payload: payload.clone() })));
    wait_until("agent connected over TLS", || agent.status().connected).await;
    let pid = agent.status().process_id.expect("process id");

    let (artifact, refusal) =
        running.hub.request_command(&pid, CommandKind::HeapSnapshot, false, "test").await.expect("send");
    assert_eq!(refusal, None);
    let t0 = Instant::now();
    let a = loop {
        let a = running.hub.artifacts.get(&artifact.id).await.expect("store").expect("artifact");
        if a.status.is_final() || t0.elapsed() > Duration::from_secs(20) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(a.status, ArtifactStatus::Ready, "{:?}", a.error);
    assert_eq!(
        std::fs::read(running.hub.artifacts.storage().local().expect("local store").path(&a.file_name)).expect("file"),
        payload
    );
    // Dropping the last handle shuts the agent's runtime down in the background.
    slot.lock().expect("lock").take();
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_or_another_name_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(dir.path());
    let running = tls_hub(dir.path(), &certs).await;
    let cases = [
        (TlsSettings { ca: Some(certs.other_ca.clone()), servername: None }, "UnknownIssuer"),
        (TlsSettings { ca: Some(certs.ca.clone()), servername: Some("hub.example".into()) }, "not valid for name"),
    ];
    for (i, (tls, why)) in cases.into_iter().enumerate() {
        let spool = dir.path().join(format!("spool{i}"));
        let agent = Agent::start(agent_config(running.agent_addr, &spool, tls)).expect("agent");
        wait_until("a refusal", || agent.status().last_error.is_some()).await;
        let err = agent.status().last_error.unwrap_or_default();
        assert!(err.contains("TLS handshake") && err.contains("certificate") && err.contains(why), "{err}");
        assert!(!agent.status().connected);
        tokio::task::spawn_blocking(move || agent.stop(Duration::from_secs(1))).await.expect("stopped");
    }
    drop(running);
}
