//! Issue 11, finding 2: 100 unauthenticated connections each sending a 4 MiB frame used to take
//! the hub from 8 MB to 432 MB RSS. The hub now refuses such a frame from its header (the
//! pre-auth frame limit), so its peak RSS barely moves. Its own test binary: the peak RSS of
//! the process is measured, and other tests would move it.

use perf_hub::HubConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Peak resident set size of this process (the hub runs in it), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_unauthenticated_4_mib_frames_do_not_grow_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = perf_hub::start(HubConfig::for_test(dir.path().to_path_buf())).await.expect("hub");
    // One 4 MiB - 1 message frame of junk, shared by every connection.
    let len = (4u32 << 20) - 1;
    let mut frame = len.to_be_bytes().to_vec();
    frame.push(1);
    frame.resize(4 + len as usize, b' ');
    let frame = Arc::new(frame);
    let before = peak_rss();
    let mut conns = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (addr, frame) = (hub.agent_addr, frame.clone());
        conns.spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut r, mut w) = stream.into_split();
            // The hub may close while we still write: that is the point.
            let writer = tokio::spawn(async move { w.write_all(&frame).await.is_ok() });
            let mut sink = Vec::new();
            // The hub ends the connection (an error frame, then EOF or a reset).
            let closed = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut sink)).await;
            writer.abort();
            closed.is_ok()
        });
    }
    let mut ended = 0;
    while let Some(r) = conns.join_next().await {
        ended += r.expect("task") as usize;
    }
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB for 100 connections of 4 MiB frames", grown >> 10);
    assert_eq!(ended, 100, "the hub ends every connection that sends an oversized pre-auth frame");
    assert!(grown < 48 << 20, "peak RSS grew by {} MiB for 100 connections", grown >> 20);
}
