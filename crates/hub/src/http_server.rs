//! Serves the HTTP API (an axum `Router`) over plaintext or TLS with hyper's HTTP/1 server,
//! bounded where `axum::serve` isn't: a client must send a request's header within
//! `http_header_timeout_ms` (slow-loris), at most `http_max_connections` connections are served at
//! once (more wait in the kernel's listen backlog, costing no fd), and TLS handshakes run in each
//! connection's own task with a deadline, so a stalled client never holds up the accept loop.

use crate::HubConfig;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// The bounds of the HTTP port, from the hub's configuration.
#[derive(Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    handshake_timeout: Duration,
}

/// Accepts and serves until aborted; aborting it also ends open connections (their tasks live in
/// a JoinSet owned by this future).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<crate::tls::TlsAcceptor>,
    config: &HubConfig,
) {
    let limits = Limits {
        header_timeout: Duration::from_millis(config.http_header_timeout_ms),
        handshake_timeout: Duration::from_millis(config.tls_handshake_timeout_ms),
    };
    let slots = Arc::new(Semaphore::new(config.http_max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // Closed only if the semaphore is dropped, which it isn't while we run.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, remote)) => {
                let (router, tls) = (router.clone(), tls.clone());
                connections.spawn(async move {
                    serve_connection(stream, remote, router, tls, limits).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: axum::Router,
    tls: Option<crate::tls::TlsAcceptor>,
    limits: Limits,
) {
    let _ = stream.set_nodelay(true);
    let result = match tls {
        None => serve_http(TokioIo::new(stream), remote, router, limits).await,
        Some(acceptor) => match crate::tls::accept(&acceptor, stream, limits.handshake_timeout).await {
            Ok(tls_stream) => serve_http(TokioIo::new(tls_stream), remote, router, limits).await,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "https handshake failed");
                return;
            }
        },
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "http connection ended");
    }
}

async fn serve_http<I>(io: I, remote: SocketAddr, router: axum::Router, limits: Limits) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Handlers read the client address as `ConnectInfo<SocketAddr>`, as under `axum::serve`.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service)
        .with_upgrades()
        .await
}
